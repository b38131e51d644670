/**
 * Crash sweeps of sync on the simulated filesystem: a device's pull, and
 * its push, is cut at every filesystem operation index; the device
 * "reboots" to its durable state (keeping a seeded part of unsynced
 * writes), reopens and syncs until caught up. At every cut no event is
 * lost, none is duplicated, and no event imported from another device is
 * ever pushed again as this device's own.
 */
import { type EventLog, MemoryFileSystem, openEventLog, SimulatedFileSystem } from '@weft/eventlog';
import { createMemoryKvServer, openMemoryKv } from '@weft/kv';
import { openSync, type Sync } from '@weft/sync';
import { describe, expect, it } from 'vitest';
import { bytes, kind, makeLibrary, pushedBy } from './helpers.js';

const seedBase = Number(process.env.WEFT_SEED ?? 1);
const batch = { batchChangesets: 2, maxEventsPerChangeset: 1 };

async function idsOf(log: EventLog): Promise<string[]> {
  const ids: string[] = [];
  for await (const event of log.read()) ids.push(event.id);
  return ids;
}

type Phase = 'pull' | 'push';

/**
 * One run: a peer pushes six changesets, the victim (on `fs`) has pushed
 * three events of its own; then the phase runs with the crash point set.
 * Returns what the checks need.
 */
async function run(phase: Phase, cut: number | undefined, fs: SimulatedFileSystem) {
  const server = createMemoryKvServer();
  const { identities, library } = makeLibrary(2);
  const [peerIdentity, victimIdentity] = identities as [(typeof identities)[0], (typeof identities)[0]];
  const openKv = () => openMemoryKv({ server, bucket: 'lib' });
  const peerLog = await openEventLog({ dir: '/peer', fs: new MemoryFileSystem(), encryption: {} });
  const peer = await openSync({ log: peerLog, kv: await openKv(), identity: peerIdentity, library, live: false, ...batch });
  const openVictim = async (): Promise<{ log: EventLog; sync: Sync }> => {
    const log = await openEventLog({ dir: '/victim', fs, sync: 'group', encryption: {} });
    return { log, sync: await openSync({ log, kv: await openKv(), identity: victimIdentity, library, live: false, ...batch }) };
  };
  let victim = await openVictim();
  const own: string[] = [];
  const appendOwn = async (count: number) => {
    for (let n = 0; n < count; n++) {
      const receipt = await victim.log.append({ entity: 'victim', kind, payload: bytes(`victim-${own.length}`) });
      own.push(receipt.events[0]?.id as string);
    }
  };
  await appendOwn(3);
  await victim.sync.syncOnce();
  const peerIds: string[] = [];
  for (let n = 0; n < 6; n++) {
    const receipt = await peerLog.append({ entity: 'peer', kind, payload: bytes(`peer-${n}`) });
    peerIds.push(receipt.events[0]?.id as string);
    if (n % 2 === 1) await peer.syncOnce();
  }
  if (phase === 'push') await appendOwn(4);
  const before = fs.operations;
  if (cut !== undefined) fs.crashAt(before + cut);
  let crashed = false;
  try {
    await victim.sync.syncOnce();
  } catch (error) {
    if (!fs.crashed) throw error;
    crashed = true;
  }
  const used = fs.operations - before;
  if (crashed || fs.crashed) {
    crashed = true;
    await victim.sync.close({ timeoutMs: 0 }).catch(() => undefined);
    await victim.log.close().catch(() => undefined);
    fs.crash(seedBase * 100_003 + (cut ?? 0));
    victim = await openVictim();
  }
  // After the restart: one more own event, then sync until caught up on both sides.
  await appendOwn(1);
  for (let round = 0; round < 4; round++) {
    await victim.sync.syncOnce();
    await peer.syncOnce();
  }
  const durableOwn = own.filter((id) => victim.log.has(id));
  const raw = await openKv();
  const result = {
    crashed,
    used,
    victimIds: await idsOf(victim.log),
    peerIdsSeen: await idsOf(peerLog),
    pushed: await pushedBy(raw, victimIdentity.deviceId, library.key as Uint8Array),
    durableOwn,
    peerIds,
  };
  await raw.close();
  await victim.sync.close();
  await victim.log.close();
  await peer.close();
  await peerLog.close();
  return result;
}

function check(label: string, outcome: Awaited<ReturnType<typeof run>>): void {
  const { victimIds, pushed, peerIds, durableOwn, peerIdsSeen } = outcome;
  expect(new Set(victimIds).size, `${label}: an event is in the victim's log twice`).toBe(victimIds.length);
  for (const id of peerIds) expect(victimIds, `${label}: the peer's ${id} was lost`).toContain(id);
  const repushed = pushed.filter((id) => peerIds.includes(id));
  expect(repushed, `${label}: events imported from the peer were pushed again as the victim's own`).toEqual([]);
  expect(new Set(pushed).size, `${label}: an own event was pushed twice`).toBe(pushed.length);
  for (const id of durableOwn) {
    expect(pushed, `${label}: own event ${id} was never pushed`).toContain(id);
    expect(peerIdsSeen, `${label}: own event ${id} never reached the peer`).toContain(id);
  }
  expect(new Set(peerIdsSeen).size, `${label}: an event is in the peer's log twice`).toBe(peerIdsSeen.length);
}

describe('sync crash sweep on the simulated filesystem', () => {
  for (const phase of ['pull', 'push'] as Phase[]) {
    it(`a ${phase} cut at every filesystem operation loses, duplicates and re-pushes nothing`, async () => {
      const dry = await run(phase, undefined, new SimulatedFileSystem());
      check(`${phase} without a crash`, dry);
      expect(dry.used).toBeGreaterThan(10);
      console.log(`sync crash sweep (${phase}): ${dry.used} cut points, seed base ${seedBase} (replay with WEFT_SEED=${seedBase})`);
      let crashes = 0;
      for (let cut = 0; cut < dry.used; cut++) {
        const outcome = await run(phase, cut, new SimulatedFileSystem());
        if (outcome.crashed) crashes++;
        check(`${phase} cut ${cut}`, outcome);
      }
      expect(crashes).toBe(dry.used);
    }, 300_000);
  }
});
