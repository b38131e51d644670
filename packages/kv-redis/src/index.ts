/**
 * `@weft/kv-redis`: the `@weft/kv` contract on Redis and Redis Cluster, via ioredis.
 *
 * ```ts
 * import { openRedisKv } from '@weft/kv-redis';
 * const kv = await openRedisKv({ url: 'redis://127.0.0.1:6379', bucket: 'app' });
 * ```
 *
 * Every mutation is one Lua script (read, check the expected version, write,
 * append to the bucket's change stream); the stream id is the version.
 * Watches read the change stream; TTLs use Redis expiry plus an expiry index
 * swept into `expire` events. See the package README and docs/semantics.md.
 *
 * @packageDocumentation
 */

export { toKvError } from './errors.js';
export { type IoredisClientLike, openRedisKv, type RedisClusterNode, type RedisKvOptions, RedisKvStore } from './open.js';
