import { openRedisKv } from '@weft/kv-redis';
import { describeKvConformance } from '@weft/kv-testkit';
import type { RedisCluster } from '@weft/test-servers';
import { describe } from 'vitest';
import { cluster, type RedisFixture, redisHarness, redisMissing } from './helpers.js';

let servers: RedisCluster;
const fixture = {} as RedisFixture;

if (redisMissing !== undefined) describe.skip(`kv conformance: redis-cluster (${redisMissing})`, () => undefined);
else
  describeKvConformance('redis-cluster', {
    ...redisHarness(openRedisKv, fixture),
    setup: async () => {
      let raw: RedisFixture['raw'];
      ({ cluster: servers, raw } = await cluster());
      Object.assign(fixture, { target: { cluster: servers.startupNodes }, raw });
    },
    teardown: async () => {
      fixture.raw.disconnect();
      await servers.stop();
    },
  });
