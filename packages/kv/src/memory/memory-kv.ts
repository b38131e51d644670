import { type Clock, systemClock } from '../clock.js';
import { KvErrorCode, kvError } from '../errors.js';
import { assertValidKey, assertValidPrefix, keyMatchesAnyPrefix, keyMatchesPrefix, normalizePrefixes } from '../keys.js';
import { Notifier } from '../notifier.js';
import type { KvCapabilities, KvEntry, KvRecord, KvStore, Version, WatchCursor, WatchEvent, WatchOptions } from '../types.js';
import { assertSignal, assertTtl, assertValue, describe } from '../validate.js';

const backend = 'memory';

/** Options of a memory bucket; they take effect when the bucket is first opened on its server. */
export interface MemoryBucketOptions {
  /**
   * Versions retained per key in the change history; older ones are coalesced
   * away (a resumed watch still gets each key's latest change).
   * @default Infinity
   */
  readonly history?: number;
  /**
   * Change-history entries retained for the whole bucket; dropping the oldest
   * one that is still a key's latest change moves the horizon, and watches
   * resumed from before the horizon fail with `CursorExpired`.
   * @default Infinity
   */
  readonly maxHistoryEntries?: number;
  /** @default 1048576 (1 MiB) */
  readonly maxValueBytes?: number;
  /** The clock for TTLs; pass a {@link ManualClock} to move time by hand. @default systemClock */
  readonly clock?: Clock;
}

/** Options of {@link openMemoryKv}. */
export interface MemoryKvOptions extends MemoryBucketOptions {
  /** The bucket name. @default 'default' */
  readonly bucket?: string;
  /**
   * The in-memory server holding the bucket. Handles opened on the same server
   * and bucket behave like several clients of one server. @default a new private server
   */
  readonly server?: MemoryKvServer;
}

type ChangeType = 'put' | 'delete' | 'purge' | 'expire';

interface Change {
  readonly seq: number;
  readonly key: string;
  readonly type: ChangeType;
  readonly value: Uint8Array | undefined;
  removed: boolean;
}

interface StoredRecord {
  readonly op: 'put' | 'delete' | 'purge';
  readonly value: Uint8Array | undefined;
  readonly seq: number;
  readonly expiresAt: number | undefined;
}

/** The shared state of one bucket: what a server process would hold. */
class MemoryBucket {
  readonly capabilities: KvCapabilities;
  readonly clock: Clock;
  readonly changed = new Notifier();
  /** Watches currently running against this bucket, across all handles. */
  activeWatches = 0;
  seq = 0;
  /** Resuming from a cursor below this is refused: history it would need is gone. */
  horizon = 0;
  readonly records = new Map<string, StoredRecord>();
  /** Change history in sequence order; removed entries are skipped and swept out in bulk. */
  history: Change[] = [];
  removedChanges = 0;
  readonly changesByKey = new Map<string, Change[]>();
  readonly maxHistoryEntries: number;
  readonly #expiryTimers = new Map<string, () => void>();

  constructor(options: MemoryBucketOptions) {
    const history = options.history ?? Number.POSITIVE_INFINITY;
    const maxHistoryEntries = options.maxHistoryEntries ?? Number.POSITIVE_INFINITY;
    const maxValueBytes = options.maxValueBytes ?? 1024 * 1024;
    if (!(history >= 1)) throw kvError(KvErrorCode.InvalidArgument, backend, `history must be at least 1, got ${describe(history)}`);
    if (!(maxHistoryEntries >= 1)) {
      throw kvError(KvErrorCode.InvalidArgument, backend, `maxHistoryEntries must be at least 1, got ${describe(maxHistoryEntries)}`);
    }
    if (!(Number.isInteger(maxValueBytes) && maxValueBytes >= 0)) {
      throw kvError(KvErrorCode.InvalidArgument, backend, `maxValueBytes must be a non-negative integer, got ${describe(maxValueBytes)}`);
    }
    this.maxHistoryEntries = maxHistoryEntries;
    this.clock = options.clock ?? systemClock;
    this.capabilities = Object.freeze({
      ttl: true,
      purge: true,
      multiPrefixWatch: 'native',
      maxValueBytes,
      readYourWrites: true,
      history,
      expireBeforeNextWrite: true,
    });
  }

  /** The record when it holds a live value at `now`. */
  live(key: string): StoredRecord | undefined {
    const record = this.records.get(key);
    if (record === undefined || record.op !== 'put') return undefined;
    if (record.expiresAt !== undefined && this.clock.now() >= record.expiresAt) return undefined;
    return record;
  }

  /** The record unless it has expired (an expired record reads as never written). */
  current(key: string): StoredRecord | undefined {
    const record = this.records.get(key);
    if (record?.expiresAt !== undefined && this.clock.now() >= record.expiresAt) return undefined;
    return record;
  }

  write(key: string, op: 'put' | 'delete' | 'purge', value: Uint8Array | undefined, ttlMs?: number): number {
    const previous = this.records.get(key);
    if (previous?.op === 'put' && previous.expiresAt !== undefined && this.clock.now() >= previous.expiresAt) {
      // A passed TTL whose timer has not fired yet: its expire goes first, so watchers see the removal in order.
      this.#append({ seq: ++this.seq, key, type: 'expire', value: undefined, removed: false });
    }
    const seq = ++this.seq;
    const expiresAt = ttlMs === undefined ? undefined : this.clock.now() + ttlMs;
    this.records.set(key, { op, value, seq, expiresAt });
    this.#cancelExpiry(key);
    if (ttlMs !== undefined) this.#scheduleExpiry(key, seq, ttlMs);
    if (op === 'purge') this.#removeKeyHistory(key);
    this.#append({ seq, key, type: op, value, removed: false });
    return seq;
  }

  /** Expires `key` if its TTL'd record `seq` is still current and due. */
  expire(key: string, seq: number): void {
    const record = this.records.get(key);
    if (record === undefined || record.seq !== seq || record.expiresAt === undefined) return;
    const remaining = record.expiresAt - this.clock.now();
    if (remaining > 0) {
      this.#scheduleExpiry(key, seq, remaining);
      return;
    }
    this.#expiryTimers.delete(key);
    this.records.delete(key);
    this.#append({ seq: ++this.seq, key, type: 'expire', value: undefined, removed: false });
  }

  /** Drops every history entry up to `through`; watches resumed from before it fail with `CursorExpired`. */
  forgetHistory(through: number): void {
    for (const change of this.history) {
      if (change.seq > through) break;
      this.#removeChange(change);
    }
    this.horizon = Math.max(this.horizon, Math.min(through, this.seq));
    this.#sweepRemoved();
  }

  /** Index of the first retained change with `seq > after`. */
  firstAfter(after: number): number {
    let low = 0;
    let high = this.history.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((this.history[middle] as Change).seq <= after) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  #append(change: Change): void {
    this.history.push(change);
    let perKey = this.changesByKey.get(change.key);
    if (perKey === undefined) {
      perKey = [];
      this.changesByKey.set(change.key, perKey);
    }
    perKey.push(change);
    // Coalescing a key's older versions loses nothing a resumed watch needs: its latest change stays.
    while (perKey.length > this.capabilities.history) this.#removeChange(perKey[0] as Change);
    const retained = this.history.length - this.removedChanges;
    if (retained > this.maxHistoryEntries) {
      let excess = retained - this.maxHistoryEntries;
      for (const oldest of this.history) {
        if (excess === 0) break;
        if (oldest.removed) continue;
        const latestOfKey = this.changesByKey.get(oldest.key)?.at(-1) === oldest;
        this.#removeChange(oldest);
        if (latestOfKey) this.horizon = Math.max(this.horizon, oldest.seq);
        excess--;
      }
    }
    this.#sweepRemoved();
    this.changed.notify();
  }

  #removeKeyHistory(key: string): void {
    for (const change of [...(this.changesByKey.get(key) ?? [])]) this.#removeChange(change);
  }

  #removeChange(change: Change): void {
    if (change.removed) return;
    change.removed = true;
    this.removedChanges++;
    const perKey = this.changesByKey.get(change.key);
    if (perKey !== undefined) {
      const index = perKey.indexOf(change);
      if (index >= 0) perKey.splice(index, 1);
      if (perKey.length === 0) this.changesByKey.delete(change.key);
    }
  }

  #sweepRemoved(): void {
    if (this.removedChanges > 1024 && this.removedChanges * 2 > this.history.length) {
      this.history = this.history.filter((change) => !change.removed);
      this.removedChanges = 0;
    }
  }

  #scheduleExpiry(key: string, seq: number, delayMs: number): void {
    this.#expiryTimers.set(
      key,
      this.clock.setTimer(delayMs, () => this.expire(key, seq)),
    );
  }

  #cancelExpiry(key: string): void {
    this.#expiryTimers.get(key)?.();
    this.#expiryTimers.delete(key);
  }
}

/**
 * An in-process "server" holding named memory buckets. Open several handles on
 * one server to simulate several clients of one bucket.
 */
export class MemoryKvServer {
  readonly #buckets = new Map<string, MemoryBucket>();
  /** The last sequence of each deleted bucket, so that a bucket made again under its name never reuses one. */
  readonly #retired = new Map<string, number>();

  /** @internal */
  bucket(name: string, options: MemoryBucketOptions): MemoryBucket {
    let bucket = this.#buckets.get(name);
    if (bucket === undefined) {
      bucket = new MemoryBucket(options);
      const retired = this.#retired.get(name);
      if (retired !== undefined) {
        // A new incarnation: its sequences continue past the old one's, so old versions never match, and
        // its horizon sits above every old cursor, so resuming from one fails with CursorExpired.
        bucket.seq = retired + 1;
        bucket.horizon = retired + 1;
      }
      this.#buckets.set(name, bucket);
    }
    return bucket;
  }

  /** Names of the buckets that exist on this server. */
  bucketNames(): string[] {
    return [...this.#buckets.keys()];
  }

  /** Watches currently running on `bucket`, across all handles (0 when the bucket does not exist). */
  activeWatches(bucket: string): number {
    return this.#buckets.get(bucket)?.activeWatches ?? 0;
  }

  /**
   * Forgets the change history of `bucket` up to and including `through`
   * (default: all of it), as a server compacting its log would. Watches
   * resumed from an earlier cursor then fail with `CursorExpired`.
   */
  forgetHistory(bucket: string, through?: WatchCursor): void {
    const state = this.#buckets.get(bucket);
    if (state === undefined) return;
    state.forgetHistory(through === undefined ? state.seq : parseSequence(through, 'cursor'));
  }

  /**
   * Deletes a bucket and all its data; open handles on it keep the old state.
   * A bucket opened again under the name is a new incarnation: versions and
   * cursors of the old one never match it (resuming fails with `CursorExpired`).
   */
  deleteBucket(bucket: string): void {
    const state = this.#buckets.get(bucket);
    if (state !== undefined) this.#retired.set(bucket, state.seq);
    this.#buckets.delete(bucket);
  }
}

/** Creates an empty in-memory server. */
export function createMemoryKvServer(): MemoryKvServer {
  return new MemoryKvServer();
}

/**
 * Opens a handle on an in-memory bucket: the reference implementation of the
 * contract and the embedded default. Nothing survives the process.
 *
 * @throws {KvError} `InvalidArgument` for a bad option
 */
export async function openMemoryKv(options: MemoryKvOptions = {}): Promise<MemoryKvStore> {
  const server = options.server ?? createMemoryKvServer();
  const bucketName = options.bucket ?? 'default';
  if (typeof bucketName !== 'string' || !/^[A-Za-z0-9_-]+$/.test(bucketName)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `a bucket name must match [A-Za-z0-9_-]+, got ${describe(bucketName)}`);
  }
  return new MemoryKvStore(server, bucketName, server.bucket(bucketName, options));
}

/** A handle on a memory bucket. See {@link openMemoryKv}. */
export class MemoryKvStore implements KvStore {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  /** The server this handle's bucket lives on. */
  readonly server: MemoryKvServer;
  readonly #state: MemoryBucket;
  #closed = false;
  readonly #closing = new AbortController();

  /** @internal use {@link openMemoryKv} */
  constructor(server: MemoryKvServer, bucket: string, state: MemoryBucket) {
    this.server = server;
    this.bucket = bucket;
    this.#state = state;
    this.capabilities = state.capabilities;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.#assertOpen();
    assertValidKey(key, backend);
    const record = this.#state.live(key);
    return record === undefined ? undefined : entryOf(key, record);
  }

  async entry(key: string): Promise<KvRecord | undefined> {
    this.#assertOpen();
    assertValidKey(key, backend);
    const record = this.#state.current(key);
    if (record === undefined) return undefined;
    if (record.op === 'put') return { key, op: 'put', value: copy(record.value), version: versionOf(record.seq) };
    return { key, op: record.op, version: versionOf(record.seq) };
  }

  keys(prefix?: string): AsyncIterable<string> {
    const scan = this.scan(prefix);
    return {
      async *[Symbol.asyncIterator]() {
        for await (const entry of scan) yield entry.key;
      },
    };
  }

  scan(prefix?: string): AsyncIterable<KvEntry> {
    this.#assertOpen();
    if (prefix !== undefined) assertValidPrefix(prefix, backend);
    const state = this.#state;
    const assertOpen = () => this.#assertOpen();
    return {
      async *[Symbol.asyncIterator]() {
        // A snapshot of the key names; each value is read when it is reached, as a paged backend would.
        const names = [...state.records.keys()].filter((key) => keyMatchesPrefix(key, prefix)).sort();
        for (const key of names) {
          assertOpen();
          const record = state.live(key);
          if (record !== undefined) yield entryOf(key, record);
        }
      },
    };
  }

  async put(key: string, value: Uint8Array): Promise<Version> {
    this.#assertWritable(key, value);
    return versionOf(this.#state.write(key, 'put', copy(value)));
  }

  async create(key: string, value: Uint8Array): Promise<Version> {
    this.#assertWritable(key, value);
    if (this.#state.live(key) !== undefined) {
      throw kvError(KvErrorCode.AlreadyExists, backend, 'a live value already exists', { key });
    }
    return versionOf(this.#state.write(key, 'put', copy(value)));
  }

  async update(key: string, value: Uint8Array, expected: Version): Promise<Version> {
    this.#assertWritable(key, value);
    this.#assertExpected(key, expected);
    return versionOf(this.#state.write(key, 'put', copy(value)));
  }

  async delete(key: string): Promise<Version> {
    this.#assertOpen();
    assertValidKey(key, backend);
    return versionOf(this.#state.write(key, 'delete', undefined));
  }

  async deleteWithVersion(key: string, expected: Version): Promise<Version> {
    this.#assertOpen();
    assertValidKey(key, backend);
    this.#assertExpected(key, expected);
    return versionOf(this.#state.write(key, 'delete', undefined));
  }

  async putWithTtl(key: string, value: Uint8Array, ttlMs: number): Promise<Version> {
    this.#assertWritable(key, value);
    assertTtl(ttlMs, backend, key);
    return versionOf(this.#state.write(key, 'put', copy(value), ttlMs));
  }

  async purge(key: string): Promise<Version> {
    this.#assertOpen();
    assertValidKey(key, backend);
    return versionOf(this.#state.write(key, 'purge', undefined));
  }

  compareCursors(a: WatchCursor, b: WatchCursor): number {
    return parseSequence(a, 'cursor') - parseSequence(b, 'cursor');
  }

  /** The cursor of the latest change in the bucket (the head); `0` for an empty bucket. */
  headCursor(): WatchCursor {
    this.#assertOpen();
    return cursorOf(this.#state.seq);
  }

  watch(options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    this.#assertOpen();
    const prefixes = normalizePrefixes(options.prefixes, backend);
    const from = options.from === undefined ? undefined : parseSequence(options.from, 'cursor');
    assertSignal(options.signal, backend);
    const state = this.#state;
    const signal = options.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal]);
    const assertOpen = () => this.#assertOpen();

    return {
      async *[Symbol.asyncIterator](): AsyncGenerator<WatchEvent> {
        assertOpen();
        state.activeWatches++;
        try {
          let position: number;
          if (from === undefined) {
            // The listing is taken in one synchronous step at the head, so every later change has a higher
            // sequence and is delivered live: no scan-to-watch race.
            const head = state.seq;
            const listing: Array<[string, StoredRecord]> = [];
            for (const [key, record] of state.records) {
              if (keyMatchesAnyPrefix(key, prefixes) && state.live(key) === record) listing.push([key, record]);
            }
            listing.sort((a, b) => a[1].seq - b[1].seq);
            for (const [key, record] of listing) {
              if (signal.aborted) break;
              yield { type: 'put', key, value: copy(record.value), version: versionOf(record.seq), cursor: cursorOf(record.seq) };
            }
            position = head;
          } else {
            if (from > state.seq) {
              throw kvError(
                KvErrorCode.CursorExpired,
                backend,
                `cursor ${from} is ahead of this bucket's head ${state.seq}; it is not from this bucket`,
              );
            }
            position = from;
            const head = state.seq;
            yield* replay(head);
          }
          if (signal.aborted) return assertOpen();
          yield { type: 'synced', cursor: cursorOf(position) };
          for (;;) {
            if (state.seq > position) yield* replay(state.seq);
            else await state.changed.wait(signal);
            if (signal.aborted) return assertOpen();
          }

          async function* replay(until: number): AsyncGenerator<WatchEvent> {
            while (position < until) {
              if (position < state.horizon) {
                throw kvError(
                  KvErrorCode.CursorExpired,
                  backend,
                  `history after cursor ${position} is no longer retained (horizon ${state.horizon}); re-list with a watch without 'from'`,
                );
              }
              const index = state.firstAfter(position);
              const change = state.history[index];
              if (change === undefined || change.seq > until) {
                position = until;
                return;
              }
              position = change.seq;
              if (change.removed || !keyMatchesAnyPrefix(change.key, prefixes)) continue;
              const event = eventOf(change);
              if (signal.aborted) return;
              yield event;
            }
          }
        } finally {
          state.activeWatches--;
        }
      },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw kvError(KvErrorCode.Closed, backend, `the handle on bucket '${this.bucket}' is closed`);
  }

  #assertWritable(key: string, value: Uint8Array): void {
    this.#assertOpen();
    assertValidKey(key, backend);
    assertValue(value, this.capabilities.maxValueBytes, backend, key);
  }

  /** CAS compares against the live version: absent, deleted, purged and expired all count as different. */
  #assertExpected(key: string, expected: Version): void {
    const expectedSeq = parseSequence(expected, 'version', key);
    const record = this.#state.live(key);
    if (record === undefined || record.seq !== expectedSeq) {
      const actual = record === undefined ? 'no live value' : `version ${record.seq}`;
      throw kvError(KvErrorCode.RevisionMismatch, backend, `expected version ${expected}, found ${actual}`, { key });
    }
  }
}

function eventOf(change: Change): WatchEvent {
  const cursor = cursorOf(change.seq);
  switch (change.type) {
    case 'put':
      return { type: 'put', key: change.key, value: copy(change.value), version: versionOf(change.seq), cursor };
    case 'delete':
    case 'purge':
      return { type: change.type, key: change.key, version: versionOf(change.seq), cursor };
    case 'expire':
      return { type: 'expire', key: change.key, cursor };
  }
}

function entryOf(key: string, record: StoredRecord): KvEntry {
  return { key, value: copy(record.value), version: versionOf(record.seq) };
}

function copy(value: Uint8Array | undefined): Uint8Array {
  return value === undefined ? new Uint8Array(0) : new Uint8Array(value);
}

function versionOf(seq: number): Version {
  return String(seq) as Version;
}

function cursorOf(seq: number): WatchCursor {
  return String(seq) as WatchCursor;
}

function parseSequence(text: unknown, what: 'version' | 'cursor', key?: string): number {
  if (typeof text === 'string' && /^(0|[1-9][0-9]{0,15})$/.test(text)) {
    const value = Number(text);
    if (Number.isSafeInteger(value)) return value;
  }
  throw kvError(KvErrorCode.InvalidArgument, backend, `${describe(text)} is not a ${what} of the memory backend`, { key });
}
