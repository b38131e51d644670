import { describeArgument, KvErrorCode, kvError, messageOf } from '@weft/kv/backend';
import { backend } from './errors.js';

/** How one server fsyncs what JetStream stores, as its monitoring endpoint reports it. */
export interface NatsServerFsync {
  /** The monitoring URL asked. */
  readonly monitor: string;
  /** The server's name. */
  readonly server: string;
  /** It fsyncs each write before acknowledging it (`jetstream { sync_interval: always }`). */
  readonly always: boolean;
  /** Otherwise the time between its fsyncs (`sync_interval`, two minutes by default); 0 when `always`. */
  readonly intervalMs: number;
}

/**
 * How the servers behind a bucket fsync (see `docs/guides/durability.md`):
 * a server that acknowledges before it fsyncs loses, in a machine crash,
 * what it acknowledged since its last fsync.
 */
export interface NatsFsyncPolicy {
  /** Every server asked fsyncs each write before acknowledging it. */
  readonly always: boolean;
  /** The longest time between fsyncs among the servers that do not (0 when every one fsyncs always). */
  readonly intervalMs: number;
  readonly servers: readonly NatsServerFsync[];
}

/** nats-server's `sync_interval` when its configuration says none (and on 2.9, which reports none). */
const defaultSyncIntervalMs = 120_000;

/** Checks monitoring URLs given to `openNatsKv`: `http:` or `https:` URLs only. */
export function monitorUrls(monitor: string | readonly string[]): string[] {
  const urls = typeof monitor === 'string' ? [monitor] : [...monitor];
  if (urls.length === 0) throw kvError(KvErrorCode.InvalidArgument, backend, 'monitor must name at least one monitoring URL');
  for (const url of urls) {
    let parsed: URL | undefined;
    try {
      parsed = typeof url === 'string' ? new URL(url) : undefined;
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw kvError(
        KvErrorCode.InvalidArgument,
        backend,
        `monitor must be nats-server monitoring URLs (http://host:8222), got ${describeArgument(url)}`,
      );
    }
  }
  return urls;
}

/**
 * Reads each server's JetStream configuration from its monitoring endpoint
 * (`/varz`), within `timeoutMs` each.
 *
 * @throws {KvError} `ConnectionFailed` when an endpoint cannot be read, `OperationFailed` when it answers something else than a JetStream server's `/varz`
 */
export async function readFsyncPolicy(monitors: readonly string[], timeoutMs: number): Promise<NatsFsyncPolicy> {
  const servers = await Promise.all(monitors.map((monitor) => readServerFsync(monitor, timeoutMs)));
  const lazy = servers.filter((server) => !server.always);
  return {
    always: lazy.length === 0,
    intervalMs: Math.max(0, ...lazy.map((server) => server.intervalMs)),
    servers,
  };
}

async function readServerFsync(monitor: string, timeoutMs: number): Promise<NatsServerFsync> {
  const url = new URL('varz', monitor.endsWith('/') ? monitor : `${monitor}/`);
  let body: unknown;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    body = await response.json();
  } catch (error) {
    throw kvError(KvErrorCode.ConnectionFailed, backend, `cannot read ${url.origin}${url.pathname}: ${messageOf(error)}`, { cause: error });
  }
  const varz = record(body);
  const config = record(record(varz?.jetstream)?.config);
  if (varz === undefined || config === undefined) {
    throw kvError(
      KvErrorCode.OperationFailed,
      backend,
      `${url.origin}${url.pathname} is not the monitoring endpoint of a JetStream server`,
    );
  }
  const always = config.sync_always === true;
  // Nanoseconds; absent on servers before 2.10, which fsync every two minutes.
  const interval = config.sync_interval;
  const intervalMs =
    typeof interval === 'number' && Number.isFinite(interval) && interval > 0 ? Math.round(interval / 1e6) : defaultSyncIntervalMs;
  return {
    monitor,
    server: typeof varz.server_name === 'string' ? varz.server_name : url.host,
    always,
    intervalMs: always ? 0 : intervalMs,
  };
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** Monitoring URLs a lazy fsync was reported for in this process: each is warned about once. */
const warned = new Set<string>();

/**
 * Warns once per process (per server) that servers acknowledge before they
 * fsync: through `process.emitWarning` where there is one, else
 * `console.warn`.
 */
export function warnLazyFsync(policy: NatsFsyncPolicy, bucket: string): void {
  const fresh = policy.servers.filter((server) => !server.always && !warned.has(server.monitor));
  if (fresh.length === 0) return;
  for (const server of fresh) warned.add(server.monitor);
  const names = fresh.map((server) => `${server.server} (every ${Math.round(server.intervalMs / 1000)} s)`).join(', ');
  warn(
    `nats-server ${names}, holding bucket '${bucket}', acknowledges writes before it fsyncs them: a machine crash ` +
      'loses what was acknowledged since the last fsync. Set `jetstream { sync_interval: always }` where a write must ' +
      'survive one (see weft docs/guides/durability.md).',
    'WEFT_NATS_LAZY_FSYNC',
  );
}

/** Warns that the fsync policy could not be read (once per process per monitoring URL). */
export function warnUnreadFsync(monitors: readonly string[], error: unknown): void {
  const fresh = monitors.filter((monitor) => !warned.has(monitor));
  if (fresh.length === 0) return;
  for (const monitor of fresh) warned.add(monitor);
  warn(`cannot tell how the NATS servers fsync: ${messageOf(error)}`, 'WEFT_NATS_FSYNC_UNKNOWN');
}

function warn(message: string, code: string): void {
  const host = (globalThis as { process?: { emitWarning?: (message: string, options: { type: string; code: string }) => void } }).process;
  if (typeof host?.emitWarning === 'function') host.emitWarning(message, { type: 'WeftWarning', code });
  else console.warn(`[weft] ${message}`);
}
