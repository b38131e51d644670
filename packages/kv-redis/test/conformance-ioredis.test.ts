/**
 * The conformance suite on handles made from the user's own ioredis client
 * (`openRedisKv({ client })`): `ioredis` is an optional peer dependency of
 * `^5.0.0 || ^6.0.0`, and the backend must keep every promise of the
 * contract on either major, standalone and cluster. ioredis 5 is installed
 * here under the alias `ioredis5`.
 */
import { openRedisKv } from '@weft/kv-redis';
import { describeKvConformance } from '@weft/kv-testkit';
import { Redis as Redis5 } from 'ioredis5';
import { describe } from 'vitest';
import { cluster, ioredisClient, type RedisFixture, redisHarness, redisMissing, standalone } from './helpers.js';

type Client = { disconnect(): void };

/**
 * The harness for handles on user clients made by `makeClient`, against a
 * standalone server (or a cluster) the suite's setup starts.
 */
function describeOnUserClients(name: string, topology: 'standalone' | 'cluster', makeClient: (target: RedisFixture['target']) => Client) {
  const fixture = {} as RedisFixture;
  const clients: Client[] = [];
  let stop: () => Promise<void>;
  const openOnUserClient = (bucket: string, sweepIntervalMs: number) => {
    const client = makeClient(fixture.target);
    clients.push(client);
    // ioredis 5's class is not ioredis 6's; the option is typed by the members both have.
    return openRedisKv({ client: client as unknown as NonNullable<Parameters<typeof openRedisKv>[0]['client']>, bucket, sweepIntervalMs });
  };
  if (redisMissing !== undefined) {
    describe.skip(`kv conformance: ${name} (${redisMissing})`, () => undefined);
    return;
  }
  describeKvConformance(name, {
    ...redisHarness(openRedisKv, fixture),
    open: (bucket) => openOnUserClient(bucket, 100),
    openUnswept: (bucket) => openOnUserClient(bucket, 0),
    setup: async () => {
      if (topology === 'standalone') {
        const { server, raw } = await standalone();
        Object.assign(fixture, { target: { url: server.url }, raw });
        stop = () => server.stop();
      } else {
        const started = await cluster();
        Object.assign(fixture, { target: { cluster: started.cluster.startupNodes }, raw: started.raw });
        stop = () => started.cluster.stop();
      }
    },
    teardown: async () => {
      for (const client of clients.splice(0)) client.disconnect();
      fixture.raw.disconnect();
      await stop();
    },
  });
}

describeOnUserClients("redis (the user's own ioredis 6 client)", 'standalone', ioredisClient);
describeOnUserClients("redis-cluster (the user's own ioredis 6 cluster client)", 'cluster', ioredisClient);
describeOnUserClients("redis (the user's own ioredis 5 client)", 'standalone', (target) => {
  const client = new Redis5((target as { url: string }).url, { autoResendUnfulfilledCommands: false });
  client.on('error', () => undefined);
  return client;
});
