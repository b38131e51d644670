// 100 concurrent update loops through weft's Redis backend.
import { openRedisKv } from '@weft/kv-redis';

const kv = await openRedisKv({ url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', bucket: 'weft-profile', sweepIntervalMs: 0 });
const value = new Uint8Array(128);
const versions = [];
for (let key = 0; key < 100; key++) versions[key] = await kv.put(`k${key}`, value);
const started = performance.now();
let count = 0;
await Promise.all(
  Array.from({ length: 100 }, async (_, key) => {
    for (let index = 0; index < 2000; index++) {
      versions[key] = await kv.update(`k${key}`, value, versions[key]);
      count++;
    }
  }),
);
console.log(`${Math.round(count / ((performance.now() - started) / 1000))} updates/s`);
await kv.close();
