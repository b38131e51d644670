/**
 * Sync through real servers, against bounds measured in the same run:
 * node:crypto Ed25519 signing and verification (every changeset is signed
 * once and verified once), and pipelined raw writes and reads of values of
 * the same size through the same server. Figures: push and pull of 1-event
 * changesets (against the sign and verify bounds) and of 256-event
 * changesets (events/s), a new device from a snapshot against replaying
 * the changesets, and the heap while a device pulls a million events.
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { type EventLog, openEventLog } from '@weft/eventlog';
import type { KvStore } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { openRedisKv } from '@weft/kv-redis';
import { createIdentity, createLibrary, type DeviceIdentity, invitationOf, type LibraryConfig, openSync, type Sync } from '@weft/sync';
import { natsUnavailable, redisUnavailable, startNatsServer, startRedisServer } from '@weft/test-servers';
import { Redis } from 'ioredis';
import type { Bench, Stat } from '../harness.js';
import { stat } from '../harness.js';
import { benchDir } from './dirs.js';

interface Device {
  readonly log: EventLog;
  readonly kv: KvStore;
  readonly sync: Sync;
}

/** The size of a 1-event changeset with a 200-byte payload, as stored. */
const changesetBytes = 491;

/** Rates of the raw server, pipelined: the bound of any protocol that writes and reads each changeset once. */
interface RawBounds {
  readonly writes: Stat;
  readonly reads: Stat;
}

export async function syncSuite(bench: Bench): Promise<void> {
  const crypto = signatureBounds(bench);
  await logBounds(bench);
  const redisMissing = redisUnavailable();
  if (redisMissing === undefined) {
    const server = await startRedisServer({ persistence: 'none' });
    try {
      const raw = await redisBounds(bench, server.url);
      await throughStore(bench, 'redis', (bucket = 'sync-bench') => openRedisKv({ url: server.url, bucket }), crypto, raw);
    } finally {
      await server.stop();
    }
  } else bench.notes.push(`sync through Redis skipped: ${redisMissing}`);
  // The line users run today, whose batch direct gets serve a pull's reads; Debian's 2.9 where it is not built.
  const natsLine = natsUnavailable('current') === undefined ? 'current' : 'system';
  const natsMissing = natsUnavailable(natsLine);
  if (natsMissing === undefined) {
    const server = await startNatsServer({ line: natsLine });
    bench.notes.push(
      `nats: nats-server ${server.version}${natsLine === 'current' ? ' (a pull reads its changesets in batch direct gets)' : ' (one get per changeset: no batch direct get before 2.11)'}.`,
    );
    try {
      const raw = await natsBounds(bench, server.url);
      await throughStore(
        bench,
        'nats',
        (bucket = 'sync-bench') => openNatsKv({ servers: server.url, bucket, create: { history: 1 } }),
        crypto,
        raw,
      );
    } finally {
      await server.stop();
    }
  } else bench.notes.push(`sync through NATS skipped: ${natsMissing}`);
}

/** Ed25519 sign and verify rates of node:crypto on a changeset-sized message, one thread. */
function signatureBounds(bench: Bench): { sign: Stat; verify: Stat } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const message = new Uint8Array(changesetBytes - 64).fill(7);
  const signature = sign(null, message, privateKey);
  const rounds = bench.quick ? 2 : 5;
  const count = bench.size(5_000, 200);
  const signRates: number[] = [];
  const verifyRates: number[] = [];
  for (let round = 0; round < rounds; round++) {
    let started = performance.now();
    for (let index = 0; index < count; index++) sign(null, message, privateKey);
    signRates.push(count / ((performance.now() - started) / 1000));
    started = performance.now();
    for (let index = 0; index < count; index++) verify(null, message, publicKey, signature);
    verifyRates.push(count / ((performance.now() - started) / 1000));
  }
  const bounds = { sign: stat(signRates), verify: stat(verifyRates) };
  bench.record({
    id: 'sync.bound.sign',
    label: 'bound: node:crypto Ed25519 signatures',
    unit: 'signatures/s',
    higherIsBetter: true,
    weft: bounds.sign,
  });
  bench.record({
    id: 'sync.bound.verify',
    label: 'bound: node:crypto Ed25519 verifications',
    unit: 'verifications/s',
    higherIsBetter: true,
    weft: bounds.verify,
  });
  return bounds;
}

/**
 * The local log's side of a 256-event changeset: appending the events
 * encrypted (what a pull does) and reading them back decrypted (what a push
 * does), in batches of 256, `sync: 'none'`.
 */
async function logBounds(bench: Bench): Promise<void> {
  const root = mkdtempSync(join(benchDir(), 'sync-log-bound-'));
  try {
    const events = bench.size(100_000, 2_560);
    const payload = new Uint8Array(200).fill(3);
    const log = await openEventLog({ dir: join(root, 'log'), encryption: {}, sync: 'none' });
    let started = performance.now();
    for (let index = 0; index < events; index += 256) {
      await log.appendBatch(
        Array.from({ length: Math.min(256, events - index) }, (_, offset) => ({
          entity: `notes.${(index + offset) % 50}`,
          kind: 0x1001,
          payload,
        })),
      );
    }
    await log.flush();
    const appendRate = events / ((performance.now() - started) / 1000);
    started = performance.now();
    let read = 0;
    for await (const _event of log.read()) read++;
    const readRate = read / ((performance.now() - started) / 1000);
    await log.close();
    bench.record({
      id: 'sync.bound.log-append',
      label: 'bound: encrypted log appends of the same events, batches of 256',
      unit: 'events/s',
      higherIsBetter: true,
      weft: stat([appendRate]),
    });
    bench.record({
      id: 'sync.bound.log-read',
      label: 'bound: encrypted log reads of the same events',
      unit: 'events/s',
      higherIsBetter: true,
      weft: stat([readRate]),
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

async function redisBounds(bench: Bench, url: string): Promise<RawBounds> {
  const raw = new Redis(url);
  try {
    const value = Buffer.alloc(changesetBytes, 5);
    const count = bench.size(20_000, 500);
    const writes: number[] = [];
    const reads: number[] = [];
    for (let round = 0; round < (bench.quick ? 1 : 3); round++) {
      let started = performance.now();
      const setting = raw.pipeline();
      for (let index = 0; index < count; index++) setting.set(`bound.${round}.${index}`, value);
      await setting.exec();
      writes.push(count / ((performance.now() - started) / 1000));
      started = performance.now();
      const getting = raw.pipeline();
      for (let index = 0; index < count; index++) getting.getBuffer(`bound.${round}.${index}`);
      await getting.exec();
      reads.push(count / ((performance.now() - started) / 1000));
    }
    return recordRaw(bench, 'redis', 'pipelined SET', 'pipelined GET', { writes: stat(writes), reads: stat(reads) });
  } finally {
    raw.disconnect();
  }
}

async function natsBounds(bench: Bench, url: string): Promise<RawBounds> {
  const connection = await connect({ servers: url });
  try {
    const kv = await new Kvm(connection).create('sync-bound', { history: 1 });
    const value = new Uint8Array(changesetBytes).fill(5);
    const count = bench.size(10_000, 300);
    const inFlight = 256;
    const writes: number[] = [];
    const reads: number[] = [];
    for (let round = 0; round < (bench.quick ? 1 : 3); round++) {
      let started = performance.now();
      for (let start = 0; start < count; start += inFlight) {
        await Promise.all(
          Array.from({ length: Math.min(inFlight, count - start) }, (_, offset) => kv.put(`bound.${round}.${start + offset}`, value)),
        );
      }
      writes.push(count / ((performance.now() - started) / 1000));
      started = performance.now();
      for (let start = 0; start < count; start += inFlight) {
        await Promise.all(
          Array.from({ length: Math.min(inFlight, count - start) }, (_, offset) => kv.get(`bound.${round}.${start + offset}`)),
        );
      }
      reads.push(count / ((performance.now() - started) / 1000));
    }
    await kv.destroy();
    return recordRaw(bench, 'nats', `raw @nats-io/kv put, ${inFlight} in flight`, `raw @nats-io/kv get, ${inFlight} in flight`, {
      writes: stat(writes),
      reads: stat(reads),
    });
  } finally {
    await connection.close();
  }
}

function recordRaw(bench: Bench, name: string, writeLabel: string, readLabel: string, bounds: RawBounds): RawBounds {
  const unit = `values/s`;
  bench.record({
    id: `sync.${name}.bound.write`,
    label: `bound: ${name} ${writeLabel} of ${changesetBytes}-byte values`,
    unit,
    higherIsBetter: true,
    weft: bounds.writes,
  });
  bench.record({
    id: `sync.${name}.bound.read`,
    label: `bound: ${name} ${readLabel} of ${changesetBytes}-byte values`,
    unit,
    higherIsBetter: true,
    weft: bounds.reads,
  });
  return bounds;
}

/** `kv` as a store without commit: what sync does on one. */
function withoutCommit(kv: KvStore): KvStore {
  return new Proxy(kv, {
    get(target, property, receiver) {
      if (property === 'capabilities') return { ...target.capabilities, commit: false };
      const member = Reflect.get(target, property, receiver);
      return typeof member === 'function' ? member.bind(target) : member;
    },
  });
}

async function throughStore(
  bench: Bench,
  name: string,
  openStore: (bucket?: string) => Promise<KvStore>,
  crypto: { sign: Stat; verify: Stat },
  raw: RawBounds,
): Promise<void> {
  const root = mkdtempSync(join(benchDir(), `sync-${name}-`));
  const devices: Device[] = [];
  const open = async (
    identity: DeviceIdentity,
    library: LibraryConfig,
    dir: string,
    options: { bootstrap?: 'snapshot' | 'replay'; maxEventsPerChangeset?: number; bucket?: string } = {},
  ) => {
    const log = await openEventLog({ dir: join(root, dir), encryption: {}, sync: 'none' });
    const kv = await openStore(options.bucket);
    const sync = await openSync({
      log,
      kv,
      identity,
      library,
      live: false,
      maxEventsPerChangeset: options.maxEventsPerChangeset ?? 1,
      bootstrap: options.bootstrap ?? 'snapshot',
    });
    const device = { log, kv, sync };
    devices.push(device);
    return device;
  };
  try {
    const identities = Array.from({ length: 8 }, () => createIdentity());
    const [founder, reader, bulkWriter, bulkReader, fresh, replayer, millionWriter, millionReader] = identities as DeviceIdentity[] as [
      DeviceIdentity,
      DeviceIdentity,
      DeviceIdentity,
      DeviceIdentity,
      DeviceIdentity,
      DeviceIdentity,
      DeviceIdentity,
      DeviceIdentity,
    ];
    const setup = await openStore();
    const library = await createLibrary({ kv: setup, identity: founder, id: `bench-${name}` });
    await setup.close();
    const writer = await open(founder, library, 'writer');
    for (const identity of identities.slice(1)) await writer.sync.addMember(invitationOf(identity));

    // 1-event changesets: every changeset signed once and verified once.
    const changesets = bench.size(10_000, 100);
    await appendEvents(writer.log, changesets);
    bench.progress.update(`${name}: pushing ${changesets} 1-event changesets`);
    let started = performance.now();
    await writer.sync.syncOnce();
    const pushRate = changesets / ((performance.now() - started) / 1000);
    againstBound(
      bench,
      `sync.${name}.push`,
      `sync push of ${count(changesets)} 1-event changesets through ${name}`,
      'changesets/s',
      pushRate,
      'Ed25519 signing (node:crypto)',
      crypto.sign,
    );
    // The same push where the store's commit is hidden: changesets created, then the head moved, as on a store
    // without commit.
    const stepBucket = 'sync-bench-steps';
    const stepSetup = await openStore(stepBucket);
    const stepLibrary = await createLibrary({ kv: stepSetup, identity: replayer, id: `bench-${name}-steps` });
    await stepSetup.close();
    const stepLog = await openEventLog({ dir: join(root, 'step-writer'), encryption: {}, sync: 'none' });
    const stepKv = withoutCommit(await openStore(stepBucket));
    const stepSync = await openSync({
      log: stepLog,
      kv: stepKv,
      identity: replayer,
      library: stepLibrary,
      live: false,
      maxEventsPerChangeset: 1,
    });
    devices.push({ log: stepLog, kv: stepKv, sync: stepSync });
    await appendEvents(stepLog, changesets);
    bench.progress.update(`${name}: pushing ${changesets} 1-event changesets without commit`);
    started = performance.now();
    await stepSync.syncOnce();
    const stepRate = changesets / ((performance.now() - started) / 1000);
    bench.record({
      id: `sync.${name}.push-without-commit`,
      label: `sync push of ${count(changesets)} 1-event changesets through ${name}, the store's commit hidden (creates, then the head)`,
      unit: 'changesets/s',
      higherIsBetter: true,
      weft: stat([stepRate]),
      baseline: { name: 'the same push with commit', stat: stat([pushRate]) },
      ratio: stat([stepRate / pushRate]),
    });
    const pulling = await open(reader, library, 'reader');
    bench.progress.update(`${name}: pulling ${changesets} 1-event changesets`);
    started = performance.now();
    await pullAll(pulling, writer.log.head);
    const pullRate = changesets / ((performance.now() - started) / 1000);
    againstBound(
      bench,
      `sync.${name}.pull`,
      `sync pull of ${count(changesets)} 1-event changesets through ${name}`,
      'changesets/s',
      pullRate,
      'Ed25519 verification (node:crypto)',
      crypto.verify,
    );
    bench.notes.push(
      `${name}: the raw server's pipelined bounds for values of the same size are ${Math.round(raw.writes.median).toLocaleString('en-US')} writes/s and ${Math.round(raw.reads.median).toLocaleString('en-US')} reads/s.`,
    );

    // 256-event changesets, in a library (and bucket) of their own: in the shared one the bulk devices would also
    // pull the 10,000 1-event changesets above, and each figure would count their verification.
    const events = bench.size(100_000, 2_560);
    const bulkBucket = 'sync-bench-bulk';
    const bulkSetup = await openStore(bulkBucket);
    const bulkLibrary = await createLibrary({ kv: bulkSetup, identity: bulkWriter, id: `bench-${name}-bulk` });
    await bulkSetup.close();
    const bulk = await open(bulkWriter, bulkLibrary, 'bulk-writer', { maxEventsPerChangeset: 256, bucket: bulkBucket });
    await bulk.sync.addMember(invitationOf(bulkReader));
    await appendEvents(bulk.log, events);
    bench.progress.update(`${name}: pushing ${events} events in 256-event changesets`);
    started = performance.now();
    await bulk.sync.syncOnce();
    eventsRate(
      bench,
      `sync.${name}.push-256`,
      `sync push of ${count(events)} events in 256-event changesets through ${name}`,
      events / ((performance.now() - started) / 1000),
      name === 'redis',
    );
    const bulkPulling = await open(bulkReader, bulkLibrary, 'bulk-reader', { bootstrap: 'replay', bucket: bulkBucket });
    bench.progress.update(`${name}: pulling ${events} events in 256-event changesets`);
    started = performance.now();
    await pullAll(bulkPulling, events);
    eventsRate(
      bench,
      `sync.${name}.pull-256`,
      `sync pull of ${count(events)} events in 256-event changesets through ${name}`,
      events / ((performance.now() - started) / 1000),
      name === 'redis',
    );

    // A new device: the snapshot against replaying every changeset.
    bench.progress.update(`${name}: bootstrapping`);
    await writer.sync.syncOnce();
    await writer.sync.publishSnapshot();
    const total = writer.log.head;
    started = performance.now();
    await pullAll(await open(fresh, library, 'fresh', { bootstrap: 'snapshot' }), total);
    const snapshotMs = performance.now() - started;
    started = performance.now();
    await pullAll(await open(replayer, library, 'replayer', { bootstrap: 'replay' }), total);
    const replayMs = performance.now() - started;
    bench.record({
      id: `sync.${name}.bootstrap`,
      label: `new device catches up on ${count(total)} events through ${name}: from a snapshot`,
      unit: 'ms',
      higherIsBetter: false,
      weft: stat([snapshotMs]),
      baseline: { name: 'replaying every changeset', stat: stat([replayMs]) },
      ratio: stat([snapshotMs / replayMs]),
    });

    // The heap while a device pulls a million events.
    const million = bench.size(1_000_000, 5_120);
    const big = await open(millionWriter, library, 'million-writer', { maxEventsPerChangeset: 256 });
    await appendEvents(big.log, million);
    bench.progress.update(`${name}: pushing ${million} events`);
    await big.sync.syncOnce();
    const bigReader = await open(millionReader, library, 'million-reader', { bootstrap: 'replay' });
    bench.progress.update(`${name}: pulling ${million} events`);
    (globalThis as { gc?: () => void }).gc?.();
    const before = process.memoryUsage().heapUsed;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().heapUsed);
    }, 50);
    try {
      await pullAll(bigReader, million);
    } finally {
      clearInterval(sampler);
    }
    const growthMb = (peak - before) / 1_048_576;
    bench.record({
      id: `sync.${name}.pull-heap`,
      label: `heap growth while a device pulls ${count(million)} events through ${name} (${Math.round((million * 200) / 1_048_576)} MiB of payloads)`,
      unit: 'MiB',
      higherIsBetter: false,
      weft: stat([growthMb]),
      extra: { bytesPerEvent: Math.round((peak - before) / million) },
    });
  } finally {
    for (const device of devices) {
      await device.sync.close();
      await device.log.close();
      await device.kv.close();
    }
    rmSync(root, { recursive: true, force: true });
  }
}

const count = (value: number) => value.toLocaleString('en-US');

async function appendEvents(log: EventLog, events: number): Promise<void> {
  const payload = new Uint8Array(200).fill(3);
  for (let index = 0; index < events; index += 1000) {
    await log.appendBatch(
      Array.from({ length: Math.min(1000, events - index) }, (_, offset) => ({
        entity: `notes.${(index + offset) % 50}`,
        kind: 0x1001,
        payload,
      })),
    );
  }
  await log.flush();
}

function againstBound(bench: Bench, id: string, label: string, unit: string, rate: number, boundName: string, bound: Stat): void {
  bench.record({
    id,
    label,
    unit,
    higherIsBetter: true,
    weft: stat([rate]),
    baseline: { name: boundName, stat: bound },
    ratio: stat([rate / bound.median]),
    target: { kind: 'ratio-at-least', value: 0.5 },
  });
}

function eventsRate(bench: Bench, id: string, label: string, rate: number, targeted: boolean): void {
  bench.record({
    id,
    label,
    unit: 'events/s',
    higherIsBetter: true,
    weft: stat([rate]),
    ...(targeted ? { target: { kind: 'value-at-least' as const, value: 50_000 } } : {}),
  });
}

/** Syncs until a round brings nothing new and the device has applied every other device's head. */
async function pullAll(device: Device, events: number): Promise<void> {
  for (let rounds = 0; rounds < 10_000; rounds++) {
    const { pulled } = await device.sync.syncOnce();
    const lagging = Object.values(device.sync.status().devices).some((remote) => remote.lag > 0);
    if (pulled === 0 && !lagging) return;
  }
  throw new Error(`the device did not catch up: ${device.log.head} events of about ${events}`);
}
