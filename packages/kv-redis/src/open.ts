import { createClient, createCluster } from '@redis/client';
import type { KvError } from '@weft/kv';
import {
  assertBucketName,
  assertIntegerOptions,
  KvErrorCode,
  KvStoreFront,
  kvError,
  serverAddress,
  unreachableReason,
} from '@weft/kv/backend';
import type { RedisConnection } from './connection.js';
import { RedisDriver, type RedisSettings } from './driver.js';
import { backend, toKvError } from './errors.js';
import { type IoredisClient, ioredisConnection } from './ioredis-connection.js';
import { bucketKeys } from './layout.js';
import {
  destroyQuietly,
  isNodeRedis,
  type NodeRedisClient,
  type NodeRedisCluster,
  nodeRedisConnection,
  nodeRedisProblem,
} from './node-redis-connection.js';

/** A Redis Cluster startup node, as ioredis takes it: a port, `host:port`, or `{ host, port }`. */
export type RedisClusterNode = string | number | { readonly host?: string; readonly port?: number };

/**
 * An ioredis `Redis` or `Cluster` client (ioredis 5 or 6), described by
 * members both have: the options name no class of ioredis, so a project
 * that brings node-redis never type-checks ioredis' own declarations, and a
 * client from the user's copy of ioredis (another major) fits.
 */
export interface IoredisClientLike {
  readonly status: string;
  readonly options: object;
  duplicate(...args: never[]): unknown;
  callBuffer(...args: never[]): unknown;
  xread(...args: never[]): unknown;
  disconnect(...args: never[]): unknown;
}

/** Options of {@link openRedisKv}. Give exactly one of `url`, `cluster` or `client`. */
export interface RedisKvOptions {
  /** A `redis://` URL; the backend opens (and later closes) its own connection. */
  readonly url?: string | undefined;
  /** Startup nodes of a Redis Cluster; the backend opens (and later closes) its own cluster client. */
  readonly cluster?: readonly RedisClusterNode[] | undefined;
  /**
   * A caller-owned client; `close()` leaves it open: an ioredis `Redis` or
   * `Cluster`, or a node-redis 5 or 6 client from `createClient()` or
   * `createCluster()`, already connected. It must not use `keyPrefix` (the
   * scripts build keys server-side).
   */
  readonly client?: IoredisClientLike | NodeRedisClient | NodeRedisCluster | undefined;
  /** The bucket, `[A-Za-z0-9_-]+`. */
  readonly bucket: string;
  /** First segment of every Redis key. @default 'weft' */
  readonly namespace?: string | undefined;
  /** @default 1048576 (1 MiB) */
  readonly maxValueBytes?: number | undefined;
  /**
   * How long an operation, a listing page or a step of a watch may wait for
   * Redis before it is given up: reads fail with `Timeout` (retryable),
   * writes with `Indeterminate` (the server may still apply them). A running
   * watch retries a step that timed out, and fails once Redis has not
   * answered for `watchOutageMs`.
   * @default 5000
   */
  readonly timeoutMs?: number | undefined;
  /**
   * How long a running watch keeps retrying while Redis does not answer
   * (restarting, paused, unreachable) before it fails with the last error
   * (`Timeout`, `NotConnected`).
   * @default 60000
   */
  readonly watchOutageMs?: number | undefined;
  /**
   * Change-stream entries kept per bucket (each is a few dozen bytes: values
   * live only in the records). Older entries are trimmed, and watches resumed
   * from before the newest trimmed entry fail with `CursorExpired`.
   * @default 1000000
   */
  readonly maxHistoryEntries?: number | undefined;
  /**
   * How often this handle sweeps expired entries into `expire` events; `0`
   * disables its sweeper (another handle's, or `sweepExpired()`, must run).
   * @default 1000
   */
  readonly sweepIntervalMs?: number | undefined;
  /**
   * Replicas that must acknowledge each write before it returns: after the
   * write's script, `WAIT` on the master that ran it. Redis replicates
   * asynchronously, so without it a failover to a replica loses what the
   * replica had not received, whatever the fsync policy; with it, a write
   * that returned is on this many replicas as well. A write fewer replicas
   * acknowledged within `timeoutMs` is `Indeterminate`: the master holds
   * it, a failover may lose it. Costs a round trip per write, and the
   * replication delay.
   * @default 0
   */
  readonly waitForReplicas?: number | { readonly replicas: number; readonly timeoutMs?: number | undefined } | undefined;
}

/**
 * Opens a handle on a Redis bucket: every mutation is one Lua script, watches
 * read the bucket's change stream, TTLs use Redis expiry plus an expiry index
 * swept into `expire` events.
 *
 * @throws {KvError} `InvalidArgument` for bad options, `ConnectionFailed` when Redis cannot be reached
 */
export async function openRedisKv(options: RedisKvOptions): Promise<RedisKvStore> {
  const bucket = options.bucket;
  assertBucketName(bucket, backend);
  const sources = [options.url, options.cluster, options.client].filter((source) => source !== undefined).length;
  if (sources !== 1) throw kvError(KvErrorCode.InvalidArgument, backend, 'give exactly one of url, cluster or client');
  const maxValueBytes = options.maxValueBytes ?? 1024 * 1024;
  const maxHistoryEntries = options.maxHistoryEntries ?? 1_000_000;
  const sweepIntervalMs = options.sweepIntervalMs ?? 1000;
  const timeoutMs = options.timeoutMs ?? 5000;
  const watchOutageMs = options.watchOutageMs ?? 60_000;
  assertIntegerOptions(backend, [
    ['timeoutMs', timeoutMs, 100],
    ['watchOutageMs', watchOutageMs, 0],
    ['maxValueBytes', maxValueBytes, 0],
    ['maxHistoryEntries', maxHistoryEntries, 1],
    ['sweepIntervalMs', sweepIntervalMs, 0],
  ]);
  if (maxValueBytes > 512 * 1024 * 1024)
    throw kvError(KvErrorCode.InvalidArgument, backend, 'maxValueBytes cannot exceed 512 MiB, the Redis limit');
  const namespace = options.namespace ?? 'weft';
  if (!/^[A-Za-z0-9_-]+$/.test(namespace)) throw kvError(KvErrorCode.InvalidArgument, backend, `a namespace must match [A-Za-z0-9_-]+`);
  const wait = typeof options.waitForReplicas === 'object' ? options.waitForReplicas : { replicas: options.waitForReplicas ?? 0 };
  // WAIT must give up before the write's own deadline does.
  const waitTimeoutMs = wait.timeoutMs ?? Math.floor(timeoutMs / 2);
  assertIntegerOptions(backend, [
    ['waitForReplicas', wait.replicas, 0],
    ['waitForReplicas.timeoutMs', waitTimeoutMs, 1],
  ]);
  if (waitTimeoutMs >= timeoutMs) {
    throw kvError(
      KvErrorCode.InvalidArgument,
      backend,
      `waitForReplicas.timeoutMs (${waitTimeoutMs}) must be below timeoutMs (${timeoutMs}), the deadline of the whole write`,
    );
  }
  const settings: RedisSettings = {
    timeoutMs,
    watchOutageMs,
    maxValueBytes,
    maxHistoryEntries,
    sweepIntervalMs,
    waitReplicas: wait.replicas,
    waitTimeoutMs,
  };

  if (options.client !== undefined) {
    if (isNodeRedis(options.client)) {
      const problem = nodeRedisProblem(options.client);
      if (problem !== undefined) throw kvError(KvErrorCode.InvalidArgument, backend, problem);
      return openOn(nodeRedisConnection(options.client), bucket, namespace, settings);
    }
    const client = options.client as unknown as IoredisClient;
    if (client.options.keyPrefix) {
      throw kvError(KvErrorCode.InvalidArgument, backend, 'a client with keyPrefix is not supported: the scripts build keys on the server');
    }
    return openOn(ioredisConnection(client), bucket, namespace, settings);
  }
  const { client, connect } = ownedClient(options, timeoutMs);
  // Failures surface through commands; the listener stays for the client's life (node-redis emits 'error' on every
  // dropped connection, and an unhandled one would end the process). The last one says why a connect failed.
  let lastError: unknown;
  client.on('error', (error: unknown) => {
    lastError = error;
  });
  try {
    try {
      // A server that accepts the connection and never answers would hold the first command for good.
      await within(
        timeoutMs,
        connect().then(() => ping(client)),
        () => Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }),
      );
    } catch (error) {
      const cause = lastError ?? error;
      throw kvError(
        KvErrorCode.ConnectionFailed,
        backend,
        `cannot connect to Redis at ${describeTarget(options)}: ${unreachableReason(cause)}`,
        {
          cause,
        },
      );
    }
    return await openOn(nodeRedisConnection(client, true), bucket, namespace, settings);
  } catch (error) {
    destroyQuietly(client);
    throw error;
  }
}

/**
 * The client `url` or `cluster` makes: node-redis 5 (`@redis/client`), which
 * sends the commands of one tick in one write and costs the Node process
 * about half of what ioredis does per command (docs/guides/redis-clients.md
 * has the measurements). It never re-sends a written command; a connect that
 * fails before the first answer is not retried, later drops are. `connect`
 * connects it and from then on lets it reconnect.
 */
function ownedClient(options: RedisKvOptions, timeoutMs: number): { client: NodeRedisClient | NodeRedisCluster; connect(): Promise<void> } {
  let connected = false;
  const socket = {
    connectTimeout: timeoutMs,
    reconnectStrategy: (retries: number, cause: Error) => (connected ? Math.min(retries * 50, 1000) : cause),
  };
  const client =
    options.cluster !== undefined
      ? (createCluster({
          rootNodes: options.cluster.map((node) => ({ url: nodeUrl(node) })),
          defaults: { socket },
        }) as unknown as NodeRedisCluster)
      : (createClient({ url: options.url as string, socket }) as unknown as NodeRedisClient);
  return {
    client,
    connect: async () => {
      await client.connect();
      connected = true;
    },
  };
}

function nodeUrl(node: RedisClusterNode): string {
  if (typeof node === 'number') return `redis://127.0.0.1:${node}`;
  if (typeof node === 'string') return node.includes('://') ? node : `redis://${node}`;
  return `redis://${node.host ?? '127.0.0.1'}:${node.port ?? 6379}`;
}

/** A PING the server must answer: node-redis' connect resolves once the socket is open when it has no handshake to send. */
function ping(client: NodeRedisClient | NodeRedisCluster): Promise<unknown> {
  return 'masters' in client ? client.sendCommand(undefined, true, ['PING']) : client.sendCommand(['PING']);
}

/** Opens the bucket on a connected client: the first sweep also checks that the server runs the scripts. */
async function openOn(connection: RedisConnection, bucket: string, namespace: string, settings: RedisSettings): Promise<RedisKvStore> {
  const driver = new RedisDriver(connection, bucket, bucketKeys(namespace, bucket), settings);
  try {
    await within(settings.timeoutMs, driver.sweepExpired(1000), () =>
      kvError(KvErrorCode.Timeout, backend, `the server did not answer within ${settings.timeoutMs} ms while the bucket was opened`),
    );
  } catch (error) {
    // Stops the sweeper; an owned client is also disconnected by the caller.
    driver.close().catch(() => undefined);
    throw toKvError(error, 'open', undefined, false);
  }
  return new RedisKvStore(driver);
}

/** `work`, or the error `late()` makes once `ms` pass first. */
async function within<T>(ms: number, work: Promise<T>, late: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
  }
}

/** Where the backend tried to connect, for messages: host and port only, never a password from the URL. */
function describeTarget(options: RedisKvOptions): string {
  if (options.cluster !== undefined) return `cluster nodes ${options.cluster.map((node) => describeNode(node)).join(', ')}`;
  return serverAddress(options.url as string, 'redis:');
}

function describeNode(node: unknown): string {
  if (typeof node === 'string') return node.includes('@') ? node.slice(node.lastIndexOf('@') + 1) : node;
  if (typeof node === 'number') return `port ${node}`;
  const { host, port } = (node ?? {}) as { host?: string; port?: number };
  return `${host ?? '127.0.0.1'}:${port ?? 6379}`;
}

/** A handle on a Redis bucket. See {@link openRedisKv}. */
export class RedisKvStore extends KvStoreFront<string> {
  readonly #driver: RedisDriver;

  /** @internal use {@link openRedisKv} */
  constructor(driver: RedisDriver) {
    super(driver);
    this.#driver = driver;
  }

  /** The last error of the background sweeper, if its latest run failed. */
  get lastSweepError(): KvError | undefined {
    return this.#driver.lastSweepError;
  }

  /**
   * Deletes the bucket from the server (every key, tombstone and its
   * change history), then closes this handle. Another handle on the bucket
   * finds it empty, as new: a watch cursor from before fails with
   * `CursorExpired`. Writes racing the destroy may leave their keys behind,
   * in a new bucket.
   */
  async destroy(): Promise<void> {
    this.assertOpen();
    await this.#driver.destroy();
    await this.close();
  }

  /**
   * Removes the records that deleted and purged keys leave behind (about
   * 200 bytes each), once they are older than `olderThanMs`, so a bucket
   * whose keys churn stops growing. Afterwards `entry()` of such a key
   * returns `undefined` instead of its tombstone; reads, listings, writes
   * and compare-and-swap are unchanged (absent and deleted are the same to
   * them), and watches still see the deletes: the change stream keeps its
   * entries until `maxHistoryEntries` trims them, which is the bucket's
   * only resume horizon. Ages are measured by the Redis server's clock.
   *
   * @returns how many tombstones were removed
   * @throws {KvError} `Indeterminate` when Redis does not answer within `timeoutMs` (part may be done)
   */
  async compact(options: { readonly olderThanMs?: number | undefined } = {}): Promise<{ removedTombstones: number }> {
    this.assertOpen();
    const olderThanMs = options.olderThanMs ?? 30 * 60 * 1000;
    assertIntegerOptions(backend, [['olderThanMs', olderThanMs, 0]]);
    return { removedTombstones: await this.#driver.compact(olderThanMs) };
  }

  /** The Redis keys this bucket uses: useful for inspection and operations tooling. */
  get redisKeys(): {
    readonly recordPrefix: string;
    readonly log: string;
    readonly expiries: string;
    readonly index: string;
    readonly meta: string;
    readonly tombstones: string;
  } {
    const { record, ...rest } = this.#driver.keys;
    return { recordPrefix: record, ...rest };
  }

  /**
   * Turns every entry whose TTL has passed into an `expire` event now (the
   * background sweeper calls this every `sweepIntervalMs`).
   *
   * @returns how many entries expired
   */
  async sweepExpired(limit = 1000): Promise<number> {
    this.assertOpen();
    return this.#driver.sweepExpired(limit);
  }
}
