/**
 * How costs grow: with value size (64 B to 1 MiB), with bucket size (1k to 1M
 * keys, for `keys`, `scan` and a state-sync watch) and with log size (replay
 * of up to 1M events, with the memory it takes).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openEventLog } from '@weft/eventlog';
import { createMemoryKvServer, type KvStore, openMemoryKv } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { openRedisKv } from '@weft/kv-redis';
import { natsUnavailable, redisUnavailable, startNatsServer, startRedisServer } from '@weft/test-servers';
import type { Bench } from '../harness.js';
import { stat, timeOps } from '../harness.js';
import { benchDir } from './dirs.js';

interface Backend {
  readonly name: string;
  open(bucket: string): Promise<KvStore>;
  stop(): Promise<void>;
}

async function backends(bench: Bench): Promise<Backend[]> {
  const server = createMemoryKvServer();
  const list: Backend[] = [{ name: 'memory', open: (bucket) => openMemoryKv({ server, bucket, history: 1 }), stop: async () => undefined }];
  if (redisUnavailable() === undefined) {
    const redis = await startRedisServer({ persistence: 'none' });
    list.push({ name: 'redis', open: (bucket) => openRedisKv({ url: redis.url, bucket, sweepIntervalMs: 0 }), stop: () => redis.stop() });
  } else bench.notes.push(`scaling on Redis skipped: ${redisUnavailable()}`);
  if (natsUnavailable() === undefined) {
    const nats = await startNatsServer();
    list.push({
      name: 'nats',
      open: (bucket) => openNatsKv({ servers: nats.url, bucket, create: { history: 1 } }),
      stop: () => nats.stop(),
    });
  } else bench.notes.push(`scaling on NATS skipped: ${natsUnavailable()}`);
  return list;
}

export async function scalingSuite(bench: Bench): Promise<void> {
  const list = await backends(bench);
  try {
    await valueSizes(bench, list);
    await bucketSizes(bench, list);
  } finally {
    for (const backend of list) await backend.stop();
  }
  await logSizes(bench);
}

async function valueSizes(bench: Bench, list: readonly Backend[]): Promise<void> {
  const sizes = bench.quick ? [64, 16_384] : [64, 1024, 16_384, 262_144, 1_048_576];
  const puts: { name: string; points: { x: number; y: number }[] }[] = [];
  const gets: { name: string; points: { x: number; y: number }[] }[] = [];
  for (const backend of list) {
    const kv = await backend.open('value-sizes');
    const putPoints: { x: number; y: number }[] = [];
    const getPoints: { x: number; y: number }[] = [];
    for (const size of sizes) {
      if (size > kv.capabilities.maxValueBytes) {
        bench.notes.push(
          `${backend.name}: values of ${size} B exceed its maxValueBytes (${kv.capabilities.maxValueBytes} B) and were not measured`,
        );
        continue;
      }
      bench.progress.update(`value size ${size} B on ${backend.name}`);
      const value = new Uint8Array(size).fill(5);
      const ops = Math.max(20, Math.min(bench.size(2000, 100), Math.floor((bench.size(256, 16) * 1_048_576) / size)));
      const put = [];
      const get = [];
      for (let round = 0; round < bench.rounds; round++) {
        put.push(await timeOps((i) => kv.put(`v.${i % 100}`, value), ops, 1));
        get.push(await timeOps((i) => kv.get(`v.${i % 100}`), ops, 1));
      }
      putPoints.push({ x: size, y: stat(put).median });
      getPoints.push({ x: size, y: stat(get).median });
    }
    puts.push({ name: backend.name, points: putPoints });
    gets.push({ name: backend.name, points: getPoints });
    await kv.close();
  }
  bench.curve({ id: 'scaling.value-size.put', label: 'put, sequential, by value size', x: 'value bytes', unit: 'ops/s', series: puts });
  bench.curve({ id: 'scaling.value-size.get', label: 'get, sequential, by value size', x: 'value bytes', unit: 'ops/s', series: gets });
}

async function bucketSizes(bench: Bench, list: readonly Backend[]): Promise<void> {
  const cap = Number(process.env.WEFT_BENCH_MAX_KEYS ?? 1_000_000);
  const sizes = (bench.quick ? [1000, 2000] : [1000, 10_000, 100_000, 1_000_000]).filter((size) => size <= cap);
  type Series = { name: string; points: { x: number; y: number }[] }[];
  const series: { keys: Series; scan: Series; watch: Series } = { keys: [], scan: [], watch: [] };
  const value = new Uint8Array(64).fill(9);
  for (const backend of list) {
    const kv = await backend.open('bucket-sizes');
    const points = {
      keys: [] as { x: number; y: number }[],
      scan: [] as { x: number; y: number }[],
      watch: [] as { x: number; y: number }[],
    };
    let filled = 0;
    for (const size of sizes) {
      bench.progress.update(`bucket of ${size.toLocaleString('en-US')} keys on ${backend.name}: filling`);
      await timeOps((i) => kv.put(`b.${Math.floor(i / 1000)}.${i % 1000}`, value), size - filled, 100, filled);
      filled = size;
      bench.progress.update(`bucket of ${size.toLocaleString('en-US')} keys on ${backend.name}: listing`);
      let started = performance.now();
      let count = 0;
      for await (const _key of kv.keys()) count++;
      points.keys.push({ x: size, y: performance.now() - started });
      if (count !== size) throw new Error(`${backend.name} listed ${count} keys of ${size}`);
      started = performance.now();
      for await (const _entry of kv.scan()) count++;
      points.scan.push({ x: size, y: performance.now() - started });
      started = performance.now();
      for await (const event of kv.watch()) if (event.type === 'synced') break;
      points.watch.push({ x: size, y: performance.now() - started });
    }
    series.keys.push({ name: backend.name, points: points.keys });
    series.scan.push({ name: backend.name, points: points.scan });
    series.watch.push({ name: backend.name, points: points.watch });
    await kv.close();
  }
  bench.curve({
    id: 'scaling.bucket.keys',
    label: 'keys(): listing the whole bucket, by bucket size',
    x: 'keys',
    unit: 'ms',
    series: series.keys,
  });
  bench.curve({ id: 'scaling.bucket.scan', label: 'scan(): keys and values, by bucket size', x: 'keys', unit: 'ms', series: series.scan });
  bench.curve({
    id: 'scaling.bucket.watch',
    label: 'state-sync watch until synced, by bucket size',
    x: 'keys',
    unit: 'ms',
    series: series.watch,
  });
}

async function logSizes(bench: Bench): Promise<void> {
  const sizes = bench.quick ? [2000] : [10_000, 100_000, 1_000_000];
  const root = mkdtempSync(join(benchDir(), 'replay-'));
  const payload = new Uint8Array(256).fill(4);
  const points: { x: number; y: number }[] = [];
  let growth = 0;
  try {
    const log = await openEventLog({ dir: join(root, 'log'), sync: 'none' });
    for (const size of sizes) {
      bench.progress.update(`log of ${size.toLocaleString('en-US')} events: appending`);
      while (log.head < size) {
        const batch = Math.min(1000, size - log.head);
        await log.appendBatch(
          Array.from({ length: batch }, (_, index) => ({ entity: `e${(log.head + index) % 256}`, kind: 0x1001, payload })),
        );
      }
      await log.flush();
      bench.progress.update(`log of ${size.toLocaleString('en-US')} events: replaying`);
      (globalThis as { gc?: () => void }).gc?.();
      const before = process.memoryUsage().rss;
      let peak = before;
      const started = performance.now();
      let count = 0;
      for await (const _event of log.read()) {
        if (++count % 10_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
      }
      points.push({ x: size, y: count / ((performance.now() - started) / 1000) });
      growth = (peak - before) / 1_048_576;
    }
    await log.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  bench.curve({
    id: 'scaling.replay',
    label: 'replay throughput, by log size',
    x: 'events',
    unit: 'events/s',
    series: [{ name: 'eventlog', points }],
  });
  const largest = sizes.at(-1) as number;
  bench.record({
    id: 'scaling.replay-rss',
    label: `memory growth while replaying ${largest.toLocaleString('en-US')} events (${Math.round((largest * 256) / 1_048_576)} MiB of payloads)`,
    unit: 'MiB',
    higherIsBetter: false,
    weft: stat([growth]),
    target: { kind: 'value-at-most', value: 128 },
  });
}
