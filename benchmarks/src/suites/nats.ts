/**
 * NATS: weft against raw `@nats-io/kv` on the same bucket of a spawned
 * server: get, put, create and update, sequential and with 100 in flight;
 * get and put also against the raw JetStream API underneath (a direct get,
 * the stream's message get that weft sends, a plain publish), the fastest
 * of them taken for the target;
 * commit of 1, 8 and 64 puts against a raw atomic batch (2.12+);
 * put-to-watch-event latency against a raw `@nats-io/kv` watch; a scan of
 * 100 keys with their values against a raw `@nats-io/kv` watch of last
 * values (on 2.11+ weft reads them in batch direct gets); on the current
 * line, what `sync_interval: always` costs a put.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm, KvWatchInclude } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import type { KvStore, Version } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { type NatsLine, natsUnavailable, startNatsServer } from '@weft/test-servers';
import type { Bench } from '../harness.js';
import { keyPool } from './redis.js';
import { watchLatency } from './watch-latency.js';

export const natsMissing = (line: NatsLine) => () => natsUnavailable(line);

/** The suite on one server line: the system one (Debian's 2.9) or the pinned current one (2.15). */
export const natsSuite = (line: NatsLine) => async (bench: Bench) => natsSuiteOn(line, bench);

async function natsSuiteOn(line: NatsLine, bench: Bench): Promise<void> {
  const server = await startNatsServer({ line });
  const kv = await openNatsKv({ servers: server.url, bucket: 'bench', create: { history: 1 } });
  const connection = await connect({ servers: server.url });
  const raw = await new Kvm(connection).open('bench');
  const js = jetstream(connection);
  const manager = await jetstreamManager(connection);
  try {
    bench.notes.push(`nats-server ${server.version} on loopback, file storage`);
    const value = new Uint8Array(256).fill(7);
    const keys = 1000;
    for (let index = 0; index < keys; index++) await kv.put(`k.${index}`, value);

    const weftVersions = new Map<string, Version>();
    const weftUpdate = async (key: string) => {
      const expected = weftVersions.get(key) ?? (await kv.put(key, value));
      weftVersions.set(key, await kv.update(key, value, expected));
    };
    const rawRevisions = new Map<string, number>();
    const rawUpdate = async (key: string) => {
      const expected = rawRevisions.get(key) ?? (await raw.put(key, value));
      rawRevisions.set(key, await raw.update(key, value, expected));
    };
    let created = 0;

    const ops = bench.size(3000, 200);
    for (const [concurrency, mode] of [
      [1, 'sequential'],
      [100, '100 in flight'],
    ] as const) {
      const scaled = concurrency === 1 ? ops : ops * 4;
      await bench.contest({
        id: `nats.get.${concurrency}`,
        label: `nats get, ${mode}`,
        weft: (i) => kv.get(`k.${i % keys}`),
        contenders: [
          { name: 'raw @nats-io/kv', op: (i) => raw.get(`k.${i % keys}`), kind: 'raw' },
          {
            name: 'raw JetStream direct get',
            op: (i) => manager.direct.getMessage('KV_bench', { last_by_subj: `$KV.bench.k.${i % keys}` }),
            kind: 'raw',
          },
          {
            name: 'raw JetStream message get (the API weft uses)',
            op: (i) => manager.streams.getMessage('KV_bench', { last_by_subj: `$KV.bench.k.${i % keys}` }),
            kind: 'raw',
          },
        ],
        ops: scaled,
        concurrency,
        target: { kind: 'ratio-at-least', value: 0.9 },
      });
      await bench.contest({
        id: `nats.put.${concurrency}`,
        label: `nats put, ${mode}`,
        weft: (i) => kv.put(`k.${i % keys}`, value),
        contenders: [
          { name: 'raw @nats-io/kv', op: (i) => raw.put(`k.${i % keys}`, value), kind: 'raw' },
          { name: 'raw JetStream publish', op: (i) => js.publish(`$KV.bench.k.${i % keys}`, value), kind: 'raw' },
        ],
        ops: scaled,
        concurrency,
        target: { kind: 'ratio-at-least', value: 0.9 },
      });
      await bench.compare({
        id: `nats.create.${concurrency}`,
        label: `nats create, ${mode}`,
        weft: () => kv.create(`c.weft.${created++}`, value),
        baseline: { name: 'raw @nats-io/kv', op: () => raw.create(`c.raw.${created++}`, value) },
        ops: scaled,
        concurrency,
      });
      const weftKeys = keyPool(`u${concurrency}.weft.`, concurrency);
      const rawKeys = keyPool(`u${concurrency}.raw.`, concurrency);
      await bench.compare({
        id: `nats.update.${concurrency}`,
        label: `nats update, ${mode}`,
        weft: () => weftKeys(weftUpdate),
        baseline: { name: 'raw @nats-io/kv', op: () => rawKeys(rawUpdate) },
        ops: scaled,
        concurrency,
      });
    }

    if (kv.capabilities.commit !== false) {
      // commit against a raw atomic batch of the same puts on the same stream (@nats-io/jetstream's batch API).
      for (const size of [1, 8, 64]) {
        const keysOf = (i: number, side: string) => Array.from({ length: size }, (_, index) => `c${size}.${side}.${i % 50}.${index}`);
        await bench.compare({
          id: `nats.commit.${size}`,
          label: `nats commit of ${size} put${size === 1 ? '' : 's'}, 16 in flight`,
          weft: (i) => kv.commit(keysOf(i, 'weft').map((key) => ({ op: 'put' as const, key, value }))),
          baseline: {
            name: size === 1 ? 'raw @nats-io/kv put' : 'raw atomic batch (@nats-io/jetstream)',
            op: async (i) => {
              const subjects = keysOf(i, 'raw').map((key) => `$KV.bench.${key}`);
              if (size === 1) return raw.put(keysOf(i, 'raw')[0] as string, value);
              const [first, ...rest] = subjects as [string, ...string[]];
              const last = rest.pop() as string;
              const batch = await js.startBatch(first, value);
              for (const subject of rest) batch.add(subject, value);
              return batch.commit(last, value);
            },
          },
          ops: bench.size(1000, 50),
          concurrency: 16,
          unit: 'commits/s',
        });
      }
    } else bench.notes.push(`nats-server ${server.version}: no commit (atomic batches need 2.12), so no commit figures`);

    // Listing 100 keys with their values: what a user of @nats-io/kv does is a watch of last values until none is
    // pending.
    for (let index = 0; index < 100; index++) await kv.put(`list.${index}`, value);
    await bench.compare({
      id: 'nats.scan-100',
      label: 'nats scan of 100 keys with their values, sequential',
      weft: async () => {
        let listed = 0;
        for await (const _entry of kv.scan('list')) listed++;
        if (listed !== 100) throw new Error(`weft listed ${listed} keys of 100`);
      },
      baseline: {
        name: 'raw @nats-io/kv watch of last values',
        op: async () => {
          const watch = await raw.watch({ key: 'list.>', include: KvWatchInclude.LastValue });
          let listed = 0;
          for await (const entry of watch) {
            listed++;
            if (entry.delta === 0) break;
          }
          watch.stop();
          if (listed !== 100) throw new Error(`the raw watch listed ${listed} keys of 100`);
        },
      },
      // 2.9 filters a prefix on its parent and the client the rest: there a scan reads the whole bucket. Each raw
      // watch leaves an ordered consumer behind for seconds, and 2.15 allows 1,000 consumers per stream by default.
      ops: bench.size(line === 'current' ? 100 : 40, 20),
      concurrency: 1,
    });

    const rawWatch = (await raw.watch({ key: 'rawlatency.>', include: KvWatchInclude.UpdatesOnly }))[Symbol.asyncIterator]();
    let counter = 0;
    await watchLatency(bench, {
      id: 'nats.watch-latency',
      label: 'nats put-to-watch-event latency',
      kv,
      samples: bench.size(1000, 60),
      baseline: {
        name: 'raw @nats-io/kv watch',
        sample: async () => {
          const key = `rawlatency.${counter++ % 16}`;
          const started = performance.now();
          const arrival = rawWatch.next();
          await raw.put(key, value);
          await arrival;
          return performance.now() - started;
        },
      },
    });
    await rawWatch.return?.(undefined);
    if (line === 'current') await syncAlwaysCost(bench, kv, value);
  } finally {
    await kv.close();
    await connection.close();
    await server.stop();
  }
}

/**
 * What fsync before every acknowledgement costs: weft's put on a server
 * configured with `jetstream { sync_interval: always }` against the same put
 * on the default server (which fsyncs every two minutes), interleaved.
 */
async function syncAlwaysCost(bench: Bench, lazy: KvStore, value: Uint8Array): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-nats-sync-'));
  const conf = join(dir, 'sync-always.conf');
  writeFileSync(conf, 'jetstream { sync_interval: always }\n');
  const server = await startNatsServer({ line: 'current', args: ['-c', conf] });
  const always = await openNatsKv({ servers: server.url, bucket: 'bench', create: { history: 1 } });
  try {
    bench.notes.push(
      'nats sync_interval: a second server of the current line with `jetstream { sync_interval: always }` (fsync before each acknowledgement) against the default (every two minutes)',
    );
    for (const [concurrency, mode] of [
      [1, 'sequential'],
      [100, '100 in flight'],
    ] as const) {
      await bench.compare({
        id: `nats.put-sync-always.${concurrency}`,
        label: `nats put with sync_interval: always, ${mode}`,
        weft: (i) => always.put(`k.${i % 1000}`, value),
        baseline: { name: 'weft put, default sync_interval', op: (i) => lazy.put(`k.${i % 1000}`, value) },
        ops: bench.size(concurrency === 1 ? 1000 : 4000, 100),
        concurrency,
      });
    }
  } finally {
    await always.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
