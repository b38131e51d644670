import { openRedisKv } from '@weft/kv-redis';
import { describeKvConformance } from '@weft/kv-testkit';
import type { RedisServer } from '@weft/test-servers';
import type { Redis } from 'ioredis';
import { describe } from 'vitest';
import { dropBucket, redisMissing, standalone, watchConnections } from './helpers.js';

let server: RedisServer;
let raw: Redis;

if (redisMissing !== undefined) describe.skip(`kv conformance: redis (${redisMissing})`, () => undefined);
else
  describeKvConformance('redis', {
    setup: async () => {
      ({ server, raw } = await standalone());
    },
    teardown: async () => {
      raw.disconnect();
      await server.stop();
    },
    open: (bucket) => openRedisKv({ url: server.url, bucket, sweepIntervalMs: 100 }),
    openUnswept: (bucket) => openRedisKv({ url: server.url, bucket, sweepIntervalMs: 0 }),
    dropBucket: (bucket) => dropBucket(raw, bucket),
    recreateBucket: (bucket) => dropBucket(raw, bucket),
    // What retention does when it trims the change stream, all at once.
    forgetHistory: async (bucket) => void (await raw.xtrim(`weft:{${bucket}}:log`, 'MAXLEN', 0)),
    watchResources: (bucket) => watchConnections(raw, bucket),
    expireDelayMs: 1000,
  });
