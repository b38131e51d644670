import { openRedisKv } from '@weft/kv-redis';
import { describeKvConformance } from '@weft/kv-testkit';
import type { RedisServer } from '@weft/test-servers';
import { describe } from 'vitest';
import { type RedisFixture, redisHarness, redisMissing, standalone } from './helpers.js';

let server: RedisServer;
const fixture = {} as RedisFixture;

if (redisMissing !== undefined) describe.skip(`kv conformance: redis (${redisMissing})`, () => undefined);
else
  describeKvConformance('redis', {
    ...redisHarness(openRedisKv, fixture),
    setup: async () => {
      let raw: RedisFixture['raw'];
      ({ server, raw } = await standalone());
      Object.assign(fixture, { target: { url: server.url }, raw });
    },
    teardown: async () => {
      fixture.raw.disconnect();
      await server.stop();
    },
  });
