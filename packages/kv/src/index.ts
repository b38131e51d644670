/**
 * `@weft/kv`: one versioned key-value contract with one meaning on every
 * backend (reads, compare-and-swap writes, resumable watches, TTL and purge),
 * plus the in-memory reference backend.
 *
 * ```ts
 * import { openMemoryKv } from '@weft/kv';
 * await using kv = await openMemoryKv();
 * const version = await kv.create('users.ada', new TextEncoder().encode('hi'));
 * await kv.update('users.ada', new TextEncoder().encode('hello'), version);
 * for await (const event of kv.watch({ prefixes: ['users'] })) console.log(event.type, event.cursor);
 * ```
 *
 * Backends live in their own packages (`@weft/kv-nats`, `@weft/kv-redis`,
 * `@weft/kv-fdb`); `@weft/kv-testkit` proves each of them against this contract.
 *
 * @packageDocumentation
 */

export { subscribeTrace, type WeftTraceHandlers, type WeftTracingChannel } from '@weft/common';
export { type Clock, ManualClock, systemClock } from './clock.js';
export {
  bytesCodec,
  jsonCodec,
  type KvCodec,
  type TypedCommitOp,
  type TypedEntry,
  type TypedKv,
  type TypedWatchEvent,
  withCodec,
} from './codec.js';
export { KvError, KvErrorCode, type KvErrorOptions } from './errors.js';
export { isValidKey, keyMatchesPrefix, keyProblem, maxKeyBytes } from './keys.js';
export { acquireLease, Lease, type LeaseOptions } from './lease.js';
export { type MemoryBucketOptions, type MemoryKvOptions, MemoryKvStore, openMemoryKv } from './memory/open.js';
export { createMemoryKvServer, MemoryKvServer } from './memory/server.js';
export type {
  KvCapabilities,
  KvCommit,
  KvCommitLimits,
  KvCommitOp,
  KvEntry,
  KvPurge,
  KvReader,
  KvRecord,
  KvStore,
  KvTtl,
  KvWatcher,
  KvWriter,
  Version,
  WatchCursor,
  WatchEvent,
  WatchEventType,
  WatchOptions,
} from './types.js';
export { maxGetManyKeys } from './types.js';
