import { openRedisKv } from '@weft/kv-redis';
import { describeKvConformance } from '@weft/kv-testkit';
import type { RedisCluster } from '@weft/test-servers';
import type { Cluster } from 'ioredis';
import { describe } from 'vitest';
import { cluster, dropBucket, redisMissing, watchConnections } from './helpers.js';

let servers: RedisCluster;
let raw: Cluster;

if (redisMissing !== undefined) describe.skip(`kv conformance: redis-cluster (${redisMissing})`, () => undefined);
else
  describeKvConformance('redis-cluster', {
    setup: async () => {
      ({ cluster: servers, raw } = await cluster());
    },
    teardown: async () => {
      raw.disconnect();
      await servers.stop();
    },
    open: (bucket) => openRedisKv({ cluster: servers.startupNodes, bucket, sweepIntervalMs: 100 }),
    openUnswept: (bucket) => openRedisKv({ cluster: servers.startupNodes, bucket, sweepIntervalMs: 0 }),
    dropBucket: (bucket) => dropBucket(raw, bucket),
    recreateBucket: (bucket) => dropBucket(raw, bucket),
    forgetHistory: async (bucket) => void (await raw.xtrim(`weft:{${bucket}}:log`, 'MAXLEN', 0)),
    watchResources: (bucket) => watchConnections(raw, bucket),
    expireDelayMs: 1000,
  });
