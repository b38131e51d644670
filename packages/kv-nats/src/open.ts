import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
  type StreamInfo,
  type StreamUpdateConfig,
} from '@nats-io/jetstream';
import { type NatsConnection, nanos } from '@nats-io/nats-core';
import { KvError } from '@weft/kv';
import {
  assertBucketName,
  assertIntegerOptions,
  describeArgument,
  KvErrorCode,
  KvStoreFront,
  kvError,
  serverAddress,
  unreachableReason,
} from '@weft/kv/backend';
import { connect } from '#platform';
import { metaStreamName, type NatsPosition, streamName } from './codec.js';
import { NatsDriver } from './driver.js';
import { backend, toKvError } from './errors.js';
import { monitorUrls, type NatsFsyncPolicy, readFsyncPolicy, warnLazyFsync, warnUnreadFsync } from './fsync.js';
import { compact } from './horizon.js';
import {
  atomicBatchSince,
  compareVersions,
  nativeTtlSince,
  nativeTtlUnavailable,
  parseServerVersion,
  type ServerVersion,
} from './server-version.js';

/**
 * How long the server keeps the marker it writes when a TTL removes a key's
 * last value, on buckets weft creates: ten years, so markers are tombstones
 * like deletes, removed by {@link NatsKvStore.compact} (which records the
 * horizon resumed watches are checked against) rather than vanishing under
 * a watch that could still need them.
 */
export const markerTtlMs = 10 * 365 * 24 * 3600 * 1000;

/** Bucket settings used when {@link NatsKvOptions.create} asks for the bucket to be created. */
export interface NatsBucketOptions {
  /** Versions kept per key (1-64). @default 1 */
  readonly history?: number | undefined;
  /** Replicas of the bucket's stream in a cluster. @default 1 */
  readonly replicas?: number | undefined;
  /** Largest value the bucket accepts; `-1` for the server's limit. @default -1 */
  readonly maxValueSize?: number | undefined;
  /** Largest size of the whole bucket; `-1` for unlimited. @default -1 */
  readonly maxBytes?: number | undefined;
  /** @default 'file' */
  readonly storage?: 'file' | 'memory' | undefined;
}

/** Options of {@link openNatsKv}. Give `servers` or `connection`. */
export interface NatsKvOptions {
  /** Server URL(s); the backend opens (and later closes) its own connection, reconnecting forever. */
  readonly servers?: string | readonly string[] | undefined;
  /** A caller-owned connection; `close()` leaves it open. */
  readonly connection?: NatsConnection | undefined;
  /** The bucket, `[A-Za-z0-9_-]+` (a JetStream KV bucket). */
  readonly bucket: string;
  /** Create the bucket with these settings if it does not exist; without it the bucket must exist. */
  readonly create?: NatsBucketOptions | true | undefined;
  /**
   * How long a request may wait for the server, in milliseconds: a read
   * that outlives it fails with `Timeout`, a write with `Indeterminate`. A
   * step of a listing or watch may also wait out one fetch (10 s) before it
   * is presumed lost and fails with `Timeout`.
   * @default 5000
   */
  readonly timeoutMs?: number | undefined;
  /**
   * How long a running watch keeps retrying while NATS delivers nothing and
   * answers no request (restarting, paused, unreachable) before it fails
   * with `Timeout`; resume it from its last cursor.
   * @default 60000
   */
  readonly watchOutageMs?: number | undefined;
  /**
   * How often this handle turns passed TTLs into `expire` events; `0`
   * disables its sweeper (another handle's, or `sweepExpired()`, must run).
   * @default 1000
   */
  readonly sweepIntervalMs?: number | undefined;
  /**
   * Writes the `expire` marker of a passed TTL that no sweeper has removed
   * yet before any put, delete, purge or putWithTtl of its key, so watchers
   * see `expire` before the write (`capabilities.expireBeforeNextWrite`). It
   * costs a read before each of those writes; set it on every handle that
   * writes the bucket. Without it such a write replaces the entry with no
   * `expire` event (the entry still reads as absent once its TTL passed).
   * On a bucket keeping one version per key it has no effect (the write
   * would remove the marker from the stream at once, before a lagging watch
   * read it) and the capability stays false.
   * @default false
   */
  readonly expireBeforeNextWrite?: boolean | undefined;
  /**
   * The servers' monitoring URLs (nats-server's `-m` port, e.g.
   * `http://127.0.0.1:8222`; every node of a cluster that may hold the
   * bucket): `openNatsKv` reads how they fsync (`/varz`) into
   * {@link NatsKvStore.fsync} and warns once per process about a server
   * that acknowledges before it fsyncs (`sync_interval` other than
   * `always`), whose machine crash loses what it acknowledged since. A
   * client cannot learn this over NATS itself. An endpoint that cannot be
   * read is warned about too; the handle opens either way.
   */
  readonly monitor?: string | readonly string[] | undefined;
}

/**
 * Opens a handle on a NATS JetStream KV bucket. Values are plain KV values:
 * the `nats` CLI and other KV clients read what weft writes, and weft reads
 * what they write.
 *
 * @throws {KvError} `InvalidArgument` for bad options, `ConnectionFailed` when NATS cannot be reached,
 *   `OperationFailed` when the bucket does not exist and `create` was not given
 */
export async function openNatsKv(options: NatsKvOptions): Promise<NatsKvStore> {
  const bucket = options.bucket;
  assertBucketName(bucket, backend);
  if ((options.servers === undefined) === (options.connection === undefined)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, 'give exactly one of servers or connection');
  }
  const timeoutMs = options.timeoutMs ?? 5000;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 100) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `timeoutMs must be at least 100, got ${describeArgument(timeoutMs)}`);
  }
  const sweepIntervalMs = options.sweepIntervalMs ?? 1000;
  const watchOutageMs = options.watchOutageMs ?? 60_000;
  assertIntegerOptions(backend, [
    ['sweepIntervalMs', sweepIntervalMs, 0],
    ['watchOutageMs', watchOutageMs, 0],
  ]);
  const monitors = options.monitor === undefined ? undefined : monitorUrls(options.monitor);
  const create = options.create === true ? {} : options.create;
  if (create?.history !== undefined && !(Number.isInteger(create.history) && create.history >= 1 && create.history <= 64)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `history must be an integer from 1 to 64, got ${describeArgument(create.history)}`);
  }

  let connection: NatsConnection;
  const owned = options.connection === undefined;
  if (options.connection !== undefined) {
    connection = options.connection;
  } else {
    const servers = typeof options.servers === 'string' ? [options.servers] : [...(options.servers ?? [])];
    try {
      connection = await connect({
        servers,
        name: `weft-kv:${bucket}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: timeoutMs,
        // A connection that stalls without closing (a half-open socket, a partition) is found only by pings that go
        // unanswered: one every timeoutMs (at least a second), two missed, instead of the library's two minutes, so
        // the handle reconnects through another of its servers within a few deadlines.
        pingInterval: Math.max(1000, timeoutMs),
        maxPingOut: 2,
      });
    } catch (error) {
      throw kvError(
        KvErrorCode.ConnectionFailed,
        backend,
        `cannot connect to NATS at ${servers.map((server) => serverAddress(server, 'nats:')).join(', ')}: ${unreachableReason(error)}`,
        {
          cause: error,
        },
      );
    }
  }
  try {
    const version = parseServerVersion(connection.info?.version ?? '0.0.0');
    const manager = await jetstreamManager(connection, { timeout: timeoutMs });
    const client = jetstream(connection, { timeout: timeoutMs });
    if (create !== undefined) await createBucketStream(manager, bucket, create, version);
    let info: StreamInfo;
    try {
      info = await manager.streams.info(streamName(bucket));
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) {
        throw kvError(KvErrorCode.OperationFailed, backend, `bucket '${bucket}' does not exist; pass create to create it`, {
          cause: error,
        });
      }
      throw error;
    }
    await removeStaleCompanion(manager, bucket, info);
    const expireBeforeNextWrite = options.expireBeforeNextWrite === true;
    const fsync = monitors === undefined ? undefined : await fsyncPolicy(monitors, timeoutMs, bucket);
    return new NatsKvStore(
      fsync,
      new NatsDriver({
        connection,
        owned,
        manager,
        client,
        bucket,
        version,
        info,
        timeoutMs,
        watchOutageMs,
        sweepIntervalMs,
        expireBeforeNextWrite,
      }),
    );
  } catch (error) {
    if (owned) await connection.close().catch(() => undefined);
    throw toKvError(error, 'open', undefined, false);
  }
}

/** The servers' fsync policy, warned about when lazy; `undefined`, warned about, when it cannot be read. */
async function fsyncPolicy(monitors: readonly string[], timeoutMs: number, bucket: string): Promise<NatsFsyncPolicy | undefined> {
  try {
    const policy = await readFsyncPolicy(monitors, timeoutMs);
    warnLazyFsync(policy, bucket);
    return policy;
  } catch (error) {
    warnUnreadFsync(monitors, error);
    return undefined;
  }
}

/**
 * Creates the bucket's stream as `nats kv add` does (ADR-8: rollups,
 * direct gets, discard new, deletes of single messages denied, a two-minute
 * duplicate window), unless it exists, which is then used as it is. On 2.11+
 * with one version per key it also allows per-message TTLs and limit markers
 * (see `markerTtlMs`).
 */
async function createBucketStream(
  manager: JetStreamManager,
  bucket: string,
  create: NatsBucketOptions,
  version: ServerVersion,
): Promise<void> {
  try {
    await manager.streams.info(streamName(bucket));
    return;
  } catch (error) {
    if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
  }
  const history = create.history ?? 1;
  const config: Partial<StreamConfig> & { name: string } = {
    name: streamName(bucket),
    subjects: [`$KV.${bucket}.>`],
    retention: RetentionPolicy.Limits,
    max_msgs_per_subject: history,
    max_msgs: -1,
    max_bytes: create.maxBytes ?? -1,
    max_msg_size: create.maxValueSize ?? -1,
    max_consumers: -1,
    max_age: 0,
    storage: create.storage === 'memory' ? StorageType.Memory : StorageType.File,
    num_replicas: create.replicas ?? 1,
    discard: DiscardPolicy.New,
    duplicate_window: nanos(120_000),
    allow_rollup_hdrs: true,
    deny_delete: true,
    deny_purge: false,
    allow_direct: true,
    ...(compareVersions(version, nativeTtlSince) >= 0 && history === 1
      ? { allow_msg_ttl: true, subject_delete_marker_ttl: nanos(markerTtlMs) }
      : {}),
    // Atomic batches, for commit (2.12+).
    ...(compareVersions(version, atomicBatchSince) >= 0 ? { allow_atomic: true } : {}),
  };
  try {
    await manager.streams.add(config);
  } catch (error) {
    // Another handle created it meanwhile: use it.
    if (!(error instanceof JetStreamApiError && /already in use|already exists/i.test(error.message))) throw error;
  }
}

/**
 * weft's companion stream of a bucket (compaction horizon, TTL index) made
 * before the bucket's stream was: left behind when another tool deleted the
 * bucket (`nats kv del`), and describing the old bucket, not this one. It
 * is deleted; the handle makes a new one when it needs it.
 */
async function removeStaleCompanion(manager: JetStreamManager, bucket: string, info: StreamInfo): Promise<void> {
  let companion: StreamInfo;
  try {
    companion = await manager.streams.info(metaStreamName(bucket));
  } catch (error) {
    if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return;
    throw error;
  }
  if (Date.parse(companion.created) < Date.parse(info.created)) {
    await manager.streams.delete(metaStreamName(bucket)).catch((error: unknown) => {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
    });
  }
}

/** A handle on a NATS KV bucket. See {@link openNatsKv}. */
export class NatsKvStore extends KvStoreFront<NatsPosition> {
  /** The server version detected at open, e.g. `2.9.10`. */
  readonly serverVersion: string;
  /**
   * How the servers fsync, read at open from the monitoring URLs given as
   * {@link NatsKvOptions.monitor}; `undefined` without them or when they
   * could not be read.
   */
  readonly fsync: NatsFsyncPolicy | undefined;
  readonly #driver: NatsDriver;

  /** @internal use {@link openNatsKv} */
  constructor(fsync: NatsFsyncPolicy | undefined, driver: NatsDriver) {
    super(driver);
    this.#driver = driver;
    this.serverVersion = driver.parts.version.text;
    this.fsync = fsync;
  }

  /**
   * How this bucket's TTLs work: `native` on nats-server 2.11+ with a bucket
   * that keeps one version per key, allows per-message TTL and writes limit
   * markers (every such bucket weft creates there), `emulated` otherwise (an expiry header, an index in the
   * companion stream and sweepers; see {@link NatsKvOptions.sweepIntervalMs}).
   */
  get ttlMode(): 'native' | 'emulated' {
    return this.#driver.nativeTtl ? 'native' : 'emulated';
  }

  /**
   * Moves a bucket created before (on an older server, or by another client)
   * to native TTLs: it turns on per-message TTL and limit markers in the
   * bucket's stream config, which the server cannot turn off again. Handles
   * opened afterwards write native TTLs; TTLs written before keep expiring
   * through the sweepers, which drain the emulation's index and then stop.
   * Handles open meanwhile keep emulating, which stays correct beside it.
   *
   * @throws {KvError} `Unsupported` on servers before 2.11, and on buckets keeping more than one version per key
   */
  async enableNativeTtl(): Promise<void> {
    this.assertOpen();
    const driver = this.#driver;
    const info = await driver.streamInfo();
    if (nativeTtlUnavailable(driver.parts.version, info.config) === undefined) return;
    // What would still stand in the way once both settings are on: the server line, or several versions per key.
    const reason = nativeTtlUnavailable(driver.parts.version, { ...info.config, allow_msg_ttl: true, subject_delete_marker_ttl: 1 });
    if (reason !== undefined)
      throw kvError(KvErrorCode.Unsupported, backend, `cannot enable native TTL on bucket '${this.bucket}': ${reason}`);
    // Both settings are stream config the update API takes on 2.11+ (the client's update type predates them).
    const settings: Partial<StreamConfig> = { allow_msg_ttl: true, subject_delete_marker_ttl: nanos(markerTtlMs) };
    await driver.call(undefined, () =>
      driver.parts.manager.streams.update(driver.subjects.stream, settings as Partial<StreamUpdateConfig>),
    );
  }

  /** The last error of the background sweeper, if its latest run failed. */
  get lastSweepError(): KvError | undefined {
    return this.#driver.lastSweepError;
  }

  /**
   * Deletes the bucket from the server (its stream and weft's companion
   * stream), then closes this handle. Another handle on the bucket fails at
   * its next operation, or finds a new bucket if one was created meanwhile
   * (a watch cursor from before fails with `CursorExpired`).
   */
  async destroy(): Promise<void> {
    this.assertOpen();
    const driver = this.#driver;
    for (const stream of [driver.subjects.stream, driver.subjects.metaStream]) {
      await driver
        .call(undefined, () => driver.parts.manager.streams.delete(stream))
        .catch((error: unknown) => {
          // The companion stream exists only once something needed it.
          if (!(error instanceof KvError && /not found/i.test(error.message))) throw error;
        });
    }
    await this.close();
  }

  /**
   * Turns every entry whose TTL has passed into an `expire` event now (the
   * background sweeper calls this every `sweepIntervalMs`): a delete marker
   * written only if the entry is still the key's latest message.
   *
   * @returns how many entries expired
   */
  async sweepExpired(): Promise<number> {
    this.assertOpen();
    return this.#driver.sweepNow();
  }

  /** Ephemeral consumers on the bucket's stream right now (what running watches and listings hold on the server). */
  async consumerCount(): Promise<number> {
    this.assertOpen();
    return (await this.#driver.streamInfo()).state.consumer_count;
  }

  /**
   * The horizon recorded by {@link NatsKvStore.compact}: watches resumed from
   * a cursor below it fail with `CursorExpired`. `0` when the bucket was never compacted.
   */
  async horizon(): Promise<number> {
    this.assertOpen();
    return this.#driver.horizon();
  }

  /**
   * Removes tombstones (delete and purge markers) older than `olderThanMs`,
   * as `nats kv compact` does, so deleted keys stop taking space. The newest
   * removed marker becomes the horizon, recorded durably before anything is
   * removed, so a watch resumed from before it fails with `CursorExpired`
   * instead of missing a delete.
   *
   * @returns how many tombstones were removed
   */
  async compact(options: { olderThanMs?: number } = {}): Promise<{ removedTombstones: number; horizon: number }> {
    this.assertOpen();
    return compact(this.#driver, options.olderThanMs ?? 30 * 60 * 1000);
  }
}
