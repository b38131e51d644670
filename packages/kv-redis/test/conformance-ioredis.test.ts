/**
 * The conformance suite on handles made from the user's own ioredis client
 * (`openRedisKv({ client })`): `ioredis` is an optional peer dependency of
 * `^5.0.0 || ^6.0.0`, and the backend must keep every promise of the
 * contract on either major, standalone and cluster. ioredis 5 is installed
 * here under the alias `ioredis5`.
 */
import { openRedisKv } from '@weft/kv-redis';
import { Redis as Redis5 } from 'ioredis5';
import { describeConformanceOnUserClients, ioredisClient, type UserClient } from './helpers.js';

const ioredis6 = async (target: Parameters<typeof ioredisClient>[0]): Promise<UserClient> => {
  const client = ioredisClient(target);
  return { client, close: () => client.disconnect() };
};

describeConformanceOnUserClients(openRedisKv, "redis (the user's own ioredis 6 client)", 'standalone', ioredis6);
describeConformanceOnUserClients(openRedisKv, "redis-cluster (the user's own ioredis 6 cluster client)", 'cluster', ioredis6);
describeConformanceOnUserClients(openRedisKv, "redis (the user's own ioredis 5 client)", 'standalone', async (target) => {
  const client = new Redis5((target as { url: string }).url, { autoResendUnfulfilledCommands: false });
  client.on('error', () => undefined);
  // ioredis 5's class is not ioredis 6's; the option is typed by the members both have.
  return { client: client as unknown as UserClient['client'], close: () => client.disconnect() };
});
