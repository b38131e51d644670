/**
 * `@weft/kv-nats`: the `@weft/kv` contract on NATS JetStream KV.
 *
 * ```ts
 * import { openNatsKv } from '@weft/kv-nats';
 * const kv = await openNatsKv({ servers: 'nats://127.0.0.1:4222', bucket: 'app', create: { history: 5 } });
 * ```
 *
 * Values are plain KV values (interoperable with the `nats` CLI and other KV
 * clients); compare-and-swap maps to expected-last-subject-sequence; watches
 * run on ephemeral consumers the watch owns and recreates after failures.
 * See the package README and docs/semantics.md.
 *
 * @packageDocumentation
 */

export { metaStreamName, type NatsPosition, parseTtlMs } from './codec.js';
export { toKvError } from './errors.js';
export type { NatsFsyncPolicy, NatsServerFsync } from './fsync.js';
export { markerTtlMs, type NatsBucketOptions, type NatsKvOptions, NatsKvStore, openNatsKv } from './open.js';
export {
  compareVersions,
  conditionalWritesUnsupported,
  nativeTtlUnavailable,
  parseServerVersion,
  type ServerVersion,
} from './server-version.js';
