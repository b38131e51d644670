/**
 * The conformance suite on handles made from the user's own node-redis
 * client (`openRedisKv({ client })`): node-redis 6 speaking RESP2 (its
 * default), node-redis 5 speaking RESP3, and a node-redis 6 cluster client.
 * node-redis 5 is installed here under the alias `redis5`.
 */
import { openRedisKv, type RedisKvOptions } from '@weft/kv-redis';
import { describeKvConformance } from '@weft/kv-testkit';
import { createClient, createCluster } from 'redis';
import { createClient as createClient5 } from 'redis5';
import { describe } from 'vitest';
import { cluster, type RedisFixture, redisHarness, redisMissing, standalone } from './helpers.js';

/** A client the test connects and later destroys; the handle leaves it open. Its type is the library's own, unconverted. */
type UserClient = NonNullable<RedisKvOptions['client']> & {
  connect(): Promise<unknown>;
  destroy(): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
};

/**
 * The harness for handles on user clients made by `makeClient`, against a
 * standalone server (or a cluster) the suite's setup starts.
 */
function describeOnUserClients(
  name: string,
  topology: 'standalone' | 'cluster',
  makeClient: (target: RedisFixture['target']) => UserClient,
): void {
  const fixture = {} as RedisFixture;
  const clients: UserClient[] = [];
  let stop: () => Promise<void>;
  const openOnUserClient = async (bucket: string, sweepIntervalMs: number) => {
    const client = makeClient(fixture.target);
    clients.push(client);
    // A user's client reports its own errors; the test keeps them from becoming unhandled events.
    client.on('error', () => undefined);
    await client.connect();
    return openRedisKv({ client, bucket, sweepIntervalMs });
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
        const { cluster: servers, raw } = await cluster();
        Object.assign(fixture, { target: { cluster: servers.startupNodes }, raw });
        stop = () => servers.stop();
      }
    },
    teardown: async () => {
      for (const client of clients.splice(0)) client.destroy();
      fixture.raw.disconnect();
      await stop();
    },
  });
}

const urlOf = (target: RedisFixture['target']) => ('url' in target ? target.url : '');

describeOnUserClients("redis (the user's own node-redis 6 client, RESP2)", 'standalone', (target) => createClient({ url: urlOf(target) }));
describeOnUserClients("redis (the user's own node-redis 5 client, RESP3)", 'standalone', (target) =>
  createClient5({ url: urlOf(target), RESP: 3 }),
);
describeOnUserClients("redis-cluster (the user's own node-redis 6 cluster client)", 'cluster', (target) =>
  createCluster({
    rootNodes: 'cluster' in target ? target.cluster.map(({ host, port }) => ({ url: `redis://${host}:${port}` })) : [],
  }),
);
