/**
 * The conformance suite on handles made from the user's own node-redis
 * client (`openRedisKv({ client })`): node-redis 6 speaking RESP2 (its
 * default), node-redis 5 speaking RESP3, and a node-redis 6 cluster client.
 * node-redis 5 is installed here under the alias `redis5`.
 */
import { openRedisKv, type RedisKvOptions } from '@weft/kv-redis';
import { createClient, createCluster } from 'redis';
import { createClient as createClient5 } from 'redis5';
import { describeConformanceOnUserClients, type RedisFixture, type UserClient } from './helpers.js';

/** A node-redis client or cluster as its library makes it, unconverted. */
type NodeRedisClient = NonNullable<RedisKvOptions['client']> & {
  connect(): Promise<unknown>;
  destroy(): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
};

/** Connects what `make` makes; its errors are its own, kept from becoming unhandled events. */
const connected =
  (make: (target: RedisFixture['target']) => NodeRedisClient) =>
  async (target: RedisFixture['target']): Promise<UserClient> => {
    const client = make(target);
    client.on('error', () => undefined);
    await client.connect();
    return { client, close: () => client.destroy() };
  };

const urlOf = (target: RedisFixture['target']) => ('url' in target ? target.url : '');

describeConformanceOnUserClients(
  openRedisKv,
  "redis (the user's own node-redis 6 client, RESP2)",
  'standalone',
  connected((target) => createClient({ url: urlOf(target) })),
);
describeConformanceOnUserClients(
  openRedisKv,
  "redis (the user's own node-redis 5 client, RESP3)",
  'standalone',
  connected((target) => createClient5({ url: urlOf(target), RESP: 3 })),
);
describeConformanceOnUserClients(
  openRedisKv,
  "redis-cluster (the user's own node-redis 6 cluster client)",
  'cluster',
  connected((target) =>
    createCluster({
      rootNodes: 'cluster' in target ? target.cluster.map(({ host, port }) => ({ url: `redis://${host}:${port}` })) : [],
    }),
  ),
);
