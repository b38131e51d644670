/**
 * Redis: weft with its default client against what a user would pick
 * instead, on the same spawned server, interleaved: raw clients (ioredis as
 * configured by default, ioredis with `enableAutoPipelining`, node-redis,
 * which pipelines on its own) and peer libraries (keyv with `@keyv/redis`,
 * unstorage's Redis driver), for get and put, sequential and with 100 in
 * flight; the targets are taken against the fastest raw client of the run.
 * Then the layer's own cost: put and update against a raw `EVALSHA` of the
 * very script weft runs, get against the same `HMGET`, commits of 1, 8 and
 * 64 puts against the same commit script; put-to-watch-event latency; and
 * the same contest on a 3-master Redis Cluster.
 */
import { createHash } from 'node:crypto';
import KeyvRedis, { createCluster as createKeyvCluster } from '@keyv/redis';
import type { KvStore, Version } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import { commitScript, mutationScripts } from '@weft/kv-redis/scripts';
import { type RedisServer, redisUnavailable, startRedisCluster, startRedisServer } from '@weft/test-servers';
import { Cluster, Redis } from 'ioredis';
import Keyv from 'keyv';
import { createClient, createCluster } from 'redis';
import { createClient as createClient5, createCluster as createCluster5 } from 'redis5';
import { createStorage } from 'unstorage';
import redisDriver from 'unstorage/drivers/redis';
import type { Bench, Contender } from '../harness.js';
import { watchLatency } from './watch-latency.js';

export const redisMissing = redisUnavailable;

const valueBytes = 100;
const keys = 1000;
const modes = [
  [1, 'sequential'],
  [100, '100 in flight'],
] as const;

/** The members of a node-redis client or cluster the suite uses. */
interface NodeRedis {
  get(key: string): Promise<unknown>;
  set(key: string, value: Buffer): Promise<unknown>;
  sendCommand(args: Array<string | Buffer>): Promise<unknown>;
  destroy(): void;
}

/** Clients a user would reach for, each on its own connection(s) to one server or cluster. */
interface Alternatives {
  readonly ioredis: Redis | Cluster;
  readonly ioredisAuto: Redis | Cluster;
  readonly nodeRedis: NodeRedis;
  readonly nodeRedis5: NodeRedis;
  readonly keyv: Keyv;
  readonly unstorage: ReturnType<typeof createStorage>;
  close(): Promise<void>;
}

async function alternatives(target: { url: string } | { nodes: ReadonlyArray<{ host: string; port: number }> }): Promise<Alternatives> {
  const standalone = 'url' in target;
  const ioredis = standalone ? new Redis(target.url) : new Cluster([...target.nodes]);
  const ioredisAuto = standalone
    ? new Redis(target.url, { enableAutoPipelining: true })
    : new Cluster([...target.nodes], { enableAutoPipelining: true });
  const nodeRedis = standalone
    ? createClient({ url: target.url })
    : createCluster({ rootNodes: target.nodes.map((node) => ({ url: `redis://${node.host}:${node.port}` })) });
  await nodeRedis.connect();
  const nodeRedis5 = standalone
    ? createClient5({ url: target.url })
    : createCluster5({ rootNodes: target.nodes.map((node) => ({ url: `redis://${node.host}:${node.port}` })) });
  await nodeRedis5.connect();
  const keyvStore = standalone
    ? new KeyvRedis(target.url)
    : new KeyvRedis(createKeyvCluster({ rootNodes: target.nodes.map((node) => ({ url: `redis://${node.host}:${node.port}` })) }) as never);
  const keyv = new Keyv({ store: keyvStore, namespace: 'keyv' });
  keyv.on('error', () => undefined);
  const unstorage = createStorage({
    driver: standalone
      ? redisDriver({ url: target.url, base: 'unstorage' })
      : redisDriver({ cluster: [...target.nodes], base: 'unstorage' }),
  });
  return {
    ioredis,
    ioredisAuto,
    nodeRedis: nodeRedis as unknown as NodeRedis,
    nodeRedis5: nodeRedis5 as unknown as NodeRedis,
    keyv,
    unstorage,
    async close() {
      ioredis.disconnect();
      ioredisAuto.disconnect();
      nodeRedis.destroy();
      nodeRedis5.destroy();
      await keyv.disconnect();
      await unstorage.dispose();
    },
  };
}

/** Get and put of weft's default client against every alternative, sequential and with 100 in flight. */
async function contestReadsAndWrites(
  bench: Bench,
  prefix: string,
  where: string,
  kv: KvStore,
  others: Alternatives,
  weftVariant?: { name: string; kv: KvStore },
): Promise<void> {
  const value = new Uint8Array(valueBytes).fill(7);
  const buffer = Buffer.from(value);
  // keyv and unstorage take text (and keyv wraps it in JSON with its expiry): a string of the same length.
  const text = 'x'.repeat(valueBytes);
  const rawKey = (i: number) => `raw:{k}.${i % keys}`;
  const key = (i: number) => `k.${i % keys}`;
  for (let index = 0; index < keys; index++) {
    await kv.put(key(index), value);
    await weftVariant?.kv.put(key(index), value);
    await others.ioredis.set(rawKey(index), buffer);
    await others.keyv.set(key(index), text);
    await others.unstorage.setItem(key(index), text);
  }
  const ops = bench.size(5000, 300);
  for (const [concurrency, mode] of modes) {
    const scaled = concurrency === 1 ? ops : ops * 4;
    const variant = (op: (store: KvStore, i: number) => Promise<unknown>): Contender[] =>
      weftVariant === undefined || concurrency === 1 ? [] : [{ name: weftVariant.name, op: (i) => op(weftVariant.kv, i), kind: 'weft' }];
    await bench.contest({
      id: `${prefix}.get.${concurrency}`,
      label: `${where} get, ${mode}`,
      weft: (i) => kv.get(key(i)),
      contenders: [
        { name: 'raw ioredis GET', op: (i) => others.ioredis.getBuffer(rawKey(i)), kind: 'raw' },
        { name: 'raw ioredis GET, auto-pipelining', op: (i) => others.ioredisAuto.getBuffer(rawKey(i)), kind: 'raw' },
        { name: 'raw node-redis 6 GET', op: (i) => others.nodeRedis.get(rawKey(i)), kind: 'raw' },
        { name: 'raw node-redis 5 GET', op: (i) => others.nodeRedis5.get(rawKey(i)), kind: 'raw' },
        { name: 'keyv + @keyv/redis', op: (i) => others.keyv.get(key(i)), kind: 'peer' },
        { name: 'unstorage redis driver', op: (i) => others.unstorage.getItem(key(i)), kind: 'peer' },
        ...variant((store, i) => store.get(key(i))),
      ],
      ops: scaled,
      concurrency,
      target: { kind: 'ratio-at-least', value: 0.9 },
      ...(concurrency === 1 ? {} : { peerTarget: { kind: 'ratio-at-least', value: 1 } }),
    });
    await bench.contest({
      id: `${prefix}.put.${concurrency}`,
      label: `${where} put, ${mode}`,
      weft: (i) => kv.put(key(i), value),
      contenders: [
        { name: 'raw ioredis SET', op: (i) => others.ioredis.set(rawKey(i), buffer), kind: 'raw' },
        { name: 'raw ioredis SET, auto-pipelining', op: (i) => others.ioredisAuto.set(rawKey(i), buffer), kind: 'raw' },
        { name: 'raw node-redis 6 SET', op: (i) => others.nodeRedis.set(rawKey(i), buffer), kind: 'raw' },
        { name: 'raw node-redis 5 SET', op: (i) => others.nodeRedis5.set(rawKey(i), buffer), kind: 'raw' },
        { name: 'keyv + @keyv/redis', op: (i) => others.keyv.set(key(i), text), kind: 'peer' },
        { name: 'unstorage redis driver', op: (i) => others.unstorage.setItem(key(i), text), kind: 'peer' },
        ...variant((store, i) => store.put(key(i), value)),
      ],
      ops: scaled,
      concurrency,
      target: { kind: 'ratio-at-least', value: concurrency === 1 ? 0.9 : 0.6 },
      ...(concurrency === 1 ? {} : { peerTarget: { kind: 'ratio-at-least', value: 1 } }),
    });
  }
}

export async function redisSuite(bench: Bench): Promise<void> {
  const server: RedisServer = await startRedisServer({ persistence: 'none' });
  const others = await alternatives({ url: server.url });
  const kv = await openRedisKv({ url: server.url, bucket: 'bench', sweepIntervalMs: 0 });
  const ioredisKv = await openRedisKv({ client: others.ioredis, bucket: 'bench-ioredis', sweepIntervalMs: 0 });
  const raw = createClient5({ url: server.url });
  await raw.connect();
  try {
    bench.notes.push(
      `redis-server ${(await others.ioredis.info('server')).match(/redis_version:(\S+)/)?.[1] ?? '?'} on loopback, no persistence; ${valueBytes}-byte values (keyv and unstorage store a ${valueBytes}-character string)`,
      "weft's default: `openRedisKv({ url })`, which opens a node-redis 5 client (the commands of one tick leave in one write); 'weft (user's ioredis client)' passes an ioredis 6 client as ioredis makes it by default instead; keyv's adapter runs on node-redis 5, unstorage's driver on ioredis 5",
      'the ratio of each main figure is against the fastest raw client of the run, named in the baseline column; every other system has a row of its own',
    );
    await contestReadsAndWrites(bench, 'redis', 'redis', kv, others, { name: "weft (user's ioredis client)", kv: ioredisKv });
    await layerCost(bench, kv, raw as unknown as NodeRedis);
    await commitCost(bench, kv, raw as unknown as NodeRedis);
    await redisWatchLatency(bench, kv, server);
  } finally {
    await kv.close();
    await ioredisKv.close();
    await others.close();
    raw.destroy();
    await server.stop();
  }
  await redisClusterContest(bench);
}

async function redisClusterContest(bench: Bench): Promise<void> {
  const cluster = await startRedisCluster({ masters: 3 });
  const others = await alternatives({ nodes: cluster.startupNodes });
  const kv = await openRedisKv({ cluster: cluster.startupNodes, bucket: 'bench', sweepIntervalMs: 0 });
  try {
    bench.notes.push(
      'redis cluster: 3 masters on loopback, no replicas; a weft bucket lives on one slot, the raw clients and peers spread their keys over all three',
    );
    await contestReadsAndWrites(bench, 'redis-cluster', 'redis cluster', kv, others);
  } finally {
    await kv.close();
    await others.close();
    await cluster.stop();
  }
}

/**
 * What weft adds to the commands it sends: put and update against a raw
 * `EVALSHA` of the very script weft runs, on a bucket of its own, and get
 * against the same `HMGET`, all through node-redis 5 (which pipelines).
 */
async function layerCost(bench: Bench, kv: KvStore, raw: NodeRedis): Promise<void> {
  const value = new Uint8Array(valueBytes).fill(7);
  const valueBuffer = Buffer.from(value);
  const base = 'weft:{raw}:';
  const sha = {
    put: await scriptSha(raw, mutationScripts.weftPut),
    update: await scriptSha(raw, mutationScripts.weftUpdate),
  };
  const scriptKeys = (key: string) => [`${base}r:${key}`, `${base}log`, `${base}exp`, `${base}idx`, `${base}meta`, `${base}tomb`];
  const evalPut = (key: string) => raw.sendCommand(['EVALSHA', sha.put, '6', ...scriptKeys(key), key, 'epoch', '1000000', valueBuffer]);
  const rawVersions = new Map<string, string>();
  const evalUpdate = async (key: string) => {
    const expected = rawVersions.get(key) ?? String(await evalPut(key));
    const result = await raw.sendCommand(['EVALSHA', sha.update, '6', ...scriptKeys(key), key, 'epoch', '1000000', valueBuffer, expected]);
    rawVersions.set(key, String(result));
  };
  const weftVersions = new Map<string, Version>();
  const weftUpdate = async (key: string) => {
    const expected = weftVersions.get(key) ?? (await kv.put(key, value));
    weftVersions.set(key, await kv.update(key, value, expected));
  };
  const ops = bench.size(5000, 300);
  for (const [concurrency, mode] of modes) {
    const scaled = concurrency === 1 ? ops : ops * 4;
    await bench.compare({
      id: `redis.put-script.${concurrency}`,
      label: `redis put vs the same script, ${mode}`,
      weft: (i) => kv.put(`k.${i % keys}`, value),
      baseline: { name: 'raw EVALSHA (node-redis 5)', op: (i) => evalPut(`k.${i % keys}`) },
      ops: scaled,
      concurrency,
      target: { kind: 'ratio-at-least', value: 0.9 },
    });
    // Updates use a key per operation in flight, so each compare-and-swap expects the version it last wrote.
    const weftKeys = keyPool(`u${concurrency}.`, concurrency);
    const rawKeys = keyPool(`raw.u${concurrency}.`, concurrency);
    await bench.compare({
      id: `redis.update.${concurrency}`,
      label: `redis update, ${mode}`,
      weft: () => weftKeys(weftUpdate),
      baseline: { name: 'raw EVALSHA (node-redis 5)', op: () => rawKeys(evalUpdate) },
      ops: scaled,
      concurrency,
      target: { kind: 'ratio-at-least', value: 0.9 },
    });
    // What a weft get costs over the command it sends: the record is a hash, read with one HMGET.
    await bench.compare({
      id: `redis.get-vs-hmget.${concurrency}`,
      label: `redis get vs the same HMGET, ${mode}`,
      weft: (i) => kv.get(`k.${i % keys}`),
      baseline: {
        name: 'raw HMGET o v n (node-redis 5)',
        op: (i) => raw.sendCommand(['HMGET', `weft:{bench}:r:k.${i % keys}`, 'o', 'v', 'n']),
      },
      ops: scaled,
      concurrency,
    });
  }
}

/**
 * `commit` of 1, 8 and 64 puts against a raw `EVALSHA` of the very commit
 * script weft runs, through node-redis 5, with 16 commits in flight: what
 * the layer adds to an atomic multi-key write (checks of every key and
 * value, the arguments, the reply).
 */
async function commitCost(bench: Bench, kv: KvStore, raw: NodeRedis): Promise<void> {
  const value = new Uint8Array(valueBytes).fill(7);
  const valueBuffer = Buffer.from(value);
  const base = 'weft:{rawcommit}:';
  const sha = await scriptSha(raw, commitScript);
  for (const size of [1, 8, 64]) {
    const keysOf = (i: number) => Array.from({ length: size }, (_, index) => `c${size}.${i % 50}.${index}`);
    await bench.compare({
      id: `redis.commit.${size}`,
      label: `redis commit of ${size} put${size === 1 ? '' : 's'}, 16 in flight`,
      weft: (i) => kv.commit(keysOf(i).map((key) => ({ op: 'put' as const, key, value }))),
      baseline: {
        name: 'raw EVALSHA of the commit script (node-redis 5)',
        op: (i) => {
          const keys = keysOf(i);
          const records = keys.map((key) => `${base}r:${key}`);
          const args = keys.flatMap((key) => ['put', key, valueBuffer, '']);
          return raw.sendCommand([
            'EVALSHA',
            sha,
            String(5 + keys.length),
            records[0] as string,
            `${base}log`,
            `${base}exp`,
            `${base}idx`,
            `${base}meta`,
            `${base}tomb`,
            ...records.slice(1),
            '',
            '',
            '1000000',
            ...args,
          ]);
        },
      },
      ops: bench.size(2000, 100),
      concurrency: 16,
      unit: 'commits/s',
      target: { kind: 'ratio-at-least', value: 0.9 },
    });
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

async function scriptSha(client: Redis | NodeRedis, lua: string): Promise<string> {
  const sha = createHash('sha1').update(lua).digest('hex');
  await (client instanceof Redis ? client.script('LOAD', lua) : client.sendCommand(['SCRIPT', 'LOAD', lua]));
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
          6,
          `${base}r:${key}`,
          `${base}log`,
          `${base}exp`,
          `${base}idx`,
          `${base}meta`,
          `${base}tomb`,
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
