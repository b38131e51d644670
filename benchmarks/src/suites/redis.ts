/**
 * Redis: weft against raw ioredis on the same spawned server. `get` against a
 * raw `GET`; `put` and `update` against a raw `EVALSHA` of the very script
 * weft runs (the layer's own overhead) and against a raw `SET` (the price of
 * versioning); sequential and with 100 in flight; put-to-watch-event latency
 * against a raw `XADD` read by a blocked `XREAD`.
 */
import { createHash } from 'node:crypto';
import type { KvStore, Version } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import { mutationScripts } from '@weft/kv-redis/scripts';
import { type RedisServer, redisUnavailable, startRedisServer } from '@weft/test-servers';
import { Redis } from 'ioredis';
import type { Bench } from '../harness.js';
import { watchLatency } from './watch-latency.js';

export const redisMissing = redisUnavailable;

export async function redisSuite(bench: Bench): Promise<void> {
  const server: RedisServer = await startRedisServer({ persistence: 'none' });
  const raw = new Redis(server.url, { lazyConnect: false, enableAutoPipelining: false });
  const kv = await openRedisKv({ url: server.url, bucket: 'bench', sweepIntervalMs: 0 });
  try {
    bench.notes.push(`redis-server ${(await raw.info('server')).match(/redis_version:(\S+)/)?.[1] ?? '?'} on loopback, no persistence`);
    const value = new Uint8Array(256).fill(7);
    const valueBuffer = Buffer.from(value);
    const keys = 1000;
    for (let index = 0; index < keys; index++) {
      await kv.put(`k.${index}`, value);
      await raw.set(`raw:k.${index}`, valueBuffer);
    }

    // The same script weft registers, called by hand on a bucket of its own.
    const base = 'weft:{raw}:';
    const sha = {
      put: await scriptSha(raw, mutationScripts.weftPut),
      update: await scriptSha(raw, mutationScripts.weftUpdate),
    };
    const scriptKeys = (key: string) => [`${base}r:${key}`, `${base}log`, `${base}exp`, `${base}idx`, `${base}meta`];
    const evalPut = (key: string) => raw.evalsha(sha.put, 5, ...scriptKeys(key), key, 'epoch', 1_000_000, valueBuffer);
    const rawVersions = new Map<string, string>();
    const evalUpdate = async (key: string) => {
      const expected = rawVersions.get(key) ?? String(await evalPut(key));
      const result = await raw.evalsha(sha.update, 5, ...scriptKeys(key), key, 'epoch', 1_000_000, valueBuffer, expected);
      rawVersions.set(key, String(result));
    };
    const weftVersions = new Map<string, Version>();
    const weftUpdate = async (key: string) => {
      const expected = weftVersions.get(key) ?? (await kv.put(key, value));
      weftVersions.set(key, await kv.update(key, value, expected));
    };

    const ops = bench.size(5000, 300);
    for (const [concurrency, mode] of [
      [1, 'sequential'],
      [100, '100 in flight'],
    ] as const) {
      const scaled = concurrency === 1 ? ops : ops * 4;
      await bench.compare({
        id: `redis.get.${concurrency}`,
        label: `redis get, ${mode}`,
        weft: (i) => kv.get(`k.${i % keys}`),
        baseline: { name: 'raw GET', op: (i) => raw.getBuffer(`raw:k.${i % keys}`) },
        ops: scaled,
        concurrency,
        target: { kind: 'ratio-at-least', value: 0.9 },
      });
      await bench.compare({
        id: `redis.put.${concurrency}`,
        label: `redis put, ${mode}`,
        weft: (i) => kv.put(`k.${i % keys}`, value),
        baseline: { name: 'raw EVALSHA', op: (i) => evalPut(`k.${i % keys}`) },
        ops: scaled,
        concurrency,
        target: { kind: 'ratio-at-least', value: 0.9 },
      });
      await bench.compare({
        id: `redis.put-vs-set.${concurrency}`,
        label: `redis put vs SET, ${mode}`,
        weft: (i) => kv.put(`k.${i % keys}`, value),
        baseline: { name: 'raw SET', op: (i) => raw.set(`raw:k.${i % keys}`, valueBuffer) },
        ops: scaled,
        concurrency,
      });
      // Updates use a key per operation in flight, so each compare-and-swap expects the version it last wrote.
      const weftKeys = keyPool(`u${concurrency}.`, concurrency);
      const rawKeys = keyPool(`raw.u${concurrency}.`, concurrency);
      await bench.compare({
        id: `redis.update.${concurrency}`,
        label: `redis update, ${mode}`,
        weft: () => weftKeys(weftUpdate),
        baseline: { name: 'raw EVALSHA', op: () => rawKeys(evalUpdate) },
        ops: scaled,
        concurrency,
        target: { kind: 'ratio-at-least', value: 0.9 },
      });
    }
    await bench.compare({
      id: 'redis.update-vs-set.1',
      label: 'redis update vs SET, sequential',
      weft: () => weftUpdate('u.0'),
      baseline: { name: 'raw SET', op: () => raw.set('raw:u.0', valueBuffer) },
      ops,
      concurrency: 1,
    });

    // What a weft get costs over the command it sends: the record is a hash, read with one HMGET.
    for (const [concurrency, mode] of [
      [1, 'sequential'],
      [100, '100 in flight'],
    ] as const) {
      await bench.compare({
        id: `redis.get-vs-hmget.${concurrency}`,
        label: `redis get vs the same HMGET, ${mode}`,
        weft: (i) => kv.get(`k.${i % keys}`),
        baseline: { name: 'raw HMGET o v n', op: (i) => raw.hmgetBuffer(`weft:{bench}:r:k.${i % keys}`, 'o', 'v', 'n') },
        ops: concurrency === 1 ? ops : ops * 4,
        concurrency,
      });
    }

    await redisWatchLatency(bench, kv, server);
  } finally {
    await kv.close();
    raw.disconnect();
    await server.stop();
  }
}

/**
 * Keys for compare-and-swap loops, one per operation in flight: an operation
 * takes a key no other running operation holds and gives it back when done,
 * so each update expects the version its key's previous update wrote, and no
 * operation ever waits for another (waiting would add queueing to the figure).
 */
export function keyPool(prefix: string, size: number): (op: (key: string) => Promise<unknown>) => Promise<unknown> {
  const free = Array.from({ length: size }, (_, index) => `${prefix}${index}`);
  return async (op) => {
    const key = free.pop();
    if (key === undefined) throw new Error(`more than ${size} operations in flight on the key pool ${prefix}`);
    try {
      return await op(key);
    } finally {
      free.push(key);
    }
  };
}

async function scriptSha(client: Redis, lua: string): Promise<string> {
  const sha = createHash('sha1').update(lua).digest('hex');
  await client.script('LOAD', lua);
  return sha;
}

async function redisWatchLatency(bench: Bench, kv: KvStore, server: RedisServer): Promise<void> {
  const producer = new Redis(server.url);
  const consumer = new Redis(server.url);
  const stream = 'raw:latency';
  let last = (await producer.xadd(stream, '*', 'v', 'start')) as string;
  const payload = Buffer.alloc(64, 1);
  await watchLatency(bench, {
    id: 'redis.watch-latency',
    label: 'redis put-to-watch-event latency',
    kv,
    samples: bench.size(1000, 60),
    baseline: {
      name: 'raw XADD + XREAD BLOCK',
      sample: async () => {
        const started = performance.now();
        const read = consumer.xread('BLOCK', 5000, 'STREAMS', stream, last);
        await producer.xadd(stream, '*', 'v', payload);
        const reply = await read;
        last = reply?.[0]?.[1]?.at(-1)?.[0] ?? last;
        return performance.now() - started;
      },
    },
  });
  // The same raw clients making the round trips a weft watch makes by design: the put is the mutation script,
  // XREAD BLOCK only wakes the reader, and the change is then read with the value in a second round trip.
  const putSha = await scriptSha(producer, mutationScripts.weftPut);
  const base = 'weft:{rawwatch}:';
  let lastChange = '0-0';
  let counter = 0;
  await watchLatency(bench, {
    id: 'redis.watch-latency-same-trips',
    label: "redis put-to-watch-event latency vs raw clients making weft's round trips",
    kv,
    samples: bench.size(1000, 60),
    target: null,
    baseline: {
      name: 'raw EVALSHA put + XREAD BLOCK + HMGET',
      sample: async () => {
        const key = `latency.${counter++ % 16}`;
        const started = performance.now();
        const read = consumer.xread('BLOCK', 5000, 'STREAMS', `${base}log`, lastChange);
        await producer.evalsha(
          putSha,
          5,
          `${base}r:${key}`,
          `${base}log`,
          `${base}exp`,
          `${base}idx`,
          `${base}meta`,
          key,
          'epoch',
          1_000_000,
          payload,
        );
        const reply = await read;
        lastChange = reply?.[0]?.[1]?.at(-1)?.[0] ?? lastChange;
        await consumer.hmgetBuffer(`${base}r:${key}`, 'o', 'v', 'n');
        return performance.now() - started;
      },
    },
  });
  producer.disconnect();
  consumer.disconnect();
}
