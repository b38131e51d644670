import { weftChannel } from '@weft/common';
import { KvErrorCode, kvError } from '../errors.js';
import { assertValidKey, assertValidPrefix, normalizePrefixes } from '../keys.js';
import {
  type KvCapabilities,
  type KvCommitOp,
  type KvEntry,
  type KvRecord,
  type KvStore,
  maxGetManyKeys,
  type Version,
  type WatchCursor,
  type WatchEvent,
  type WatchOptions,
} from '../types.js';
import { assertSignal, assertTtl, assertValue, describe } from '../validate.js';
import { readTimeout, writeTimeout } from './deadline.js';
import type { KvCommitMutation, KvDriver, KvMutation, KvMutationKind } from './driver.js';
import { runWatch } from './watch-loop.js';

/** What a traced KV operation publishes (docs/guides/observability.md): never a value. */
export interface KvOperationContext {
  readonly operation: 'get' | 'getMany' | 'entry' | KvMutationKind | 'commit';
  /** The key, or for a commit its first operation's key. */
  readonly backend: string;
  readonly bucket: string;
  readonly key: string;
}

/**
 * The tracing channel of KV operations: `weft:kv:operation`. Operations check
 * `hasSubscribers !== false`: Bun's channels leave it undefined, and are traced.
 */
export const kvOperationChannel = weftChannel<KvOperationContext>('weft:kv:operation');

/**
 * The store every backend hands out: the contract's derived clauses over a
 * {@link KvDriver}. Each method validates its arguments and the handle's
 * state before the driver runs, so bad input writes nothing and costs no
 * I/O, and adds no promise step of its own on the way to the driver (at a
 * hundred calls in flight, every extra step costs throughput).
 *
 * Backends with operations of their own (sweeps, compaction, inspection)
 * extend it; others return {@link defineKvStore}'s result as it is.
 */
export class KvStoreFront<Position = unknown> implements KvStore {
  readonly backend: string;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  /** The driver under this handle. */
  protected readonly driver: KvDriver<Position>;
  readonly #closing = new AbortController();
  #closed = false;
  #closedDriver: Promise<void> | undefined;

  constructor(driver: KvDriver<Position>) {
    this.driver = driver;
    this.backend = driver.backend;
    this.bucket = driver.bucket;
    this.capabilities = driver.capabilities;
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Aborted when the handle closes; background work of a backend stops on it. */
  protected get closing(): AbortSignal {
    return this.#closing.signal;
  }

  get(key: string): Promise<KvEntry | undefined> {
    try {
      this.assertOpen();
      assertValidKey(key, this.backend);
    } catch (error) {
      return Promise.reject(error);
    }
    if (kvOperationChannel.hasSubscribers !== false)
      return kvOperationChannel.tracePromise(() => this.#get(key), this.#context('get', key));
    return this.#get(key);
  }

  getMany(keys: readonly string[]): Promise<(KvEntry | undefined)[]> {
    try {
      this.assertOpen();
      if (!Array.isArray(keys))
        throw kvError(KvErrorCode.InvalidArgument, this.backend, `getMany takes an array of keys, got ${describe(keys)}`);
      if (keys.length > maxGetManyKeys)
        throw kvError(KvErrorCode.InvalidArgument, this.backend, `getMany takes at most ${maxGetManyKeys} keys, got ${keys.length}`);
      for (const key of keys) assertValidKey(key, this.backend);
    } catch (error) {
      return Promise.reject(error);
    }
    if (keys.length === 0) return Promise.resolve([]);
    if (kvOperationChannel.hasSubscribers !== false)
      return kvOperationChannel.tracePromise(() => this.#getMany(keys), this.#context('getMany', keys[0] as string));
    return this.#getMany(keys);
  }

  entry(key: string): Promise<KvRecord | undefined> {
    try {
      this.assertOpen();
      assertValidKey(key, this.backend);
    } catch (error) {
      return Promise.reject(error);
    }
    if (kvOperationChannel.hasSubscribers !== false)
      return kvOperationChannel.tracePromise(() => this.#entry(key), this.#context('entry', key));
    return this.#entry(key);
  }

  keys(prefix?: string): AsyncIterable<string> {
    const entries = this.#list(prefix, false);
    return {
      async *[Symbol.asyncIterator]() {
        for await (const entry of entries) yield entry.key;
      },
    };
  }

  scan(prefix?: string): AsyncIterable<KvEntry> {
    return this.#list(prefix, true);
  }

  put(key: string, value: Uint8Array): Promise<Version> {
    return this.#refuse('put', key, value) ?? this.#mutate({ kind: 'put', key, value });
  }

  create(key: string, value: Uint8Array): Promise<Version> {
    return this.#refuse('create', key, value) ?? this.#mutate({ kind: 'create', key, value });
  }

  update(key: string, value: Uint8Array, expected: Version): Promise<Version> {
    return this.#refuse('update', key, value) ?? this.#mutate({ kind: 'update', key, value, expected });
  }

  delete(key: string): Promise<Version> {
    return this.#refuse('delete', key) ?? this.#mutate({ kind: 'delete', key });
  }

  deleteWithVersion(key: string, expected: Version): Promise<Version> {
    return this.#refuse('deleteWithVersion', key) ?? this.#mutate({ kind: 'deleteWithVersion', key, expected });
  }

  putWithTtl(key: string, value: Uint8Array, ttlMs: number): Promise<Version> {
    return this.#refuse('putWithTtl', key, value, ttlMs) ?? this.#mutate({ kind: 'putWithTtl', key, value, ttlMs });
  }

  purge(key: string): Promise<Version> {
    return this.#refuse('purge', key) ?? this.#mutate({ kind: 'purge', key });
  }

  commit(ops: readonly KvCommitOp[]): Promise<Version[]> {
    let mutations: KvCommitMutation[];
    try {
      mutations = this.#commitMutations(ops);
    } catch (error) {
      return Promise.reject(error);
    }
    if (mutations.length === 0) return Promise.resolve([]);
    const first = (mutations[0] as KvCommitMutation).key;
    if (kvOperationChannel.hasSubscribers !== false) {
      return kvOperationChannel.tracePromise(() => this.#commit(mutations, first), this.#context('commit', first));
    }
    return this.#commit(mutations, first);
  }

  compareCursors(a: WatchCursor, b: WatchCursor): number {
    const { cursors } = this.driver;
    return cursors.compare(cursors.parse(a).position, cursors.parse(b).position);
  }

  watch(options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    this.assertOpen();
    const prefixes = normalizePrefixes(options.prefixes, this.backend);
    const from = options.from === undefined ? undefined : this.driver.cursors.parse(options.from);
    assertSignal(options.signal, this.backend);
    const signal = options.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal]);
    const driver = this.driver;
    const assertOpen = () => this.assertOpen();
    return { [Symbol.asyncIterator]: () => runWatch(driver, { prefixes, from, signal, assertOpen }) };
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#closing.abort();
      this.#closedDriver = this.driver.close().finally(() => this.driver.deadlines?.close());
    }
    await this.#closedDriver;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * @throws {KvError} `Closed` once the handle is closed
   */
  protected assertOpen(): void {
    if (this.#closed) throw kvError(KvErrorCode.Closed, this.backend, `the handle on bucket '${this.bucket}' is closed`);
  }

  /**
   * Checks a write before the driver sees it: handle open, key, the
   * operation supported, value and TTL. Returns the rejection to hand back,
   * or `undefined` to go ahead.
   */
  #refuse(kind: KvMutationKind, key: string, value?: Uint8Array, ttlMs?: number): Promise<never> | undefined {
    try {
      this.assertOpen();
      assertValidKey(key, this.backend);
      const unsupported =
        this.driver.refusal?.(kind) ??
        ((kind === 'putWithTtl' && !this.capabilities.ttl) || (kind === 'purge' && !this.capabilities.purge)
          ? `this bucket does not support ${kind}`
          : undefined);
      if (unsupported !== undefined) throw kvError(KvErrorCode.Unsupported, this.backend, unsupported, { key });
      if (kind !== 'delete' && kind !== 'deleteWithVersion' && kind !== 'purge') {
        assertValue(value, this.capabilities.maxValueBytes, this.backend, key);
      }
      if (kind === 'putWithTtl') assertTtl(ttlMs, this.backend, key);
    } catch (error) {
      return Promise.reject(error);
    }
    return undefined;
  }

  /**
   * Checks a commit before the driver sees it, as each write of it would be
   * checked on its own, plus what only a commit has: the capability and its
   * limits, and each key at most once.
   */
  #commitMutations(ops: readonly KvCommitOp[]): KvCommitMutation[] {
    this.assertOpen();
    const { backend } = this;
    if (!Array.isArray(ops))
      throw kvError(KvErrorCode.InvalidArgument, backend, `a commit takes an array of operations, got ${describe(ops)}`);
    const limits = this.capabilities.commit;
    if (limits === false || this.driver.commit === undefined) {
      throw kvError(KvErrorCode.Unsupported, backend, `bucket '${this.bucket}' does not support commit (capabilities.commit is false)`);
    }
    if (ops.length > limits.maxOps) {
      throw kvError(
        KvErrorCode.Unsupported,
        backend,
        `a commit of ${ops.length} operations exceeds this bucket's limit of ${limits.maxOps}`,
      );
    }
    const keys = new Set<string>();
    const mutations: KvCommitMutation[] = [];
    let bytes = 0;
    for (const [index, op] of ops.entries()) {
      if (typeof op !== 'object' || op === null) {
        throw kvError(KvErrorCode.InvalidArgument, backend, `commit operation ${index} must be an object, got ${describe(op)}`);
      }
      const kind = (op as { op?: unknown }).op;
      if (typeof kind !== 'string' || !commitKinds.has(kind)) {
        throw kvError(
          KvErrorCode.InvalidArgument,
          backend,
          `commit operation ${index} has an unknown op ${describe(kind)}: one of ${[...commitKinds].join(', ')}`,
        );
      }
      const { key } = op;
      assertValidKey(key, backend);
      if (keys.has(key))
        throw kvError(KvErrorCode.InvalidArgument, backend, `the key appears twice in one commit (operation ${index})`, { key });
      keys.add(key);
      const unsupported =
        this.driver.refusal?.(op.op) ??
        (op.op === 'putWithTtl' && !this.capabilities.ttl ? 'this bucket does not support putWithTtl' : undefined);
      if (unsupported !== undefined) throw kvError(KvErrorCode.Unsupported, backend, `commit operation ${index}: ${unsupported}`, { key });
      if ('value' in op || (op.op !== 'delete' && op.op !== 'deleteWithVersion')) {
        assertValue((op as { value?: unknown }).value, this.capabilities.maxValueBytes, backend, key);
        bytes += (op as { value: Uint8Array }).value.byteLength;
      }
      if (op.op === 'putWithTtl') assertTtl(op.ttlMs, backend, key);
      mutations.push(mutationOf(op));
    }
    if (bytes > limits.maxBytes) {
      throw kvError(
        KvErrorCode.ValueTooLarge,
        backend,
        `a commit of ${bytes} value bytes exceeds this bucket's limit of ${limits.maxBytes}`,
      );
    }
    return mutations;
  }

  #commit(mutations: readonly KvCommitMutation[], first: string): Promise<Version[]> {
    const driver = this.driver as KvDriver<Position> & Required<Pick<KvDriver<Position>, 'commit'>>;
    const { deadlines } = driver;
    if (deadlines === undefined) return driver.commit(mutations);
    return deadlines.within(driver.commit(mutations), () => writeTimeout(this.backend, 'commit', deadlines.timeoutMs, first));
  }

  #get(key: string): Promise<KvEntry | undefined> {
    const { deadlines } = this.driver;
    if (deadlines === undefined) return this.driver.get(key);
    return deadlines.within(this.driver.get(key), () => readTimeout(this.backend, 'get', deadlines.timeoutMs, key));
  }

  #getMany(keys: readonly string[]): Promise<(KvEntry | undefined)[]> {
    const { deadlines } = this.driver;
    const read = this.driver.getMany?.(keys) ?? Promise.all(keys.map((key) => this.driver.get(key)));
    if (deadlines === undefined) return read;
    return deadlines.within(read, () => readTimeout(this.backend, 'getMany', deadlines.timeoutMs, keys[0]));
  }

  #entry(key: string): Promise<KvRecord | undefined> {
    const { deadlines } = this.driver;
    if (deadlines === undefined) return this.driver.entry(key);
    return deadlines.within(this.driver.entry(key), () => readTimeout(this.backend, 'entry', deadlines.timeoutMs, key));
  }

  #mutate(mutation: KvMutation): Promise<Version> {
    if (kvOperationChannel.hasSubscribers !== false) {
      return kvOperationChannel.tracePromise(() => this.#write(mutation), this.#context(mutation.kind, mutation.key));
    }
    return this.#write(mutation);
  }

  #write(mutation: KvMutation): Promise<Version> {
    const { deadlines } = this.driver;
    if (deadlines === undefined) return this.driver.mutate(mutation);
    return deadlines.within(this.driver.mutate(mutation), () =>
      writeTimeout(this.backend, mutation.kind, deadlines.timeoutMs, mutation.key),
    );
  }

  #context(operation: KvOperationContext['operation'], key: string): KvOperationContext {
    return { operation, backend: this.backend, bucket: this.bucket, key };
  }

  #list(prefix: string | undefined, values: boolean): AsyncIterable<KvEntry> {
    this.assertOpen();
    if (prefix !== undefined) assertValidPrefix(prefix, this.backend);
    const listing = this.driver.list(prefix, { values });
    const assertOpen = () => this.assertOpen();
    const { deadlines, backend } = this.driver;
    return {
      async *[Symbol.asyncIterator]() {
        assertOpen();
        const entries = listing[Symbol.asyncIterator]();
        let done = false;
        try {
          for (;;) {
            // Each step of the listing (at most a page read from the server) has the handle's deadline.
            const step =
              deadlines === undefined
                ? await entries.next()
                : await deadlines.within(entries.next(), () =>
                    readTimeout(backend, prefix === undefined ? 'listing' : `listing of '${prefix}'`, deadlines.timeoutMs),
                  );
            if (step.done === true) break;
            assertOpen();
            yield step.value;
          }
          done = true;
        } finally {
          // A step that timed out is still running: the driver's listing ends when it settles.
          if (!done) void Promise.resolve(entries.return?.()).catch(() => undefined);
        }
        // A driver may end its listing early because the handle closed: that is Closed, not the end.
        assertOpen();
      },
    };
  }
}

/** The ops a commit takes. */
const commitKinds: ReadonlySet<string> = new Set(['put', 'putWithTtl', 'create', 'update', 'delete', 'deleteWithVersion']);

/** The driver's mutation for a checked commit op: only the fields its kind has. */
function mutationOf(op: KvCommitOp): KvCommitMutation {
  switch (op.op) {
    case 'put':
    case 'create':
      return { kind: op.op, key: op.key, value: op.value };
    case 'putWithTtl':
      return { kind: op.op, key: op.key, value: op.value, ttlMs: op.ttlMs };
    case 'update':
      return { kind: op.op, key: op.key, value: op.value, expected: op.expected };
    case 'delete':
      return { kind: op.op, key: op.key };
    case 'deleteWithVersion':
      return { kind: op.op, key: op.key, expected: op.expected };
  }
}

/**
 * Builds a bucket handle from a driver: the whole contract, with the
 * driver's native primitives underneath.
 *
 * ```ts
 * import { defineKvStore, type KvDriver } from '@weft/kv/backend';
 * export async function openMyKv(options: MyOptions): Promise<KvStore> {
 *   return defineKvStore(await openMyDriver(options));
 * }
 * ```
 */
export function defineKvStore<Position>(driver: KvDriver<Position>): KvStore {
  return new KvStoreFront(driver);
}
