import { randomBytes } from 'node:crypto';
import type { KvCapabilities, KvEntry, KvError, KvRecord, Version } from '@weft/kv';
import {
  alreadyExists,
  type ChangeRequest,
  copyBytes,
  Deadlines,
  type KvCommitMutation,
  type KvDriver,
  KvErrorCode,
  type KvMutation,
  kvError,
  messageOf,
  readTimeout,
  revisionMismatch,
  writeTimeout,
} from '@weft/kv/backend';
import { changeFeed, indexPages } from './change-stream.js';
import { type RedisConnection, type RedisScript, redisScript, type Waker } from './connection.js';
import { backend, toKvError } from './errors.js';
import type { BucketKeys } from './layout.js';
import { commitScript, compactScript, type MutationScript, mutationScripts, sweepScript } from './scripts.js';
import { parseStreamId, redisCursors } from './stream-ids.js';

export interface RedisSettings {
  readonly timeoutMs: number;
  /** Replicas that must acknowledge each write (`WAIT`) within `waitTimeoutMs`; 0 waits for none. */
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  readonly watchOutageMs: number;
  readonly maxValueBytes: number;
  readonly maxHistoryEntries: number;
  readonly sweepIntervalMs: number;
}

const scripts = Object.fromEntries(Object.entries(mutationScripts).map(([name, lua]) => [name, redisScript(lua)])) as Record<
  MutationScript,
  RedisScript
>;
const sweep = redisScript(sweepScript);
const commit = redisScript(commitScript);
const compact = redisScript(compactScript);

/** How long a watch's connection blocks in `XREAD` before it reads again. */
export const watchBlockMs = 5000;

/** The record fields `get` reads: op, value, version. */
const recordFields = ['o', 'v', 'n'] as const;

const scriptOf: Record<KvMutation['kind'], MutationScript> = {
  put: 'weftPut',
  putWithTtl: 'weftPutTtl',
  create: 'weftCreate',
  update: 'weftUpdate',
  delete: 'weftDelete',
  deleteWithVersion: 'weftDeleteIf',
  purge: 'weftPurge',
};

/**
 * The Redis driver: one Lua script per mutation (EVALSHA), reads as single
 * commands or pipelines, and the change stream as the watch feed.
 */
export class RedisDriver implements KvDriver<string> {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  readonly cursors = redisCursors;
  readonly connection: RedisConnection;
  readonly keys: BucketKeys;
  readonly settings: RedisSettings;
  readonly deadlines: Deadlines;
  /** The deadlines of watches' blocking waits: the block plus the handle's timeout. */
  readonly waitDeadlines: Deadlines;
  /** Connections of running watches, cut when the handle closes. */
  readonly wakers = new Set<Waker>();
  readonly #maxEntries: string;
  readonly #epochPrefix = randomBytes(6).toString('hex');
  #epochCounter = 0;
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  #sweeping = false;
  /** The last error of the background sweeper, if its latest run failed. */
  lastSweepError: KvError | undefined;

  constructor(connection: RedisConnection, bucket: string, keys: BucketKeys, settings: RedisSettings) {
    this.connection = connection;
    this.bucket = bucket;
    this.keys = keys;
    this.settings = settings;
    this.deadlines = new Deadlines(settings.timeoutMs);
    this.waitDeadlines = new Deadlines(watchBlockMs + settings.timeoutMs);
    this.#maxEntries = String(settings.maxHistoryEntries);
    this.capabilities = Object.freeze({
      ttl: true,
      purge: true,
      multiPrefixWatch: 'emulated',
      maxValueBytes: settings.maxValueBytes,
      readYourWrites: true,
      history: 1,
      // Each mutation script settles a passed TTL of its key first.
      expireBeforeNextWrite: true,
      // One script holds the server while it runs: a commit is bounded so that it stays short.
      commit: { maxOps: 1000, maxBytes: 16 * 1024 * 1024 },
    });
    if (settings.sweepIntervalMs > 0) {
      this.#sweeper = setInterval(() => {
        // One sweep at a time: against a paused server, sweeps would otherwise pile up every interval.
        if (this.#sweeping) return;
        this.#sweeping = true;
        this.sweepExpired(1000)
          .then(
            () => {
              this.lastSweepError = undefined;
            },
            (error: unknown) => {
              this.lastSweepError = toKvError(error, 'sweep', undefined, false);
            },
          )
          .finally(() => {
            this.#sweeping = false;
          });
      }, settings.sweepIntervalMs);
      this.#sweeper.unref();
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  get(key: string): Promise<KvEntry | undefined> {
    // One promise step on top of the command's: at 100 reads in flight, each extra async hop costs several percent.
    return this.connection.hashFields(this.keys.record + key, recordFields).then(
      ([op, value, version]) => {
        if (op == null || op[0] !== 0x70 || op.length !== 1 || value == null || version == null) return undefined;
        return { key, value: copyBytes(value), version: version.toString('latin1') as Version };
      },
      (error: unknown) => {
        throw toKvError(error, 'read', key, false);
      },
    );
  }

  async entry(key: string): Promise<KvRecord | undefined> {
    // The store front bounds this read with the handle's deadline already: no second one here.
    const [op, value, version] = await this.connection.hashFields(this.keys.record + key, recordFields).catch((error: unknown) => {
      throw toKvError(error, 'read', key, false);
    });
    if (op == null || version == null) return undefined;
    const versionText = version.toString() as Version;
    switch (op.toString()) {
      case 'p':
        return { key, op: 'put', value: copyBytes(value ?? Buffer.alloc(0)), version: versionText };
      case 'd':
        return { key, op: 'delete', version: versionText };
      case 'x':
        return { key, op: 'purge', version: versionText };
      default:
        throw kvError(KvErrorCode.OperationFailed, backend, `the record has an unknown op '${op.toString()}'`, { key });
    }
  }

  async *list(prefix: string | undefined, { values }: { readonly values: boolean }): AsyncGenerator<KvEntry> {
    for await (const page of indexPages(this, prefix)) {
      const rows = await this.hashFieldsOfMany(
        page.map((key) => this.keys.record + key),
        values ? ['o', 'n', 'v'] : ['o', 'n'],
        values,
      );
      for (const [index, key] of page.entries()) {
        const [op, version, value] = (rows[index] ?? []) as Array<Buffer | string | null>;
        if (op?.toString() !== 'p' || version == null) continue;
        yield { key, value: value == null ? new Uint8Array(0) : copyBytes(value as Buffer), version: version.toString() as Version };
      }
    }
  }

  /**
   * Runs the mutation's script. Written as plain promise steps: with 100
   * writes in flight, every extra async hop costs a few percent of throughput.
   */
  mutate(mutation: KvMutation): Promise<Version> {
    const { key } = mutation;
    const script = scriptOf[mutation.kind];
    let keys: string[];
    let args: Array<Buffer | string>;
    let expected: string | undefined;
    try {
      const { record, log, expiries, index, meta, tombstones } = this.keys;
      keys = [record + key, log, expiries, index, meta, tombstones];
      args = [key, idSeed(), this.#maxEntries];
      if ('value' in mutation) args.push(toBuffer(mutation.value));
      if (mutation.kind === 'putWithTtl') args.push(String(Math.max(1, Math.ceil(mutation.ttlMs))));
      if (mutation.kind === 'update' || mutation.kind === 'deleteWithVersion') {
        expected = parseStreamId(mutation.expected, 'version', key);
        args.push(expected);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const settle = (reply: unknown): Version => {
      if (typeof reply === 'string') return reply as Version;
      const [code, current] = reply as [string, string];
      if (code === 'AlreadyExists') throw alreadyExists(backend, key, current);
      throw revisionMismatch(backend, key, String(expected), current === '' ? undefined : current);
    };
    const fail = (error: unknown): never => {
      throw toKvError(error, mutation.kind, key, true);
    };
    return this.#replicated(this.connection.runScript(scripts[script], keys, args, false).then(settle, fail), keys[0] as string, key);
  }

  /**
   * A write as it returns: at once without `waitReplicas` (no extra step on
   * the hot path), else once the handle's replicas acknowledged it.
   */
  #replicated<T>(applied: Promise<T>, routingKey: string, key: string): Promise<T> {
    return this.settings.waitReplicas === 0 ? applied : applied.then((result) => this.#waitForReplicas(result, routingKey, key));
  }

  /**
   * Waits for the handle's replicas to acknowledge a write that applied:
   * `Indeterminate` when fewer did in time (the master holds it; a failover
   * to a replica without it loses it).
   */
  async #waitForReplicas<T>(result: T, routingKey: string, key: string): Promise<T> {
    const { waitReplicas, waitTimeoutMs } = this.settings;
    let acknowledged: number;
    try {
      acknowledged = await this.connection.waitForReplicas(routingKey, waitReplicas, waitTimeoutMs);
    } catch (error) {
      throw kvError(
        KvErrorCode.Indeterminate,
        backend,
        `applied on the master, but WAIT failed: ${messageOf(error)}; a failover may lose it`,
        {
          key,
          cause: error,
        },
      );
    }
    if (acknowledged >= waitReplicas) return result;
    throw kvError(
      KvErrorCode.Indeterminate,
      backend,
      `applied on the master, but ${acknowledged} of ${waitReplicas} replicas acknowledged it within ${waitTimeoutMs} ms: a failover may lose it`,
      { key },
    );
  }

  /** Runs the commit script: every precondition checked, then every write applied, in one script. */
  commit(mutations: readonly KvCommitMutation[]): Promise<Version[]> {
    const [first] = mutations as [KvCommitMutation];
    let keys: string[];
    const args: Array<Buffer | string> = ['', idSeed(), this.#maxEntries];
    const expected: string[] = [];
    try {
      const { record, log, expiries, index, meta, tombstones } = this.keys;
      keys = [record + first.key, log, expiries, index, meta, tombstones, ...mutations.slice(1).map((mutation) => record + mutation.key)];
      for (const mutation of mutations) {
        let last = '';
        if (mutation.kind === 'update' || mutation.kind === 'deleteWithVersion')
          last = parseStreamId(mutation.expected, 'version', mutation.key);
        if (mutation.kind === 'putWithTtl') last = String(Math.max(1, Math.ceil(mutation.ttlMs)));
        expected.push(last);
        args.push(mutation.kind, mutation.key, 'value' in mutation ? toBuffer(mutation.value) : '', last);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const settle = (reply: unknown): Version[] => {
      const items = reply as unknown[];
      if (items[0] !== 'AlreadyExists' && items[0] !== 'RevisionMismatch') return items as Version[];
      const [code, current, position] = items as [string, string, number];
      const failed = mutations[Number(position) - 1] as KvCommitMutation;
      if (code === 'AlreadyExists') throw alreadyExists(backend, failed.key, current);
      throw revisionMismatch(backend, failed.key, String(expected[Number(position) - 1]), current === '' ? undefined : current);
    };
    const fail = (error: unknown): never => {
      throw toKvError(error, 'commit', first.key, true);
    };
    return this.#replicated(this.connection.runScript(commit, keys, args, false).then(settle, fail), keys[0] as string, first.key);
  }

  changes(request: ChangeRequest<string>) {
    return changeFeed(this, request);
  }

  toKvError(error: unknown, operation: string): KvError {
    return toKvError(error, operation, undefined, false);
  }

  /**
   * Turns every entry whose TTL has passed into an `expire` event now.
   *
   * @returns how many entries expired
   */
  async sweepExpired(limit: number): Promise<number> {
    const { record, log, expiries, index, meta, tombstones } = this.keys;
    const result = await this.deadlines.within(
      this.connection.runScript(
        sweep,
        [`${record}-`, log, expiries, index, meta, tombstones],
        ['', idSeed(), this.#maxEntries, record, String(limit)],
        false,
      ),
      () => writeTimeout(backend, 'sweep', this.settings.timeoutMs),
    );
    return Number(result);
  }

  /**
   * Removes the records of keys deleted or purged more than `olderThanMs`
   * ago, in batches of 1000, each a script within the handle's deadline.
   *
   * @returns how many tombstones were removed
   */
  async compact(olderThanMs: number): Promise<number> {
    const age = String(olderThanMs);
    let removed = 0;
    for (;;) {
      const [examined, count] = (await this.deadlines.within(
        this.connection.runScript(compact, [this.keys.tombstones], [this.keys.record, age, '1000'], false),
        () => writeTimeout(backend, 'compact', this.settings.timeoutMs),
      )) as [number, number];
      removed += Number(count);
      if (Number(examined) < 1000) return removed;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const waker of this.wakers) waker.disconnect();
    await this.connection.close();
    this.waitDeadlines.close();
  }

  /** Deletes every Redis key of the bucket (records, tombstones, the change stream, the indexes and the epoch). */
  async destroy(): Promise<void> {
    const base = this.keys.meta.slice(0, -'meta'.length);
    const pattern = `${base.replace(/[*?[\]\\]/g, (character) => `\\${character}`)}*`;
    const pages = this.connection.scanMasters(pattern);
    // Every key of a bucket carries its hash tag, so one UNLINK takes a page even on a cluster.
    for (;;) {
      const page = await this.read(undefined, () => pages.next());
      if (page.done === true) return;
      await this.read(undefined, () => this.connection.unlink(page.value));
    }
  }

  /** `HMGET` of many records in one round trip. */
  hashFieldsOfMany(keys: readonly string[], fields: readonly string[], binary: boolean): Promise<Array<Array<Buffer | string | null>>> {
    return this.read(undefined, () => this.connection.hashFieldsOfMany(keys, fields, binary));
  }

  /** One read step with the handle's deadline: `Timeout` when the server does not answer in time. */
  async read<T>(key: string | undefined, call: () => Promise<T>): Promise<T> {
    try {
      return await this.deadlines.within(call(), () => readTimeout(backend, 'read', this.settings.timeoutMs, key));
    } catch (error) {
      throw toKvError(error, 'read', key, false);
    }
  }

  /** A connection of its own for a watch's blocking reads, torn down at once when the watch ends. */
  waker(): Waker {
    return this.connection.waker(`weft-watch:${this.bucket}`);
  }

  /**
   * A fresh candidate for every call: if the bucket's data vanished, whichever
   * call recreates it sets an epoch no earlier cursor carries.
   */
  nextEpochCandidate(): string {
    this.#epochCounter++;
    return this.#epochPrefix + this.#epochCounter.toString(16);
  }
}

function toBuffer(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * The random integer a write script draws its change-stream ids from (see
 * `scripts.ts`): ids must not repeat by accident after a server forgot
 * some; they are no secret, so `Math.random` serves.
 */
function idSeed(): string {
  return String(1 + Math.floor(Math.random() * 2147483646));
}
