/**
 * The event log against the disk and the crypto libraries: appends of 256 B
 * and 4 KiB under each sync mode against raw `fs` writes of the same bytes
 * with the same fsync policy; group commit with 1, 8 and 64 appenders;
 * replay; encrypted against plaintext appends; the XChaCha fast path against
 * `@noble/ciphers`; blake3 via hash-wasm against `@noble/hashes`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { blake3 } from '@noble/hashes/blake3.js';
import { type EventLog, loadHashers, nobleXChaCha, nodeXChaCha, openEventLog, type SyncMode } from '@weft/eventlog';
import type { Bench } from '../harness.js';
import { stat } from '../harness.js';
import { benchDir } from './dirs.js';

const kind = 0x1001;

export async function eventlogSuite(bench: Bench): Promise<void> {
  const root = mkdtempSync(join(benchDir(), 'eventlog-'));
  bench.notes.push(`log directories under ${benchDir()}`);
  try {
    await syncModes(bench, root);
    await groupCommit(bench, root);
    await encrypted(bench, root);
    await replay(bench, root);
    await primitives(bench);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

let dirs = 0;
async function freshLog(root: string, sync: SyncMode, encryption = false): Promise<EventLog> {
  return openEventLog({ dir: join(root, `log-${dirs++}`), sync, ...(encryption ? { encryption: {} } : {}) });
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

async function syncModes(bench: Bench, root: string): Promise<void> {
  for (const size of [256, 4096]) {
    const payload = randomBytes(size);
    for (const sync of ['always', 'group', 'interval', 'none'] as const) {
      const durable = sync === 'always' || sync === 'group';
      const log = await freshLog(root, sync);
      const file = await rawFile(root, sync);
      const ops = durable ? bench.size(500, 30) : bench.size(50_000, 1000);
      const targets = {
        'none-256': { kind: 'value-at-least', value: 150_000 } as const,
        'always-256': { kind: 'ratio-at-least', value: 0.8 } as const,
        'always-4096': { kind: 'ratio-at-least', value: 0.8 } as const,
      };
      const target = targets[`${sync}-${size}` as keyof typeof targets];
      await bench.compare({
        id: `eventlog.append.${sync}.${size}`,
        label: `eventlog append ${size} B, sync '${sync}'${durable ? ' (each awaited durable)' : ''}`,
        unit: 'appends/s',
        weft: async (i) => {
          const receipt = await log.append({ entity: `e${i % 64}`, kind, payload });
          if (durable) await receipt.durable;
        },
        baseline: { name: `raw fs write${durable ? ' + fsync' : ''}`, op: () => file.write(payload) },
        ops,
        concurrency: 1,
        ...(target === undefined ? {} : { target }),
      });
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
    target: { kind: 'ratio-at-least', value: 0.7 },
  });
  await plain.close();
  await sealed.close();
}

async function replay(bench: Bench, root: string): Promise<void> {
  const events = bench.size(200_000, 5000);
  const log = await freshLog(root, 'none');
  const payload = randomBytes(256);
  for (let index = 0; index < events; index += 1000) {
    await log.appendBatch(
      Array.from({ length: Math.min(1000, events - index) }, (_, offset) => ({ entity: `e${(index + offset) % 64}`, kind, payload })),
    );
  }
  await log.flush();
  const rates: number[] = [];
  for (let round = 0; round < bench.rounds; round++) {
    bench.progress.update(`replay ${events} events: round ${round + 1}/${bench.rounds}`);
    const started = performance.now();
    let count = 0;
    for await (const _event of log.read()) count++;
    rates.push(count / ((performance.now() - started) / 1000));
  }
  await log.close();
  bench.record({
    id: 'eventlog.replay',
    label: `eventlog replay of ${events.toLocaleString('en-US')} events of 256 B`,
    unit: 'events/s',
    higherIsBetter: true,
    weft: stat(rates),
    target: { kind: 'value-at-least', value: 500_000 },
  });
}

async function primitives(bench: Bench): Promise<void> {
  const key = randomBytes(32);
  const aad = randomBytes(64);
  const plaintext = randomBytes(1024);
  await bench.compare({
    id: 'crypto.xchacha.1024',
    label: 'XChaCha20-Poly1305 seal 1 KiB: node:crypto fast path',
    weft: async () => nodeXChaCha.seal(key, randomBytes(24), plaintext, aad),
    baseline: { name: '@noble/ciphers', op: async () => nobleXChaCha.seal(key, randomBytes(24), plaintext, aad) },
    ops: bench.size(50_000, 500),
    concurrency: 1,
  });
  const hashers = await loadHashers();
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
