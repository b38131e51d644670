/**
 * Sync through real servers: push and pull of N changesets (one event each)
 * through Redis and NATS, and a new device's bootstrap from a snapshot
 * against replaying every changeset.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type EventLog, openEventLog } from '@weft/eventlog';
import type { KvStore } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { openRedisKv } from '@weft/kv-redis';
import { createIdentity, createLibrary, type DeviceIdentity, invitationOf, type LibraryConfig, openSync, type Sync } from '@weft/sync';
import { natsUnavailable, redisUnavailable, startNatsServer, startRedisServer } from '@weft/test-servers';
import type { Bench } from '../harness.js';
import { stat } from '../harness.js';
import { benchDir } from './dirs.js';

interface Device {
  readonly log: EventLog;
  readonly kv: KvStore;
  readonly sync: Sync;
}

export async function syncSuite(bench: Bench): Promise<void> {
  const redisMissing = redisUnavailable();
  if (redisMissing === undefined) {
    const server = await startRedisServer({ persistence: 'none' });
    try {
      await throughStore(bench, 'redis', () => openRedisKv({ url: server.url, bucket: 'sync-bench' }));
    } finally {
      await server.stop();
    }
  } else bench.notes.push(`sync through Redis skipped: ${redisMissing}`);
  const natsMissing = natsUnavailable();
  if (natsMissing === undefined) {
    const server = await startNatsServer();
    try {
      await throughStore(bench, 'nats', () => openNatsKv({ servers: server.url, bucket: 'sync-bench', create: { history: 1 } }));
    } finally {
      await server.stop();
    }
  } else bench.notes.push(`sync through NATS skipped: ${natsMissing}`);
}

async function throughStore(bench: Bench, name: string, openStore: () => Promise<KvStore>): Promise<void> {
  const root = mkdtempSync(join(benchDir(), `sync-${name}-`));
  const changesets = bench.size(10_000, 100);
  const devices: Device[] = [];
  const open = async (identity: DeviceIdentity, library: LibraryConfig, dir: string, bootstrap: 'snapshot' | 'replay' = 'snapshot') => {
    const log = await openEventLog({ dir: join(root, dir), encryption: {}, sync: 'none' });
    const kv = await openStore();
    const device = { log, kv, sync: await openSync({ log, kv, identity, library, live: false, maxEventsPerChangeset: 1, bootstrap }) };
    devices.push(device);
    return device;
  };
  try {
    const identities = Array.from({ length: 4 }, () => createIdentity());
    const [founder, reader, fresh, replayer] = identities as [DeviceIdentity, DeviceIdentity, DeviceIdentity, DeviceIdentity];
    const setup = await openStore();
    const library = await createLibrary({ kv: setup, identity: founder, id: `bench-${name}` });
    await setup.close();
    const writer = await open(founder, library, 'writer');
    for (const identity of [reader, fresh, replayer]) await writer.sync.addMember(invitationOf(identity));

    const payload = new Uint8Array(200).fill(3);
    for (let index = 0; index < changesets; index += 500) {
      await writer.log.appendBatch(
        Array.from({ length: Math.min(500, changesets - index) }, (_, offset) => ({
          entity: `notes.${(index + offset) % 50}`,
          kind: 0x1001,
          payload,
        })),
      );
    }
    await writer.log.flush();

    bench.progress.update(`${name}: pushing ${changesets} changesets`);
    let started = performance.now();
    await writer.sync.syncOnce();
    const pushSeconds = (performance.now() - started) / 1000;
    record(
      bench,
      `sync.${name}.push`,
      `sync push of ${changesets.toLocaleString('en-US')} changesets through ${name}`,
      changesets / pushSeconds,
    );

    const pulling = await open(reader, library, 'reader');
    bench.progress.update(`${name}: pulling ${changesets} changesets`);
    started = performance.now();
    await pullAll(pulling, writer.log.head);
    const pullSeconds = (performance.now() - started) / 1000;
    record(
      bench,
      `sync.${name}.pull`,
      `sync pull of ${changesets.toLocaleString('en-US')} changesets through ${name}`,
      changesets / pullSeconds,
    );

    bench.progress.update(`${name}: bootstrapping`);
    await writer.sync.publishSnapshot();
    started = performance.now();
    const snapshotted = await open(fresh, library, 'fresh', 'snapshot');
    await pullAll(snapshotted, writer.log.head);
    const snapshotMs = performance.now() - started;
    started = performance.now();
    const replaying = await open(replayer, library, 'replayer', 'replay');
    await pullAll(replaying, writer.log.head);
    const replayMs = performance.now() - started;
    bench.record({
      id: `sync.${name}.bootstrap`,
      label: `new device catches up on ${changesets.toLocaleString('en-US')} changesets through ${name}: from a snapshot`,
      unit: 'ms',
      higherIsBetter: false,
      weft: stat([snapshotMs]),
      baseline: { name: 'replaying every changeset', stat: stat([replayMs]) },
      ratio: stat([snapshotMs / replayMs]),
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

/** Syncs until a round brings nothing new and the device has applied every other device's head. */
async function pullAll(device: Device, events: number): Promise<void> {
  for (let rounds = 0; rounds < 10_000; rounds++) {
    const { pulled } = await device.sync.syncOnce();
    const lagging = Object.values(device.sync.status().devices).some((remote) => remote.lag > 0);
    if (pulled === 0 && !lagging) return;
  }
  throw new Error(`the device did not catch up: ${device.log.head} events of about ${events}`);
}

function record(bench: Bench, id: string, label: string, rate: number): void {
  bench.record({ id, label, unit: 'changesets/s', higherIsBetter: true, weft: stat([rate]) });
}
