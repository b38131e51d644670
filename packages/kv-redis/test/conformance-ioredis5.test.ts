/**
 * The conformance suite on handles made from the user's own ioredis 5
 * client (`openRedisKv({ client })`): `ioredis` is a peer dependency of
 * `^5.0.0 || ^6.0.0`, and the backend must keep every promise of the
 * contract on either major. ioredis 5 is installed here under the alias
 * `ioredis5`; the default run uses ioredis 6.
 */
import { openRedisKv } from '@weft/kv-redis';
import { describeKvConformance } from '@weft/kv-testkit';
import type { RedisServer } from '@weft/test-servers';
import { Redis as Redis5 } from 'ioredis5';
import { describe } from 'vitest';
import { type RedisFixture, redisHarness, redisMissing, standalone } from './helpers.js';

let server: RedisServer;
const fixture = {} as RedisFixture;
const clients: Redis5[] = [];

/** A handle on the user's own ioredis 5 client (the handle leaves it open; teardown closes it). */
function openOnUserClient(bucket: string, sweepIntervalMs: number) {
  const client = new Redis5(server.url, { maxRetriesPerRequest: null });
  clients.push(client);
  // The client's type is ioredis 5's; the package's declarations here are compiled against ioredis 6.
  return openRedisKv({ client: client as unknown as NonNullable<Parameters<typeof openRedisKv>[0]['client']>, bucket, sweepIntervalMs });
}

if (redisMissing !== undefined) describe.skip(`kv conformance: redis with ioredis 5 (${redisMissing})`, () => undefined);
else
  describeKvConformance("redis (the user's own ioredis 5 client)", {
    ...redisHarness(openRedisKv, fixture),
    open: (bucket) => openOnUserClient(bucket, 100),
    openUnswept: (bucket) => openOnUserClient(bucket, 0),
    setup: async () => {
      let raw: RedisFixture['raw'];
      ({ server, raw } = await standalone());
      Object.assign(fixture, { target: { url: server.url }, raw });
    },
    teardown: async () => {
      for (const client of clients.splice(0)) client.disconnect();
      fixture.raw.disconnect();
      await server.stop();
    },
  });
