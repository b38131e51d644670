import { randomBytes } from 'node:crypto';
import {
  type Clock,
  type KvCapabilities,
  type KvEntry,
  KvError,
  KvErrorCode,
  type KvRecord,
  type KvStore,
  keyMatchesPrefix,
  systemClock,
  type Version,
  type WatchCursor,
  type WatchEvent,
  type WatchOptions,
} from '@weft/kv';
import {
  assertSignal,
  assertTtl,
  assertValidKey,
  assertValidPrefix,
  assertValue,
  describeArgument,
  keyMatchesAnyPrefix,
  kvError,
  normalizePrefixes,
} from '@weft/kv/backend';
import { type BindingDatabase, defaultApiVersion, isBindingDatabase, loadFdbBinding, wrapBindingDatabase } from './binding.js';
import {
  BucketLayout,
  commitVersionOf,
  decodeLogEntry,
  decodeRecord,
  decodeVersionValue,
  encodeLogEntry,
  encodeRecordSuffix,
  fromHex,
  inlineLimit,
  joinChunks,
  type Op,
  type StoredRecord,
  splitChunks,
  toHex,
  versionAtCommit,
  versionOf,
} from './layout.js';
import {
  type FdbDatabase,
  FdbErrorCode,
  type FdbTransaction,
  fdbErrorCode,
  fdbErrorNames,
  isMaybeCommitted,
  isRetryable,
} from './transactor.js';

const backend = 'fdb';

/** Options of {@link openFdbKv}. */
export interface FdbKvOptions {
  /** The bucket, `[A-Za-z0-9_-]+`. */
  readonly bucket: string;
  /**
   * A caller-owned database: the `foundationdb` binding's `Database` (from
   * `fdb.open()`), or an {@link FdbDatabase} such as the simulation.
   * `close()` leaves it open. Without it the backend loads the binding and
   * opens its own database from `clusterFile`.
   */
  readonly database?: FdbDatabase | BindingDatabase;
  /** The cluster file; omitted means the binding's default (`FDB_CLUSTER_FILE`, then the platform default). */
  readonly clusterFile?: string;
  /** The FDB API version to select when the backend loads the binding. @default 720 */
  readonly apiVersion?: number;
  /** First segment of every key the bucket uses. @default 'weft' */
  readonly namespace?: string;
  /**
   * The largest value; values over 100 KB are split into chunks in the same
   * transaction. At most 9 MiB, to stay inside FoundationDB's 10 MB
   * transaction limit. @default 1048576 (1 MiB)
   */
  readonly maxValueBytes?: number;
  /**
   * How often this handle sweeps expired entries into `expire` events; `0`
   * disables its sweeper (another handle's, or `sweepExpired()`, must run).
   * @default 1000
   */
  readonly sweepIntervalMs?: number;
  /**
   * How long the change log keeps entries. Older entries are trimmed by the
   * maintenance job, and watches resumed from before them fail with
   * `CursorExpired`. `0` keeps the log forever. @default 86400000 (24 hours)
   */
  readonly historyRetentionMs?: number;
  /** How often this handle runs the retention job; `0` disables it. @default 60000 */
  readonly maintenanceIntervalMs?: number;
  /**
   * Every transaction (with its retries) fails after this long: reads with
   * `Timeout`, writes whose commit may have been sent with `Indeterminate`.
   * @default 10000
   */
  readonly transactionTimeoutMs?: number;
  /**
   * Retries of one operation's transaction (conflicts, `commit_unknown_result`
   * and other retryable errors) before it fails. @default 100
   */
  readonly maxRetries?: number;
  /** The clock TTLs run on (tests pass a `ManualClock`). @default the system clock */
  readonly clock?: Clock;
}

interface Settings {
  readonly maxValueBytes: number;
  readonly sweepIntervalMs: number;
  readonly historyRetentionMs: number;
  readonly maintenanceIntervalMs: number;
  readonly transactionTimeoutMs: number;
  readonly maxRetries: number;
}

/** How long a write id is kept for recognising a retried write (far longer than any retry loop). */
const writeMarkerRetentionMs = 10 * 60 * 1000;
/** Records per listing transaction. */
const listPage = 200;
/** Log entries per watch transaction. */
const logBatch = 256;
/** Value bytes one watch transaction reads before it stops its batch early. */
const batchValueBytes = 4 * 1024 * 1024;
/** A caught-up watch re-reads the log at least this often, even if its FDB watch never fires. */
const idleRecheckMs = 5000;

/**
 * Opens a handle on a FoundationDB bucket. Each mutation writes the record and
 * a versionstamped change-log entry in one transaction; watches read the log
 * in short transactions and wait on the bucket's head key with an FDB watch.
 *
 * ```ts
 * import { openFdbKv } from '@weft/kv-fdb';
 * await using kv = await openFdbKv({ bucket: 'orders' }); // the default cluster file
 * ```
 *
 * @throws {KvError} `InvalidArgument` for bad options; `Unsupported` when the
 *   `foundationdb` binding or the `libfdb_c` client library is missing (the
 *   message says what to install)
 */
export async function openFdbKv(options: FdbKvOptions): Promise<FdbKvStore> {
  const bucket = options.bucket;
  if (typeof bucket !== 'string' || !/^[A-Za-z0-9_-]+$/.test(bucket)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `a bucket name must match [A-Za-z0-9_-]+, got ${describeArgument(bucket)}`);
  }
  const namespace = options.namespace ?? 'weft';
  if (typeof namespace !== 'string' || !/^[A-Za-z0-9_-]+$/.test(namespace)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, 'a namespace must match [A-Za-z0-9_-]+');
  }
  const settings: Settings = {
    maxValueBytes: options.maxValueBytes ?? 1024 * 1024,
    sweepIntervalMs: options.sweepIntervalMs ?? 1000,
    historyRetentionMs: options.historyRetentionMs ?? 24 * 60 * 60 * 1000,
    maintenanceIntervalMs: options.maintenanceIntervalMs ?? 60_000,
    transactionTimeoutMs: options.transactionTimeoutMs ?? 10_000,
    maxRetries: options.maxRetries ?? 100,
  };
  for (const [name, value, minimum] of [
    ['maxValueBytes', settings.maxValueBytes, 0],
    ['sweepIntervalMs', settings.sweepIntervalMs, 0],
    ['historyRetentionMs', settings.historyRetentionMs, 0],
    ['maintenanceIntervalMs', settings.maintenanceIntervalMs, 0],
    ['transactionTimeoutMs', settings.transactionTimeoutMs, 1],
    ['maxRetries', settings.maxRetries, 0],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < minimum) {
      throw kvError(
        KvErrorCode.InvalidArgument,
        backend,
        `${name} must be an integer of at least ${minimum}, got ${describeArgument(value)}`,
      );
    }
  }
  if (settings.maxValueBytes > 9 * 1024 * 1024) {
    throw kvError(
      KvErrorCode.InvalidArgument,
      backend,
      'maxValueBytes cannot exceed 9 MiB: a value is written in one transaction of at most 10 MB',
    );
  }
  if (options.database !== undefined && options.clusterFile !== undefined) {
    throw kvError(KvErrorCode.InvalidArgument, backend, 'give database or clusterFile, not both');
  }

  let database: FdbDatabase;
  const owned = options.database === undefined;
  if (options.database === undefined) {
    const binding = await loadFdbBinding(options.apiVersion ?? defaultApiVersion);
    try {
      database = wrapBindingDatabase(binding.open(options.clusterFile));
    } catch (error) {
      throw kvError(KvErrorCode.ConnectionFailed, backend, `cannot open the FoundationDB database: ${messageOf(error)}`, { cause: error });
    }
  } else if (isBindingDatabase(options.database)) {
    database = wrapBindingDatabase(options.database);
  } else if (typeof (options.database as FdbDatabase | null)?.createTransaction === 'function') {
    database = options.database as FdbDatabase;
  } else {
    throw kvError(
      KvErrorCode.InvalidArgument,
      backend,
      `database must be a foundationdb Database or an FdbDatabase, got ${describeArgument(options.database)}`,
    );
  }
  const store = new FdbKvStore(database, owned, bucket, new BucketLayout(namespace, bucket), settings, options.clock ?? systemClock);
  try {
    await store.initialize();
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

type Mutation = 'put' | 'putWithTtl' | 'create' | 'update' | 'delete' | 'deleteWithVersion' | 'purge';

/** What a write transaction's body decides: whether to commit, and how to turn the versionstamp (if any) into the result. */
interface WriteStep<T> {
  readonly commit: boolean;
  readonly stamp?: Promise<Buffer>;
  readonly finish: (stamp: Buffer | undefined) => T;
}

function done<T>(result: T, commit = false): WriteStep<T> {
  return { commit, finish: () => result };
}

interface LogBatch {
  readonly events: Array<{ readonly version: Buffer; readonly event: WatchEvent | undefined }>;
  readonly head: Buffer;
  /** Set when the batch was empty: an FDB watch on the head key, active since the batch's read. */
  readonly wait: { promise: Promise<boolean>; cancel(): void } | undefined;
}

/** A handle on a FoundationDB bucket. See {@link openFdbKv}. */
export class FdbKvStore implements KvStore {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  readonly #db: FdbDatabase;
  readonly #owned: boolean;
  readonly #layout: BucketLayout;
  readonly #settings: Settings;
  readonly #clock: Clock;
  readonly #closing = new AbortController();
  #closed = false;
  #cancelSweep: (() => void) | undefined;
  #maintenance: NodeJS.Timeout | undefined;
  /** The last error of the background sweeper or retention job, if its latest run failed. */
  lastMaintenanceError: KvError | undefined;

  /** @internal use {@link openFdbKv} */
  constructor(db: FdbDatabase, owned: boolean, bucket: string, layout: BucketLayout, settings: Settings, clock: Clock) {
    this.#db = db;
    this.#owned = owned;
    this.bucket = bucket;
    this.#layout = layout;
    this.#settings = settings;
    this.#clock = clock;
    this.capabilities = Object.freeze({
      ttl: true,
      purge: true,
      multiPrefixWatch: 'emulated',
      maxValueBytes: settings.maxValueBytes,
      readYourWrites: true,
      history: 1,
      // A mutation over a passed, unswept TTL writes its expire first, in the same transaction.
      expireBeforeNextWrite: true,
    });
  }

  /** The key prefix this bucket's data lives under, for inspection and operations tooling. */
  get keyPrefix(): Buffer {
    return Buffer.from(this.#layout.prefix);
  }

  /** @internal creates the bucket's head and horizon on first use, then starts the background jobs */
  async initialize(): Promise<void> {
    const layout = this.#layout;
    await this.#write('open', undefined, async (tn) => {
      if ((await tn.get(layout.horizon)) !== undefined) return done(undefined);
      // A new (or dropped and recreated) bucket: no cursor from before this point can be resumed.
      tn.setVersionstampedValue(layout.horizon, order(0));
      tn.setVersionstampedValue(layout.head, order(0));
      return done(undefined, true);
    });
    if (this.#settings.sweepIntervalMs > 0) this.#scheduleSweep();
    if (this.#settings.maintenanceIntervalMs > 0) {
      this.#maintenance = setInterval(() => {
        this.trimHistory().catch((error: unknown) => {
          if (!this.#closed) this.lastMaintenanceError = this.#toKvError(error, 'trimHistory', undefined, false, false);
        });
      }, this.#settings.maintenanceIntervalMs);
      this.#maintenance.unref();
    }
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.#assertOpen();
    assertValidKey(key, backend);
    return this.#read('get', key, async (tn) => {
      const found = await this.#readRecord(tn, key, true);
      if (found === undefined || found.record.op !== 'put' || this.#expired(found.record)) return undefined;
      return { key, value: found.value ?? new Uint8Array(0), version: toHex(found.record.version) };
    });
  }

  async entry(key: string): Promise<KvRecord | undefined> {
    this.#assertOpen();
    assertValidKey(key, backend);
    return this.#read('entry', key, async (tn) => {
      const found = await this.#readRecord(tn, key, true);
      if (found === undefined || this.#expired(found.record)) return undefined;
      const version = toHex(found.record.version);
      if (found.record.op === 'put') return { key, op: 'put', value: found.value ?? new Uint8Array(0), version };
      return { key, op: found.record.op, version };
    });
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

  async put(key: string, value: Uint8Array): Promise<Version> {
    this.#assertWritable(key, value);
    return this.#mutate('put', key, value);
  }

  async create(key: string, value: Uint8Array): Promise<Version> {
    this.#assertWritable(key, value);
    return this.#mutate('create', key, value);
  }

  async update(key: string, value: Uint8Array, expected: Version): Promise<Version> {
    this.#assertWritable(key, value);
    return this.#mutate('update', key, value, fromHex(expected, 'version', key));
  }

  async delete(key: string): Promise<Version> {
    this.#assertOpen();
    assertValidKey(key, backend);
    return this.#mutate('delete', key);
  }

  async deleteWithVersion(key: string, expected: Version): Promise<Version> {
    this.#assertOpen();
    assertValidKey(key, backend);
    return this.#mutate('deleteWithVersion', key, undefined, fromHex(expected, 'version', key));
  }

  async putWithTtl(key: string, value: Uint8Array, ttlMs: number): Promise<Version> {
    this.#assertWritable(key, value);
    assertTtl(ttlMs, backend, key);
    return this.#mutate('putWithTtl', key, value, undefined, Math.max(1, Math.ceil(ttlMs)));
  }

  async purge(key: string): Promise<Version> {
    this.#assertOpen();
    assertValidKey(key, backend);
    return this.#mutate('purge', key);
  }

  /**
   * Turns entries whose TTL has passed into `expire` events now (the
   * background sweeper calls this every `sweepIntervalMs`).
   *
   * @returns how many entries expired
   */
  async sweepExpired(limit = 500): Promise<number> {
    this.#assertOpen();
    const layout = this.#layout;
    return this.#write('sweepExpired', undefined, async (tn) => {
      const now = this.#clock.now();
      const [start, end] = layout.expiredRange(now);
      const due = await tn.getRange(start, end, { limit });
      let expired = 0;
      for (const [indexKey] of due) {
        const { key, expiresAt } = layout.parseExpiry(indexKey);
        tn.clear(indexKey);
        const raw = await tn.get(layout.record(key));
        const record = raw === undefined ? undefined : decodeRecord(raw, key);
        // An index entry left behind by a later write of the key has nothing to expire.
        if (record === undefined || record.op !== 'put' || record.expiresAt !== expiresAt) continue;
        tn.clear(layout.record(key));
        if (record.chunks > 0) tn.clearRange(...layout.chunkRange(key));
        tn.setVersionstampedKey(layout.log, order(expired), encodeLogEntry('expire', key));
        expired++;
      }
      if (expired > 0) tn.setVersionstampedValue(layout.head, order(expired - 1));
      return done(expired, due.length > 0);
    });
  }

  /**
   * The retention job: trims the change log up to `through` (clamped to the
   * head; default: entries older than `historyRetentionMs`) and advances the horizon, so watches
   * resumed from before it fail with `CursorExpired`. Also forgets write ids
   * older than ten minutes. The background job calls it every
   * `maintenanceIntervalMs`.
   *
   * @returns the horizon cursor after trimming
   */
  async trimHistory(options: { readonly through?: WatchCursor } = {}): Promise<WatchCursor> {
    this.#assertOpen();
    const through = options.through === undefined ? undefined : fromHex(options.through, 'cursor');
    const layout = this.#layout;
    const retention = this.#settings.historyRetentionMs;
    const horizon = await this.#write('trimHistory', undefined, async (tn) => {
      const head = decodeVersionValue(await tn.get(layout.head), 'head');
      const current = decodeVersionValue(await tn.get(layout.horizon), 'horizon');
      if (head === undefined || current === undefined) throw this.#bucketGone();
      tn.clearRange(...layout.writeMarkersBefore(this.#clock.now() - writeMarkerRetentionMs));
      // FoundationDB versions advance about 1,000,000 per second.
      let cutoff = through ?? (retention > 0 ? versionAtCommit(commitVersionOf(head) - BigInt(retention) * 1000n) : current);
      if (Buffer.compare(cutoff, head) > 0) cutoff = head;
      if (Buffer.compare(cutoff, current) <= 0) return done(current, true);
      tn.clearRange(layout.log, layout.logAfter(cutoff));
      tn.set(layout.horizon, cutoff);
      return done(cutoff, true);
    });
    return toHex(horizon);
  }

  /**
   * Deletes the whole bucket: every record, chunk, log entry, index entry,
   * the head and the horizon, in one transaction. Running watches on it fail
   * with `CursorExpired`; a handle opened later starts a new, empty bucket
   * that no earlier cursor can resume.
   */
  async destroyBucket(): Promise<void> {
    this.#assertOpen();
    const prefix = this.#layout.prefix;
    await this.#write('destroyBucket', undefined, async (tn) => {
      tn.clearRange(prefix, Buffer.concat([prefix, Buffer.from([0xff])]));
      return done(undefined, true);
    });
  }

  compareCursors(a: WatchCursor, b: WatchCursor): number {
    return Buffer.compare(fromHex(a, 'cursor'), fromHex(b, 'cursor'));
  }

  watch(options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    this.#assertOpen();
    const prefixes = normalizePrefixes(options.prefixes, backend);
    const from = options.from === undefined ? undefined : fromHex(options.from, 'cursor');
    assertSignal(options.signal, backend);
    const signal = options.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal]);
    return { [Symbol.asyncIterator]: () => this.#watch(prefixes, from, signal) };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelSweep?.();
    clearInterval(this.#maintenance);
    this.#closing.abort();
    if (this.#owned) this.#db.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async *#watch(prefixes: string[] | undefined, from: Buffer | undefined, signal: AbortSignal): AsyncGenerator<WatchEvent> {
    this.#assertOpen();
    let wait: { promise: Promise<boolean>; cancel(): void } | undefined;
    try {
      let position: Buffer;
      let syncedAt: Buffer | undefined;
      if (from === undefined) {
        const listing = this.#stateSync(prefixes, signal);
        for (;;) {
          const next = await listing.next();
          if (next.done) {
            position = next.value;
            break;
          }
          yield next.value;
        }
      } else {
        position = from;
        syncedAt = (await this.#bounds(signal, from)).head;
      }
      // A caught-up batch arms its FDB watch before `synced` is delivered, so the watch holds it from then on.
      let batch = await this.#readLog(position, prefixes);
      wait = batch.wait;
      if (from === undefined) {
        // Keys that changed after the listing's end were left out of it: the log delivers them right after `synced`.
        if (signal.aborted) return this.#assertOpen();
        yield { type: 'synced', cursor: toHex(position) };
      }
      for (;;) {
        if (signal.aborted) return this.#assertOpen();
        for (const { version, event } of batch.events) {
          position = version;
          if (event === undefined) continue;
          if (signal.aborted) return this.#assertOpen();
          yield event;
        }
        if (syncedAt !== undefined && (batch.events.length === 0 || Buffer.compare(position, syncedAt) >= 0)) {
          if (Buffer.compare(position, syncedAt) < 0) position = syncedAt;
          syncedAt = undefined;
          yield { type: 'synced', cursor: toHex(position) };
        }
        if (wait !== undefined) {
          await this.#waitForChange(wait, signal);
          wait.cancel();
          wait = undefined;
        }
        if (signal.aborted) return this.#assertOpen();
        batch = await this.#readLog(position, prefixes);
        wait = batch.wait;
      }
    } catch (error) {
      if (signal.aborted && !KvError.is(error)) return this.#assertOpen();
      throw this.#toKvError(error, 'watch', undefined, false, false);
    } finally {
      wait?.cancel();
    }
  }

  /** The head and horizon now; throws `CursorExpired` when `from` cannot be resumed gap-free. */
  async #bounds(signal: AbortSignal, from?: Buffer): Promise<{ head: Buffer; horizon: Buffer }> {
    const bounds = await this.#read('watch', undefined, async (tn) => this.#readBounds(tn));
    if (signal.aborted) return bounds;
    if (from !== undefined) this.#assertResumable(from, bounds);
    return bounds;
  }

  async #readBounds(tn: FdbTransaction): Promise<{ head: Buffer; horizon: Buffer }> {
    const [head, horizon] = await Promise.all([tn.get(this.#layout.head), tn.get(this.#layout.horizon)]);
    const decodedHead = decodeVersionValue(head, 'head');
    const decodedHorizon = decodeVersionValue(horizon, 'horizon');
    if (decodedHead === undefined || decodedHorizon === undefined) throw this.#bucketGone();
    return { head: decodedHead, horizon: decodedHorizon };
  }

  #assertResumable(position: Buffer, bounds: { head: Buffer; horizon: Buffer }): void {
    if (Buffer.compare(position, bounds.horizon) < 0) {
      throw kvError(
        KvErrorCode.CursorExpired,
        backend,
        `changes after cursor ${toHex(position)} were trimmed from the change log (horizon ${toHex(bounds.horizon)}); re-list`,
      );
    }
    if (Buffer.compare(position, bounds.head) > 0) {
      throw kvError(
        KvErrorCode.CursorExpired,
        backend,
        `cursor ${toHex(position)} is ahead of bucket '${this.bucket}' (head ${toHex(bounds.head)}): it belongs to another bucket or cluster; re-list`,
      );
    }
  }

  #bucketGone(): KvError {
    return kvError(KvErrorCode.CursorExpired, backend, `bucket '${this.bucket}' was removed while in use; re-list`);
  }

  /**
   * One short transaction of the change log after `position`: the entries,
   * with the values of puts read in the same transaction (a put whose record
   * has moved on is skipped: its later change follows in the log). When the
   * log has nothing new, the transaction also sets an FDB watch on the head.
   */
  async #readLog(position: Buffer, prefixes: string[] | undefined): Promise<LogBatch> {
    const layout = this.#layout;
    return this.#read(
      'watch',
      undefined,
      async (tn) => {
        const bounds = await this.#readBounds(tn);
        this.#assertResumable(position, bounds);
        const rows = await tn.getRange(layout.logAfter(position), layout.logEnd(), { limit: logBatch });
        const events: LogBatch['events'] = [];
        let valueBytes = 0;
        for (const [logKey, entry] of rows) {
          const version = Buffer.from(layout.logVersion(logKey));
          const { op, key } = decodeLogEntry(entry);
          if (!keyMatchesAnyPrefix(key, prefixes)) {
            events.push({ version, event: undefined });
            continue;
          }
          const cursor = toHex(version);
          if (op === 'put') {
            const found = await this.#readRecord(tn, key, true);
            if (found === undefined || !found.record.version.equals(version)) {
              events.push({ version, event: undefined });
              continue;
            }
            const value = found.value ?? new Uint8Array(0);
            events.push({ version, event: { type: 'put', key, value, version: cursor, cursor } });
            valueBytes += value.byteLength;
            if (valueBytes > batchValueBytes) break;
          } else if (op === 'expire') {
            events.push({ version, event: { type: 'expire', key, cursor } });
          } else {
            events.push({ version, event: { type: op, key, version: cursor, cursor } });
          }
        }
        if (rows.length > 0) return { events, head: bounds.head, wait: undefined };
        const wait = tn.watch(layout.head);
        wait.promise.catch(() => undefined);
        try {
          await tn.commit();
        } catch (error) {
          wait.cancel();
          throw error;
        }
        return { events, head: bounds.head, wait };
      },
      true,
    );
  }

  async #waitForChange(wait: { promise: Promise<boolean> }, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await Promise.race([
        wait.promise.catch(() => sleep(100)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, idleRecheckMs);
          onAbort = resolve;
          signal.addEventListener('abort', onAbort, { once: true });
        }),
      ]);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * The state-sync listing. Records are listed in several short transactions
   * starting at head S; the log from S to the head E read after the listing
   * then patches every key that changed meanwhile, so the result is the live
   * state as of E, delivered in version order. Returns E, the `synced` cursor.
   */
  async *#stateSync(prefixes: string[] | undefined, signal: AbortSignal): AsyncGenerator<WatchEvent, Buffer> {
    const layout = this.#layout;
    for (let attempt = 0; ; attempt++) {
      const start = (await this.#bounds(signal)).head;
      const versions = new Map<string, Buffer>();
      // The same pages keys() reads, one short transaction each.
      for (const prefix of prefixes ?? [undefined]) {
        for await (const entry of this.#list(prefix, false)) {
          if (signal.aborted) return start;
          versions.set(entry.key, fromHex(entry.version, 'version'));
        }
      }
      // Patch with what changed while listing: the log from the listing's start to the head now.
      let position = start;
      let end: Buffer | undefined;
      let trimmed = false;
      for (;;) {
        if (signal.aborted) return start;
        const step = await this.#read('watch', undefined, async (tn) => {
          const bounds = await this.#readBounds(tn);
          if (Buffer.compare(position, bounds.horizon) < 0) return undefined;
          const rows = await tn.getRange(layout.logAfter(position), layout.logEnd(), { limit: 1000 });
          return { head: bounds.head, rows };
        });
        if (step === undefined) {
          trimmed = true;
          break;
        }
        end ??= step.head;
        for (const [logKey, entry] of step.rows) {
          const version = Buffer.from(layout.logVersion(logKey));
          if (Buffer.compare(version, end) > 0) break;
          position = version;
          const { op, key } = decodeLogEntry(entry);
          if (!keyMatchesAnyPrefix(key, prefixes)) continue;
          if (op === 'put') versions.set(key, version);
          else versions.delete(key);
        }
        if (step.rows.length < 1000 || Buffer.compare(position, end) >= 0) break;
      }
      if (trimmed || end === undefined) {
        // Retention trimmed the log under a very long listing: list again from a fresh start.
        if (attempt < 3) continue;
        throw kvError(KvErrorCode.CursorExpired, backend, 'the change log was trimmed faster than the bucket could be listed');
      }
      const ordered = [...versions].sort(([, a], [, b]) => Buffer.compare(a, b));
      for (let index = 0; index < ordered.length; index += listPage) {
        if (signal.aborted) return end;
        const slice = ordered.slice(index, index + listPage);
        const found = await this.#read('watch', undefined, async (tn) =>
          Promise.all(slice.map(([key]) => this.#readRecord(tn, key, true))),
        );
        for (const [offset, [key, version]] of slice.entries()) {
          const current = found[offset];
          // Changed after E: the log after `synced` delivers the newer state.
          if (current === undefined || current.record.op !== 'put' || !current.record.version.equals(version)) continue;
          const cursor = toHex(version);
          yield { type: 'put', key, value: current.value ?? new Uint8Array(0), version: cursor, cursor };
        }
      }
      return end;
    }
  }

  #list(prefix: string | undefined, withValues: boolean): AsyncIterable<KvEntry> {
    this.#assertOpen();
    if (prefix !== undefined) assertValidPrefix(prefix, backend);
    const store = this;
    const layout = this.#layout;
    return {
      async *[Symbol.asyncIterator]() {
        let [low, high] = layout.recordRange(prefix);
        for (;;) {
          store.#assertOpen();
          const page = await store.#read('scan', undefined, async (tn) => {
            const rows = await tn.getRange(low, high, { limit: listPage });
            const entries: KvEntry[] = [];
            for (const [recordKey, raw] of rows) {
              const key = layout.recordKey(recordKey);
              if (!keyMatchesPrefix(key, prefix)) continue;
              const record = decodeRecord(raw, key);
              if (record.op !== 'put' || store.#expired(record)) continue;
              const value = withValues ? await store.#valueOf(tn, key, record) : new Uint8Array(0);
              entries.push({ key, value, version: toHex(record.version) });
            }
            return { rows: rows.length, last: rows[rows.length - 1]?.[0], entries };
          });
          yield* page.entries;
          if (page.rows < listPage || page.last === undefined) return;
          low = Buffer.concat([page.last, Buffer.from([0])]);
        }
      },
    };
  }

  async #readRecord(
    tn: FdbTransaction,
    key: string,
    withValue: boolean,
  ): Promise<{ record: StoredRecord; value: Uint8Array | undefined } | undefined> {
    const raw = await tn.get(this.#layout.record(key));
    if (raw === undefined) return undefined;
    const record = decodeRecord(raw, key);
    if (!withValue || record.op !== 'put') return { record, value: undefined };
    return { record, value: await this.#valueOf(tn, key, record) };
  }

  async #valueOf(tn: FdbTransaction, key: string, record: StoredRecord): Promise<Uint8Array> {
    if (record.chunks === 0) return new Uint8Array(record.inline);
    const rows = await tn.getRange(...this.#layout.chunkRange(key), { limit: record.chunks + 1 });
    return joinChunks(record, rows, key);
  }

  #expired(record: StoredRecord): boolean {
    return record.expiresAt > 0 && record.expiresAt <= this.#clock.now();
  }

  async #mutate(mutation: Mutation, key: string, value?: Uint8Array, expected?: Buffer, ttlMs?: number): Promise<Version> {
    const layout = this.#layout;
    // Identifies this write across retries: a retry after commit_unknown_result finds it if the first attempt landed.
    const writeId = Buffer.alloc(16);
    writeId.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(this.#clock.now()))), 0);
    randomBytes(8).copy(writeId, 8);
    const marker = layout.writeMarker(writeId);
    return this.#write(mutation, key, async (tn, retryingUnknown) => {
      if (retryingUnknown) {
        const landed = decodeVersionValue(await tn.get(marker), 'write id');
        if (landed !== undefined) return done(toHex(landed));
      }
      const found = await this.#readRecord(tn, key, false);
      const record = found?.record;
      const live = record !== undefined && record.op === 'put' && !this.#expired(record);
      if (mutation === 'create' && live) {
        throw kvError(KvErrorCode.AlreadyExists, backend, `a live value already exists (version ${toHex(record.version)})`, { key });
      }
      if ((mutation === 'update' || mutation === 'deleteWithVersion') && (!live || !record.version.equals(expected as Buffer))) {
        throw kvError(
          KvErrorCode.RevisionMismatch,
          backend,
          `expected version ${toHex(expected as Buffer)}, found ${live ? `version ${toHex(record.version)}` : 'no live value'}`,
          { key },
        );
      }
      if (record !== undefined) {
        if (record.chunks > 0) tn.clearRange(...layout.chunkRange(key));
        if (record.expiresAt > 0) tn.clear(layout.expiry(record.expiresAt, key));
      }
      // A passed TTL not swept yet: its `expire` goes first, in the same transaction, so watchers see the removal in order.
      const lapsed = record !== undefined && record.op === 'put' && !live;
      const at = lapsed ? 1 : 0;
      if (lapsed) tn.setVersionstampedKey(layout.log, order(0), encodeLogEntry('expire', key));
      const op: Op = mutation === 'delete' || mutation === 'deleteWithVersion' ? 'delete' : mutation === 'purge' ? 'purge' : 'put';
      const expiresAt = ttlMs === undefined ? 0 : this.#clock.now() + ttlMs;
      tn.setVersionstampedValue(layout.record(key), encodeRecordSuffix(at, op as 'put' | 'delete' | 'purge', expiresAt, value));
      if (value !== undefined && value.byteLength > inlineLimit) {
        for (const [index, chunk] of splitChunks(value).entries()) tn.set(layout.chunk(key, index), chunk);
      }
      if (expiresAt > 0) tn.set(layout.expiry(expiresAt, key), Buffer.alloc(0));
      tn.setVersionstampedKey(layout.log, order(at), encodeLogEntry(op, key));
      tn.setVersionstampedValue(layout.head, order(at));
      tn.setVersionstampedValue(marker, order(at));
      return { commit: true, stamp: tn.getVersionstamp(), finish: (stamp) => toHex(versionOf(stamp as Buffer, at)) };
    });
  }

  /**
   * Runs a read-only transaction, retrying what FoundationDB says is
   * retryable. With `commit`, the body commits itself (to arm a watch).
   */
  async #read<T>(operation: string, key: string | undefined, body: (tn: FdbTransaction) => Promise<T>, commits = false): Promise<T> {
    let tn: FdbTransaction;
    try {
      tn = this.#db.createTransaction({ timeoutMs: this.#settings.transactionTimeoutMs });
    } catch (error) {
      throw this.#toKvError(error, operation, key, false, false);
    }
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await body(tn);
        } catch (error) {
          if (KvError.is(error) || !isRetryable(error) || attempt >= this.#settings.maxRetries) throw error;
          await tn.onError(error);
        }
      }
    } catch (error) {
      if (commits) tn.cancel();
      throw this.#toKvError(error, operation, key, false, false);
    } finally {
      if (!commits) tn.cancel();
    }
  }

  /**
   * Runs a write transaction with FoundationDB's retry loop. After a
   * `commit_unknown_result` the body runs again told so, and checks its write
   * id first; if the retries run out after one, the outcome is `Indeterminate`.
   */
  async #write<T>(
    operation: string,
    key: string | undefined,
    body: (tn: FdbTransaction, retryingUnknown: boolean) => Promise<WriteStep<T>>,
  ): Promise<T> {
    let tn: FdbTransaction;
    try {
      tn = this.#db.createTransaction({ timeoutMs: this.#settings.transactionTimeoutMs });
    } catch (error) {
      throw this.#toKvError(error, operation, key, false, false);
    }
    let unknown = false;
    for (let attempt = 0; ; attempt++) {
      let committing = false;
      try {
        const step = await body(tn, unknown);
        if (!step.commit) {
          tn.cancel();
          return step.finish(undefined);
        }
        committing = true;
        await tn.commit();
        return step.finish(step.stamp === undefined ? undefined : await step.stamp);
      } catch (error) {
        if (KvError.is(error)) {
          tn.cancel();
          throw error;
        }
        if (isMaybeCommitted(error) || (committing && fdbErrorCode(error) === FdbErrorCode.transactionTimedOut)) unknown = true;
        try {
          if (!isRetryable(error) || attempt >= this.#settings.maxRetries) throw error;
          await tn.onError(error);
        } catch (final) {
          tn.cancel();
          throw this.#toKvError(final, operation, key, true, unknown);
        }
      }
    }
  }

  #scheduleSweep(): void {
    if (this.#closed) return;
    this.#cancelSweep = this.#clock.setTimer(this.#settings.sweepIntervalMs, () => {
      // Sweep on the next turn: a manual clock fires timers while it advances, and the sweep must see where it ends.
      new Promise(setImmediate)
        .then(() => this.sweepExpired())
        .then(
          () => {
            this.lastMaintenanceError = undefined;
            this.#scheduleSweep();
          },
          (error: unknown) => {
            if (this.#closed) return;
            this.lastMaintenanceError = this.#toKvError(error, 'sweepExpired', undefined, true, false);
            this.#scheduleSweep();
          },
        );
    });
  }

  /** Maps a FoundationDB failure to a typed error; a write that may have committed is `Indeterminate`. */
  #toKvError(error: unknown, operation: string, key: string | undefined, isWrite: boolean, maybeCommitted: boolean): KvError {
    if (KvError.is(error)) return error;
    if (this.#closed) return kvError(KvErrorCode.Closed, backend, `the handle on bucket '${this.bucket}' is closed`, { key, cause: error });
    const code = fdbErrorCode(error);
    const name = code === undefined ? undefined : (fdbErrorNames[code] ?? `error ${code}`);
    const extra = { key, cause: error };
    if (isWrite && maybeCommitted) {
      return kvError(
        KvErrorCode.Indeterminate,
        backend,
        `${operation}: the commit's outcome is unknown (${name ?? messageOf(error)}); the write may or may not have been applied`,
        extra,
      );
    }
    if (code === FdbErrorCode.transactionTimedOut) {
      return kvError(
        KvErrorCode.Timeout,
        backend,
        `${operation}: FoundationDB did not answer within ${this.#settings.transactionTimeoutMs} ms; nothing was written`,
        extra,
      );
    }
    if (code === FdbErrorCode.transactionTooLarge || code === FdbErrorCode.valueTooLarge || code === FdbErrorCode.keyTooLarge) {
      return kvError(KvErrorCode.OperationFailed, backend, `${operation}: FoundationDB refused the transaction (${name})`, extra);
    }
    return kvError(KvErrorCode.OperationFailed, backend, `${operation} failed: ${name ?? messageOf(error)}`, extra);
  }

  #assertOpen(): void {
    if (this.#closed) throw kvError(KvErrorCode.Closed, backend, `the handle on bucket '${this.bucket}' is closed`);
  }

  #assertWritable(key: string, value: Uint8Array): void {
    this.#assertOpen();
    assertValidKey(key, backend);
    assertValue(value, this.#settings.maxValueBytes, backend, key);
  }
}

function order(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value, 0);
  return bytes;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
