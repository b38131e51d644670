/**
 * Real servers for tests: `nats-server` and `redis-server` spawned from PATH
 * on free loopback ports, each with its own data directory, that tests can
 * stop, kill -9 and restart; plus a 3-node JetStream cluster and a 3-master
 * Redis Cluster. Missing binaries are reported in one line naming what to
 * install (`natsUnavailable()`, `redisUnavailable()`), so tests skip loudly.
 * `runChild` runs any other child process with a time limit.
 *
 * Private to the weft monorepo.
 *
 * @packageDocumentation
 */

export { type ChildRun, type RunChildOptions, runChild } from './child.js';
export { type CrashFs, crashFsBinary, crashFsUnavailable, startCrashFs } from './crashfs.js';
export { type FaultTarget, type ServerFault, serverFaults } from './faults.js';
export { type Link, type LinkOptions, startLink } from './link.js';
export {
  currentNatsBinary,
  currentNatsVersion,
  type NatsCluster,
  type NatsLine,
  type NatsServer,
  type NatsServerOptions,
  natsUnavailable,
  pinnedNatsBinary,
  previousNatsVersion,
  startNatsCluster,
  startNatsServer,
} from './nats.js';
export { findBinary, freePort, missingBinary, type ServerControls, ServerProcess } from './process.js';
export {
  type RedisCluster,
  type RedisServer,
  type RedisServerOptions,
  redisCommand,
  redisUnavailable,
  startRedisCluster,
  startRedisServer,
} from './redis.js';
