// 100 gets or puts in flight through weft's Redis backend on its default client (node-redis 5), a user's ioredis or a
// user's node-redis 6 client, and the server's time per command (INFO commandstats) for weft's put script against SET
// and XADD.
//   node benchmarks/profiles/redis-client.mjs default|ioredis|node-redis6 get|put
import { openRedisKv } from '@weft/kv-redis';
import { startRedisServer } from '@weft/test-servers';
import { Redis } from 'ioredis';
import { createClient } from 'redis';

const [client = 'default', op = 'get'] = process.argv.slice(2);
const server = await startRedisServer({ persistence: 'none' });
const raw = new Redis(server.url);
let userClient;
if (client === 'node-redis6') userClient = await createClient({ url: server.url }).connect();
if (client === 'ioredis') userClient = new Redis(server.url);
const kv = await openRedisKv({ ...(userClient ? { client: userClient } : { url: server.url }), bucket: 'profile', sweepIntervalMs: 0 });
const value = new Uint8Array(100).fill(7);
for (let index = 0; index < 1000; index++) await kv.put(`k.${index}`, value);
const run = op === 'put' ? (index) => kv.put(`k.${index % 1000}`, value) : (index) => kv.get(`k.${index % 1000}`);
await raw.config('RESETSTAT');
for (let round = 0; round < 4; round++) {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 100 }, async () => {
      while (next < 50_000) await run(next++);
    }),
  );
  console.log(`${client} ${op}: ${Math.round(50_000 / ((performance.now() - started) / 1000))}/s`);
}
await Promise.all(Array.from({ length: 20_000 }, (_, index) => raw.set(`raw.${index % 1000}`, Buffer.from(value))));
await Promise.all(Array.from({ length: 20_000 }, (_, index) => raw.xadd('raw.log', '*', 'k', `k.${index}`, 't', 'p')));
const stats = (await raw.info('commandstats')).split('\n').filter((line) => /^cmdstat_(evalsha|set|xadd|hmget):/.test(line));
console.log(stats.map((line) => line.replace(/,rejected_calls.*/, '')).join('\n'));
await kv.close();
userClient?.disconnect();
raw.disconnect();
await server.stop();
