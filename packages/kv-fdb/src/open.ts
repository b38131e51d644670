import { type Clock, type KvError, systemClock, type WatchCursor } from '@weft/kv';
import { assertBucketName, assertIntegerOptions, describeArgument, KvErrorCode, KvStoreFront, kvError, messageOf } from '@weft/kv/backend';
import { type BindingDatabase, defaultApiVersion, isBindingDatabase, loadFdbBinding, wrapBindingDatabase } from './binding.js';
import { FdbDriver, type FdbSettings } from './driver.js';
import { BucketLayout } from './layout.js';
import { destroyBucket, sweepExpired, trimHistory } from './maintenance.js';
import { backend } from './transactions.js';
import type { FdbDatabase } from './transactor.js';

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
  readonly database?: FdbDatabase | BindingDatabase | undefined;
  /** The cluster file; omitted means the binding's default (`FDB_CLUSTER_FILE`, then the platform default). */
  readonly clusterFile?: string | undefined;
  /** The FDB API version to select when the backend loads the binding. @default 720 */
  readonly apiVersion?: number | undefined;
  /** First segment of every key the bucket uses. @default 'weft' */
  readonly namespace?: string | undefined;
  /**
   * The largest value; values over 100 KB are split into chunks in the same
   * transaction. At most 9 MiB, to stay inside FoundationDB's 10 MB
   * transaction limit. @default 1048576 (1 MiB)
   */
  readonly maxValueBytes?: number | undefined;
  /**
   * How often this handle sweeps expired entries into `expire` events; `0`
   * disables its sweeper (another handle's, or `sweepExpired()`, must run).
   * @default 1000
   */
  readonly sweepIntervalMs?: number | undefined;
  /**
   * How long the change log keeps entries. Older entries are trimmed by the
   * maintenance job, and watches resumed from before them fail with
   * `CursorExpired`. `0` keeps the log forever. @default 86400000 (24 hours)
   */
  readonly historyRetentionMs?: number | undefined;
  /** How often this handle runs the retention job; `0` disables it. @default 60000 */
  readonly maintenanceIntervalMs?: number | undefined;
  /**
   * Every transaction (with its retries) fails after this long: reads with
   * `Timeout`, writes whose commit may have been sent with `Indeterminate`.
   * @default 10000
   */
  readonly transactionTimeoutMs?: number | undefined;
  /**
   * Retries of one operation's transaction (conflicts, `commit_unknown_result`
   * and other retryable errors) before it fails. @default 100
   */
  readonly maxRetries?: number | undefined;
  /** The clock TTLs run on (tests pass a `ManualClock`). @default the system clock */
  readonly clock?: Clock | undefined;
}

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
  assertBucketName(bucket, backend);
  const namespace = options.namespace ?? 'weft';
  if (typeof namespace !== 'string' || !/^[A-Za-z0-9_-]+$/.test(namespace)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, 'a namespace must match [A-Za-z0-9_-]+');
  }
  const settings: FdbSettings = {
    maxValueBytes: options.maxValueBytes ?? 1024 * 1024,
    sweepIntervalMs: options.sweepIntervalMs ?? 1000,
    historyRetentionMs: options.historyRetentionMs ?? 24 * 60 * 60 * 1000,
    maintenanceIntervalMs: options.maintenanceIntervalMs ?? 60_000,
    transactionTimeoutMs: options.transactionTimeoutMs ?? 10_000,
    maxRetries: options.maxRetries ?? 100,
  };
  assertIntegerOptions(backend, [
    ['maxValueBytes', settings.maxValueBytes, 0],
    ['sweepIntervalMs', settings.sweepIntervalMs, 0],
    ['historyRetentionMs', settings.historyRetentionMs, 0],
    ['maintenanceIntervalMs', settings.maintenanceIntervalMs, 0],
    ['transactionTimeoutMs', settings.transactionTimeoutMs, 1],
    ['maxRetries', settings.maxRetries, 0],
  ]);
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
  const driver = new FdbDriver(database, owned, bucket, new BucketLayout(namespace, bucket), settings, options.clock ?? systemClock);
  try {
    await driver.initialize();
  } catch (error) {
    await driver.close();
    throw error;
  }
  return new FdbKvStore(driver);
}

/** A handle on a FoundationDB bucket. See {@link openFdbKv}. */
export class FdbKvStore extends KvStoreFront<Buffer> {
  readonly #driver: FdbDriver;

  /** @internal use {@link openFdbKv} */
  constructor(driver: FdbDriver) {
    super(driver);
    this.#driver = driver;
  }

  /** The last error of the background sweeper or retention job, if its latest run failed. */
  get lastMaintenanceError(): KvError | undefined {
    return this.#driver.lastMaintenanceError;
  }

  /** The key prefix this bucket's data lives under, for inspection and operations tooling. */
  get keyPrefix(): Buffer {
    return Buffer.from(this.#driver.layout.prefix);
  }

  /**
   * Turns entries whose TTL has passed into `expire` events now (the
   * background sweeper calls this every `sweepIntervalMs`).
   *
   * @returns how many entries expired
   */
  async sweepExpired(limit = 500): Promise<number> {
    this.assertOpen();
    return sweepExpired(this.#driver, limit);
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
    this.assertOpen();
    return trimHistory(this.#driver, options.through);
  }

  /**
   * Deletes the whole bucket: every record, chunk, log entry, index entry,
   * the head and the horizon, in one transaction. Running watches on it fail
   * with `CursorExpired`; a handle opened later starts a new, empty bucket
   * that no earlier cursor can resume.
   */
  async destroyBucket(): Promise<void> {
    this.assertOpen();
    await destroyBucket(this.#driver);
  }
}
