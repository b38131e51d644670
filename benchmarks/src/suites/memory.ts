/** The memory backend: ops/s per operation, and watch fan-out to 100 watchers. */
import { tracingChannel } from 'node:diagnostics_channel';
import { createMemoryKvServer, type KvStore, openMemoryKv, type Version } from '@weft/kv';
import type { Bench } from '../harness.js';
import { stat } from '../harness.js';

export async function memorySuite(bench: Bench): Promise<void> {
  const server = createMemoryKvServer();
  const kv = await openMemoryKv({ server, bucket: 'bench', history: 1 });
  const value = new Uint8Array(256).fill(7);
  const keys = 1000;
  const ops = bench.size(100_000, 2000);
  const versions: Version[] = [];
  for (let index = 0; index < keys; index++) versions.push(await kv.put(`k.${index}`, value));

  await bench.throughput({ id: 'memory.get', label: 'memory get', op: (i) => kv.get(`k.${i % keys}`), ops, concurrency: 1 });
  await bench.throughput({ id: 'memory.put', label: 'memory put', op: (i) => kv.put(`k.${i % keys}`, value), ops, concurrency: 1 });
  await bench.throughput({
    id: 'memory.create',
    label: 'memory create',
    op: (i) => kv.create(`c.${i}`, value),
    ops,
    concurrency: 1,
  });
  const current = new Map<string, Version>();
  await bench.throughput({
    id: 'memory.update',
    label: 'memory update',
    op: async (i) => {
      const key = `u.${i % keys}`;
      const previous = current.get(key) ?? (await kv.put(key, value));
      current.set(key, await kv.update(key, value, previous));
    },
    ops,
    concurrency: 1,
  });
  await bench.throughput({ id: 'memory.delete', label: 'memory delete', op: (i) => kv.delete(`c.${i}`), ops, concurrency: 1 });

  await tracingCost(bench, kv, value, keys, ops);

  const fanOutWriter = await openMemoryKv({ server, bucket: 'fan-out' });
  await fanOut(bench, fanOutWriter, server);
  await fanOutWriter.close();
  await kv.close();
}

/**
 * What the store front (argument checks and the tracing channel's
 * subscriber check) costs over calling the backend's driver directly, with
 * no subscriber: the no-cost claim of docs/guides/observability.md. Then the
 * same with a subscriber attached, which is what tracing costs when on.
 */
async function tracingCost(bench: Bench, kv: KvStore, value: Uint8Array, keys: number, ops: number): Promise<void> {
  // The driver under the handle (a protected field): the same call without the front.
  const driver = (kv as unknown as { driver: { get(key: string): Promise<unknown>; mutate(mutation: object): Promise<unknown> } }).driver;
  await bench.compare({
    id: 'memory.front.get',
    label: 'memory get through the store, no trace subscriber',
    weft: (i) => kv.get(`k.${i % keys}`),
    baseline: { name: "the backend's driver called directly", op: (i) => driver.get(`k.${i % keys}`) },
    ops,
    concurrency: 1,
  });
  await bench.compare({
    id: 'memory.front.put',
    label: 'memory put through the store, no trace subscriber',
    weft: (i) => kv.put(`k.${i % keys}`, value),
    baseline: { name: "the backend's driver called directly", op: (i) => driver.mutate({ kind: 'put', key: `k.${i % keys}`, value }) },
    ops,
    concurrency: 1,
  });
  const channel = tracingChannel('weft:kv:operation');
  // What tracing adds to an operation while nobody subscribes: reading `hasSubscribers` once, timed alone.
  const checks = 20_000_000;
  const costs: number[] = [];
  let sink = 0;
  for (let round = 0; round < bench.rounds; round++) {
    const started = performance.now();
    for (let index = 0; index < checks; index++) if (channel.hasSubscribers) sink++;
    costs.push(((performance.now() - started) * 1e6) / checks);
  }
  if (sink !== 0) throw new Error('a subscriber appeared');
  const putNs = 1e9 / (bench.figures.find((figure) => figure.id === 'memory.front.put')?.weft.median ?? 1);
  bench.record({
    id: 'memory.tracing.idle',
    label: `tracing with no subscriber: the check per operation (${((stat(costs).median / putNs) * 100).toFixed(3)}% of a memory put)`,
    unit: 'ns',
    higherIsBetter: false,
    weft: stat(costs),
  });
  const subscriber = { start() {}, end() {}, asyncStart() {}, asyncEnd() {}, error() {} };
  channel.subscribe(subscriber);
  try {
    await bench.compare({
      id: 'memory.traced.get',
      label: 'memory get through the store with a trace subscriber',
      weft: (i) => kv.get(`k.${i % keys}`),
      baseline: { name: "the backend's driver called directly", op: (i) => driver.get(`k.${i % keys}`) },
      ops,
      concurrency: 1,
    });
  } finally {
    channel.unsubscribe(subscriber);
  }
}

/** 100 watchers on one bucket: how many events per second reach all of them, and how long a put takes to reach the last one. */
async function fanOut(bench: Bench, writer: KvStore, server: ReturnType<typeof createMemoryKvServer>): Promise<void> {
  const watchers = 100;
  const puts = bench.size(2000, 100);
  // A bucket of its own: this measures delivery, not the initial listing of the other figures' keys.
  const handles = await Promise.all(Array.from({ length: watchers }, () => openMemoryKv({ server, bucket: 'fan-out' })));
  const seen = new Array<number>(watchers).fill(0);
  const controller = new AbortController();
  const runs = handles.map(async (handle, index) => {
    for await (const event of handle.watch({ prefixes: ['fan'], signal: controller.signal })) {
      if (event.type === 'put') seen[index] = (seen[index] ?? 0) + 1;
    }
  });
  const value = new Uint8Array(64);
  const rates: number[] = [];
  for (let round = 0; round < bench.rounds; round++) {
    const before = seen.map((count) => count);
    const started = performance.now();
    for (let index = 0; index < puts; index++) await writer.put(`fan.${index % 100}`, value);
    while (seen.some((count, watcher) => count - (before[watcher] ?? 0) < puts)) await new Promise((resolve) => setImmediate(resolve));
    rates.push((puts * watchers) / ((performance.now() - started) / 1000));
  }
  controller.abort();
  await Promise.allSettled(runs);
  await Promise.all(handles.map((handle) => handle.close()));
  bench.record({
    id: 'memory.fanout',
    label: `memory watch fan-out to ${watchers} watchers`,
    unit: 'events/s delivered',
    higherIsBetter: true,
    weft: stat(rates),
  });
}
