/**
 * The event log against the disk, its floors and its peers: appends of 256 B
 * and 4 KiB under each durable sync mode against raw `fs` writes of the same
 * bytes with the same fsync policy, and with `none` against the append floor
 * (eventlog-floors.ts); group commit with 1, 8 and 64 appenders; replay
 * against the replay floor; encrypted against plaintext appends; reads of
 * one entity; opening a log of 1,000,000 events; Emmett's in-memory store
 * and hypercore 11 as peers; the default XChaCha20-Poly1305 against the
 * implementation it did not pick for that length; blake3 via hash-wasm
 * against `@noble/hashes`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { getInMemoryEventStore } from '@event-driven-io/emmett';
import { blake3 } from '@noble/hashes/blake3.js';
import {
  type EventLog,
  type Hashers,
  type LogFileSystem,
  loadHashers,
  loadXChaCha,
  MemoryFileSystem,
  nodeXChaCha,
  openEventLog,
  type SyncMode,
} from '@weft/eventlog';
import Hypercore from 'hypercore';
import type { Bench } from '../harness.js';
import { stat } from '../harness.js';
import { benchDir } from './dirs.js';
import { appendFloor, replayFloor } from './eventlog-floors.js';

const kind = 0x1001;

export async function eventlogSuite(bench: Bench): Promise<void> {
  const root = mkdtempSync(join(benchDir(), 'eventlog-'));
  bench.notes.push(`log directories under ${benchDir()}`);
  try {
    const hashers = await loadHashers();
    await syncModes(bench, root, hashers);
    await groupCommit(bench, root);
    await encrypted(bench, root);
    await replay(bench, root, hashers);
    await openLarge(bench, root);
    await peers(bench, root);
    await primitives(bench, hashers);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

let dirs = 0;
async function freshLog(root: string, sync: SyncMode, encryption = false, fs?: LogFileSystem): Promise<EventLog> {
  return openEventLog({
    dir: join(root, `log-${dirs++}`),
    sync,
    ...(encryption ? { encryption: {} } : {}),
    ...(fs === undefined ? {} : { fs }),
  });
}

/** A raw file with the same fsync policy as a sync mode. */
async function rawFile(root: string, sync: SyncMode) {
  const handle = await open(join(root, `raw-${dirs++}`), 'w');
  let position = 0;
  let timer: NodeJS.Timeout | undefined;
  if (sync === 'interval') timer = setInterval(() => void handle.sync().catch(() => undefined), 100);
  return {
    async write(bytes: Uint8Array) {
      await handle.write(bytes, 0, bytes.length, position);
      position += bytes.length;
      if (sync === 'always' || sync === 'group') await handle.sync();
    },
    async close() {
      clearInterval(timer);
      await handle.close();
    },
  };
}

async function syncModes(bench: Bench, root: string, hashers: Hashers): Promise<void> {
  for (const size of [256, 4096]) {
    const payload = randomBytes(size);
    for (const sync of ['always', 'group', 'interval', 'none'] as const) {
      const durable = sync === 'always' || sync === 'group';
      const log = await freshLog(root, sync);
      // With `none` nothing is fsynced: the baseline is the append floor; otherwise raw writes with the same fsyncs.
      const file = sync === 'none' ? await appendFloor(join(root, `floor-${dirs++}`), hashers, size) : await rawFile(root, sync);
      const baseline = {
        name: sync === 'none' ? 'append floor: copy + CRC-32C + BLAKE3, one write per 256 KiB' : `raw fs write${durable ? ' + fsync' : ''}`,
        op: () => file.write(payload),
      };
      const ops = durable ? bench.size(500, 30) : bench.size(50_000, 1000);
      const targets = {
        'none-256': { kind: 'ratio-at-least', value: 0.6 } as const,
        'always-256': { kind: 'ratio-at-least', value: 0.8 } as const,
        'always-4096': { kind: 'ratio-at-least', value: 0.8 } as const,
      };
      const target = targets[`${sync}-${size}` as keyof typeof targets];
      const figure = await bench.compare({
        id: `eventlog.append.${sync}.${size}`,
        label: `eventlog append ${size} B, sync '${sync}'${durable ? ' (each awaited durable)' : ''}`,
        unit: 'appends/s',
        weft: async (i) => {
          const receipt = await log.append({ entity: `e${i % 64}`, kind, payload });
          if (durable) await receipt.durable;
        },
        baseline,
        ops,
        concurrency: 1,
        ...(target === undefined ? {} : { target }),
      });
      if (sync === 'none' && size === 256) {
        bench.record({
          id: 'eventlog.append.none.256.rate',
          label: "eventlog append 256 B, sync 'none': rate",
          unit: 'appends/s',
          higherIsBetter: true,
          weft: figure.weft,
          target: { kind: 'value-at-least', value: 150_000 },
        });
      }
      await log.close();
      await file.close();
    }
  }
}

async function groupCommit(bench: Bench, root: string): Promise<void> {
  const payload = randomBytes(256);
  for (const appenders of [1, 8, 64]) {
    const log = await freshLog(root, 'group');
    await bench.throughput({
      id: `eventlog.group.${appenders}`,
      label: `eventlog group commit, ${appenders} appender${appenders === 1 ? '' : 's'} (each awaited durable)`,
      unit: 'appends/s',
      op: async (i) => (await log.append({ entity: `e${i % 64}`, kind, payload })).durable,
      ops: bench.size(appenders * 200, appenders * 10),
      concurrency: appenders,
      ...(appenders === 64 ? { target: { kind: 'value-at-least', value: 75_000 } as const } : {}),
    });
    await log.close();
  }
}

async function encrypted(bench: Bench, root: string): Promise<void> {
  const payload = randomBytes(1024);
  const plain = await freshLog(root, 'none');
  const sealed = await freshLog(root, 'none', true);
  await bench.compare({
    id: 'eventlog.encrypted.1024',
    label: "eventlog encrypted 1 KiB appends, sync 'none'",
    unit: 'appends/s',
    weft: (i) => sealed.append({ entity: `e${i % 64}`, kind, payload }),
    baseline: { name: 'plaintext appends', op: (i) => plain.append({ entity: `e${i % 64}`, kind, payload }) },
    ops: bench.size(30_000, 500),
    concurrency: 1,
    target: { kind: 'ratio-at-least', value: 0.6 },
  });
  await plain.close();
  await sealed.close();
}

/** Entities of the replay log: 40 events each, and one entity ('wide') with every 50th event. */
const entityOf = (index: number) => (index % 50 === 49 ? 'wide' : `e${index % 4900}`);

async function replay(bench: Bench, root: string, hashers: Hashers): Promise<void> {
  const events = bench.size(200_000, 5000);
  const dir = join(root, `log-${dirs++}`);
  const log = await openEventLog({ dir, sync: 'none' });
  const payload = randomBytes(256);
  for (let index = 0; index < events; index += 1000) {
    await log.appendBatch(
      Array.from({ length: Math.min(1000, events - index) }, (_, offset) => ({ entity: entityOf(index + offset), kind, payload })),
    );
  }
  await log.flush();
  const names = readdirSync(dir)
    .filter((name) => name.startsWith('seg-'))
    .sort();
  const rates: number[] = [];
  const floors: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < bench.rounds; round++) {
    bench.progress.update(`replay ${events} events: round ${round + 1}/${bench.rounds}`);
    const measureWeft = async () => {
      const started = performance.now();
      let count = 0;
      for await (const _event of log.read()) count++;
      return count / ((performance.now() - started) / 1000);
    };
    const measureFloor = async () => {
      const started = performance.now();
      const count = await replayFloor(dir, names, hashers);
      return count / ((performance.now() - started) / 1000);
    };
    let rate: number;
    let floor: number;
    if (round % 2 === 0) {
      rate = await measureWeft();
      floor = await measureFloor();
    } else {
      floor = await measureFloor();
      rate = await measureWeft();
    }
    rates.push(rate);
    floors.push(floor);
    ratios.push(rate / floor);
  }
  const label = `eventlog replay of ${events.toLocaleString('en-US')} events of 256 B`;
  bench.record({
    id: 'eventlog.replay',
    label,
    unit: 'events/s',
    higherIsBetter: true,
    weft: stat(rates),
    baseline: { name: 'replay floor: 4 MiB reads, frame walk, CRC-32C', stat: stat(floors) },
    ratio: stat(ratios),
    target: { kind: 'ratio-at-least', value: 0.5 },
  });
  bench.record({
    id: 'eventlog.replay.rate',
    label: `${label}: rate`,
    unit: 'events/s',
    higherIsBetter: true,
    weft: stat(rates),
    target: { kind: 'value-at-least', value: 500_000 },
  });
  await entityReads(bench, log, events);
  await log.close();
}

/** One entity's events read through the index, against finding them by scanning the whole log. */
async function entityReads(bench: Bench, log: EventLog, events: number): Promise<void> {
  for (const entity of ['e17', 'wide']) {
    const count = log.sequenceOf(entity);
    const indexed: number[] = [];
    const scanned: number[] = [];
    const ratios: number[] = [];
    for (let round = 0; round < bench.rounds; round++) {
      bench.progress.update(`read entity ${entity}: round ${round + 1}/${bench.rounds}`);
      let started = performance.now();
      let found = 0;
      for await (const _event of log.readEntity(entity)) found++;
      const byIndex = performance.now() - started;
      started = performance.now();
      let matched = 0;
      for await (const event of log.read()) if (event.entity === entity) matched++;
      const byScan = performance.now() - started;
      if (found !== count || matched !== count) throw new Error(`entity ${entity}: ${found} and ${matched} events, expected ${count}`);
      indexed.push(byIndex);
      scanned.push(byScan);
      ratios.push(byIndex / byScan);
    }
    bench.record({
      id: `eventlog.entity.${entity === 'wide' ? 'wide' : 'narrow'}`,
      label: `eventlog read of one entity's ${count.toLocaleString('en-US')} events in a log of ${events.toLocaleString('en-US')} (${((stat(indexed).median * 1000) / count).toFixed(1)} µs an event)`,
      unit: 'ms',
      higherIsBetter: false,
      weft: stat(indexed),
      baseline: { name: 'scanning the whole log for them', stat: stat(scanned) },
      ratio: stat(ratios),
    });
  }
}

/** Opening a log of 1,000,000 events: the index (ids, entities, positions) is rebuilt from the segments. */
async function openLarge(bench: Bench, root: string): Promise<void> {
  const events = bench.size(1_000_000, 20_000);
  const dir = join(root, `log-${dirs++}`);
  const log = await openEventLog({ dir, sync: 'none' });
  const payload = randomBytes(256);
  for (let index = 0; index < events; index += 1000) {
    bench.progress.update(`writing a log of ${events} events: ${index}`);
    await log.appendBatch(Array.from({ length: 1000 }, (_, offset) => ({ entity: entityOf(index + offset), kind, payload })));
  }
  await log.close();
  const times: number[] = [];
  for (let round = 0; round < Math.min(bench.rounds, 3); round++) {
    bench.progress.update(`open ${events} events: round ${round + 1}`);
    const started = performance.now();
    const opened = await openEventLog({ dir, readOnly: true });
    times.push(performance.now() - started);
    if (opened.head !== events) throw new Error(`opened ${opened.head} events, expected ${events}`);
    await opened.close();
  }
  const median = stat(times).median;
  bench.record({
    id: 'eventlog.open',
    label: `eventlog open of a log of ${events.toLocaleString('en-US')} events of 256 B (${Math.round(events / (median / 1000)).toLocaleString('en-US')} events/s)`,
    unit: 'ms',
    higherIsBetter: false,
    weft: stat(times),
  });
  rmSync(dir, { recursive: true, force: true });
}

/** Peers: Emmett's in-memory event store against weft on its in-memory filesystem; hypercore 11 against weft on disk. */
async function peers(bench: Bench, root: string): Promise<void> {
  const payload = randomBytes(256);
  const memoryLog = await freshLog(root, 'none', false, new MemoryFileSystem());
  const emmett = getInMemoryEventStore();
  await bench.compare({
    id: 'eventlog.peer.emmett',
    label: "eventlog append 256 B on the in-memory filesystem, sync 'none'",
    unit: 'appends/s',
    weft: (i) => memoryLog.append({ entity: `e${i % 64}`, kind, payload }),
    baseline: {
      name: "Emmett 0.42's in-memory event store",
      op: (i) => emmett.appendToStream(`e${i % 64}`, [{ type: 'Appended', data: { payload } }]),
    },
    ops: bench.size(50_000, 1000),
    concurrency: 1,
    target: { kind: 'ratio-at-least', value: 1 },
  });
  await memoryLog.close();

  const diskLog = await freshLog(root, 'none');
  const core = new Hypercore(join(root, `hypercore-${dirs++}`));
  await core.ready();
  await bench.compare({
    id: 'eventlog.peer.hypercore.append',
    label: "eventlog append 256 B on disk, sync 'none'",
    unit: 'appends/s',
    weft: (i) => diskLog.append({ entity: `e${i % 64}`, kind, payload }),
    baseline: { name: 'hypercore 11 append (its RocksDB storage)', op: () => core.append(payload) },
    ops: bench.size(3000, 200),
    concurrency: 1,
  });
  await diskLog.flush();
  const replays: number[] = [];
  const peerReplays: number[] = [];
  const ratios: number[] = [];
  for (let round = 0; round < bench.rounds; round++) {
    bench.progress.update(`replay against hypercore: round ${round + 1}/${bench.rounds}`);
    let started = performance.now();
    let count = 0;
    for await (const _event of diskLog.read()) count++;
    const weftRate = count / ((performance.now() - started) / 1000);
    started = performance.now();
    let blocks = 0;
    for await (const _block of core.createReadStream()) blocks++;
    const peerRate = blocks / ((performance.now() - started) / 1000);
    replays.push(weftRate);
    peerReplays.push(peerRate);
    ratios.push(weftRate / peerRate);
  }
  bench.record({
    id: 'eventlog.peer.hypercore.replay',
    label: `eventlog replay of the same ${diskLog.head.toLocaleString('en-US')} events`,
    unit: 'events/s',
    higherIsBetter: true,
    weft: stat(replays),
    baseline: { name: 'hypercore 11 read stream', stat: stat(peerReplays) },
    ratio: stat(ratios),
  });
  await diskLog.close();
  await core.close();
}

async function primitives(bench: Bench, hashers: Hashers): Promise<void> {
  const key = randomBytes(32);
  const aad = randomBytes(64);
  const plaintext = randomBytes(1024);
  // The default cipher ('auto') against the implementation it did not pick for that length.
  const cipher = await loadXChaCha();
  const sodium = await loadXChaCha('sodium');
  for (const size of [1024, 16_384]) {
    const input = size === 1024 ? plaintext : randomBytes(size);
    const other = size === 1024 ? nodeXChaCha : sodium;
    await bench.compare({
      id: `crypto.xchacha.${size}`,
      label: `XChaCha20-Poly1305 seal ${size / 1024} KiB: the default cipher (${size === 1024 ? 'libsodium' : 'node:crypto'})`,
      weft: async () => cipher.seal(key, randomBytes(24), input, aad),
      baseline: { name: size === 1024 ? 'node:crypto' : 'libsodium', op: async () => other.seal(key, randomBytes(24), input, aad) },
      ops: bench.size(size === 1024 ? 50_000 : 10_000, 500),
      concurrency: 1,
    });
  }
  for (const size of [1024, 65_536]) {
    const data = randomBytes(size);
    await bench.compare({
      id: `crypto.blake3.${size}`,
      label: `blake3 of ${size === 1024 ? '1 KiB' : '64 KiB'}: hash-wasm`,
      weft: async () => hashers.blake3(data),
      baseline: { name: '@noble/hashes', op: async () => blake3(data) },
      ops: bench.size(size === 1024 ? 50_000 : 3000, 200),
      concurrency: 1,
    });
  }
}
