/**
 * The seeded multi-device simulation: fast-check generates a run's fault
 * knobs and a sequence of commands (appends, syncs, crashes at each push
 * step, partitions), and its scheduler decides the order in which
 * concurrent KV requests complete. The store misbehaves (writes that land
 * but report Indeterminate, dropped / duplicated / reordered watch events),
 * clocks are skewed, and an adversary reorders and replays a member's
 * changesets and forges a non-member's. After healing and draining, every
 * honest device must hold the same events and the same LWW map, no
 * changeset may be lost, cursors must only have moved forward, duplicates
 * must have been harmless, and every manipulation must have been rejected
 * and reported.
 */
import { randomBytes } from 'node:crypto';
import { type EventId, type EventLog, openEventLog, SimulatedFileSystem } from '@weft/eventlog';
import { createMemoryKvServer, type MemoryKvServer, openMemoryKv } from '@weft/kv';
import {
  createIdentity,
  type DeviceIdentity,
  encodeChangeset,
  type LibraryConfig,
  lwwSet,
  openSync,
  type PushStage,
  projectLww,
  type Sync,
  sealEnvelope,
} from '@weft/sync';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { calm, FaultyKv, seededRandom } from './faulty-kv.js';
import { bytes, kind, text } from './helpers.js';

const long = process.env.WEFT_LONG === '1';
const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? (long ? 100 : 12));
const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const honestCount = 3;
const stages: Array<PushStage | 'idle'> = ['prepared', 'created', 'head-published', 'done', 'idle'];

class CrashHere extends Error {}

interface SimDevice {
  readonly index: number;
  readonly identity: DeviceIdentity;
  readonly fs: SimulatedFileSystem;
  readonly kv: FaultyKv;
  readonly skewMs: number;
  log: EventLog;
  sync: Sync;
  crashStage: PushStage | undefined;
  readonly appended: Set<string>;
  readonly appliedSeen: Map<string, number>;
}

type Command =
  | { op: 'append'; device: number; entity: number; withParent: boolean; lww: boolean }
  | { op: 'sync'; device: number }
  | { op: 'syncAll' }
  | { op: 'refresh'; device: number }
  | { op: 'crash'; device: number; stage: number }
  | { op: 'partition'; device: number }
  | { op: 'heal'; device: number };

const device = fc.nat({ max: honestCount - 1 });
const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  {
    arbitrary: fc.record({
      op: fc.constant('append' as const),
      device,
      entity: fc.nat({ max: 2 }),
      withParent: fc.boolean(),
      lww: fc.boolean(),
    }),
    weight: 6,
  },
  { arbitrary: fc.record({ op: fc.constant('sync' as const), device }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('syncAll' as const) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('refresh' as const), device }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('crash' as const), device, stage: fc.nat({ max: stages.length - 1 }) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('partition' as const), device }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('heal' as const), device }), weight: 1 },
);

const knobsArbitrary = fc.record({
  ambiguousWrites: fc.constantFrom(0, 0.15, 0.4),
  dropWatchEvents: fc.constantFrom(0, 0.3),
  duplicateWatchEvents: fc.constantFrom(0, 0.3),
  reorderWatchEvents: fc.constantFrom(0, 0.3),
  partitioned: fc.constant(false),
});

async function openLog(fs: SimulatedFileSystem, skewMs: number): Promise<EventLog> {
  return openEventLog({ dir: '/device', fs, sync: 'group', encryption: {}, clock: () => Date.now() + skewMs });
}

async function openDeviceSync(simDevice: Omit<SimDevice, 'sync'> & { sync?: Sync }, library: LibraryConfig): Promise<Sync> {
  return openSync({
    log: simDevice.log,
    kv: simDevice.kv,
    identity: simDevice.identity,
    library,
    live: false,
    clock: () => Date.now() + simDevice.skewMs,
    faults: {
      onPushStage: (stage) => {
        if (simDevice.crashStage === stage) throw new CrashHere(`crash at ${stage}`);
      },
    },
  });
}

/** The adversary: a member whose changesets the store reorders and replays, and a non-member who forges. */
async function prepareAdversary(
  server: MemoryKvServer,
  library: LibraryConfig,
  mallory: DeviceIdentity,
  stranger: DeviceIdentity,
  runSeed: number,
): Promise<string[]> {
  const fs = new SimulatedFileSystem();
  const log = await openLog(fs, 0);
  const kv = await openMemoryKv({ server, bucket: 'lib' });
  const sync = await openSync({ log, kv, identity: mallory, library, live: false });
  const ids: string[] = [];
  for (let index = 1; index <= 3; index++) {
    const receipt = await log.append({ entity: 'mallory', kind, payload: bytes(`mallory-${index}-${runSeed}`) });
    ids.push(receipt.events[0]?.id as string);
    await sync.syncOnce();
  }
  await sync.close();
  await log.close();
  // The store swaps changesets 2 and 3, and replays changeset 1 as 4.
  const raw = await openMemoryKv({ server, bucket: 'lib' });
  const [one, two, three] = await Promise.all([1, 2, 3].map((seq) => raw.get(`changes.${mallory.deviceId}.${seq}`)));
  await raw.put(`changes.${mallory.deviceId}.2`, three?.value ?? new Uint8Array());
  await raw.put(`changes.${mallory.deviceId}.3`, two?.value ?? new Uint8Array());
  await raw.put(`changes.${mallory.deviceId}.4`, one?.value ?? new Uint8Array());
  await raw.put(`heads.${mallory.deviceId}`, bytes(JSON.stringify({ seq: 4, time: 0 })));
  // A non-member writes a well-formed, self-signed changeset.
  const forged = sealEnvelope(
    {
      device: stranger.deviceId,
      seq: 1,
      schemaVersion: 1,
      timestamp: Date.now(),
      authorKey: stranger.publicKey,
      previousHash: new Uint8Array(32),
      keyGeneration: 0,
    },
    encodeChangeset([]),
    randomBytes(32),
    library.id,
    `changes.${stranger.deviceId}.1`,
    (await import('@weft/eventlog')).nodeXChaCha,
    stranger,
  );
  await raw.put(`changes.${stranger.deviceId}.1`, forged);
  await raw.put(`heads.${stranger.deviceId}`, bytes(JSON.stringify({ seq: 1, time: 0 })));
  await raw.close();
  return ids;
}

async function eventIds(log: EventLog): Promise<Map<string, string>> {
  const events = new Map<string, string>();
  for await (const event of log.read())
    events.set(event.id, `${event.entity}|${event.kind}|${event.time}|${text(event.payload)}|${event.parents.join(',')}`);
  return events;
}

let totalDuplicates = 0;
let totalFaults = 0;

describe('seeded multi-device sync simulation', () => {
  it(`converges after faults, crashes and adversarial stores (${runs} runs)`, async () => {
    console.log(`sync simulation: ${runs} runs, seed ${seed} (replay with WEFT_SEED=${seed}; more runs with WEFT_LONG=1)`);
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        knobsArbitrary,
        fc.array(fc.integer({ min: -120_000, max: 120_000 }), { minLength: honestCount, maxLength: honestCount }),
        fc.array(commandArbitrary, { minLength: 8, maxLength: 35 }),
        fc.integer({ min: 1, max: 2 ** 30 }),
        async (scheduler, knobs, skews, commands, runSeed) => {
          const server = createMemoryKvServer();
          const random = seededRandom(runSeed);
          const identities = Array.from({ length: honestCount }, () => createIdentity());
          const mallory = createIdentity();
          const stranger = createIdentity();
          const library: LibraryConfig = {
            id: 'lib',
            key: randomBytes(32),
            members: [...identities, mallory].map(({ deviceId, publicKey }) => ({ deviceId, publicKey })),
          };
          const malloryIds = await prepareAdversary(server, library, mallory, stranger, runSeed);
          const devices: SimDevice[] = [];
          for (const [index, identity] of identities.entries()) {
            const fs = new SimulatedFileSystem();
            const skewMs = skews[index] ?? 0;
            const kv = new FaultyKv(await openMemoryKv({ server, bucket: 'lib' }), random);
            kv.knobs = { ...knobs };
            kv.scheduler = scheduler;
            const partial = {
              index,
              identity,
              fs,
              kv,
              skewMs,
              log: await openLog(fs, skewMs),
              crashStage: undefined,
              appended: new Set<string>(),
              appliedSeen: new Map<string, number>(),
            };
            devices.push({ ...partial, sync: await openDeviceSync(partial, library) });
          }
          const step = <T>(work: () => Promise<T>) => scheduler.waitFor(work()).catch((error: unknown) => error);
          const restart = async (simDevice: SimDevice) => {
            // Process death: nothing more reaches the disk, then the machine reboots to what was durable.
            simDevice.fs.crashAt(simDevice.fs.operations);
            await simDevice.sync.close({ timeoutMs: 0 }).catch(() => undefined);
            simDevice.fs.crash(runSeed + simDevice.index);
            simDevice.crashStage = undefined;
            simDevice.log = await openLog(simDevice.fs, simDevice.skewMs);
            simDevice.sync = await openDeviceSync(simDevice, library);
          };
          const checkMonotonic = () => {
            for (const simDevice of devices) {
              for (const [other, info] of Object.entries(simDevice.sync.status().devices)) {
                const before = simDevice.appliedSeen.get(other) ?? 0;
                expect(info.applied, `device ${simDevice.index}: applied seq of ${other} went backwards`).toBeGreaterThanOrEqual(before);
                simDevice.appliedSeen.set(other, info.applied);
              }
            }
          };
          try {
            for (const command of commands) {
              const target = 'device' in command ? (devices[command.device] as SimDevice) : undefined;
              switch (command.op) {
                case 'append': {
                  if (target === undefined) break;
                  const known = [...(await eventIds(target.log)).keys()];
                  const parent = command.withParent && known.length > 0 ? known[Math.floor(random() * known.length)] : undefined;
                  const payload = `payload-${target.index}-${target.appended.size}-${runSeed}`;
                  let id: string;
                  if (command.lww) {
                    id = await lwwSet(target.log, 'shared', `k${command.entity}`, bytes(payload));
                  } else {
                    const receipt = await target.log.append({
                      entity: `doc-${command.entity}`,
                      kind,
                      payload: bytes(payload),
                      ...(parent === undefined ? {} : { parents: [parent as EventId] }),
                    });
                    id = receipt.events[0]?.id as string;
                  }
                  // Only what is durable must survive a crash of the device.
                  await target.log.flush();
                  target.appended.add(id);
                  break;
                }
                case 'sync':
                  await step(() => (target as SimDevice).sync.syncOnce());
                  break;
                case 'syncAll':
                  await step(() => Promise.allSettled(devices.map((simDevice) => simDevice.sync.syncOnce())));
                  break;
                case 'refresh':
                  await step(() => (target as SimDevice).sync.refreshHeads());
                  break;
                case 'crash': {
                  if (target === undefined) break;
                  const stage = stages[command.stage];
                  if (stage !== 'idle' && stage !== undefined) {
                    target.crashStage = stage;
                    await step(() => target.sync.syncOnce());
                  }
                  await restart(target);
                  break;
                }
                case 'partition':
                  if (target !== undefined) target.kv.knobs.partitioned = true;
                  break;
                case 'heal':
                  if (target !== undefined) target.kv.knobs.partitioned = false;
                  break;
              }
              checkMonotonic();
            }

            // Heal and drain.
            for (const simDevice of devices) {
              simDevice.kv.knobs = { ...calm };
              simDevice.kv.scheduler = undefined;
            }
            let converged = false;
            for (let round = 0; round < 20 && !converged; round++) {
              for (const simDevice of devices) {
                await simDevice.sync.refreshHeads();
                await simDevice.sync.syncOnce();
              }
              const sets = await Promise.all(devices.map((simDevice) => eventIds(simDevice.log)));
              const first = JSON.stringify([...(sets[0] ?? new Map()).entries()].sort());
              converged =
                sets.every((set) => JSON.stringify([...set.entries()].sort()) === first) &&
                devices.every((simDevice) => simDevice.sync.status().pendingUploads === 0);
            }
            checkMonotonic();
            const statuses = devices.map((simDevice) => simDevice.sync.status());
            expect(converged, `devices did not converge: ${JSON.stringify(statuses.map((status) => status.devices))}`).toBe(true);

            // Identical logs (as sets of events) and identical LWW maps.
            const maps = await Promise.all(
              devices.map(async (simDevice) =>
                [...(await projectLww(simDevice.log, 'shared')).entries].map(([key, value]) => `${key}=${text(value)}`),
              ),
            );
            for (const map of maps) expect(map).toEqual(maps[0]);
            // No lost changeset: every honest device applied every other's last changeset, and holds every appended event.
            const all = await eventIds((devices[0] as SimDevice).log);
            for (const simDevice of devices) {
              for (const id of simDevice.appended) expect(all.has(id), `event ${id} of device ${simDevice.index} was lost`).toBe(true);
              for (const other of devices) {
                if (other === simDevice) continue;
                expect(other.sync.status().devices[simDevice.identity.deviceId]?.applied ?? 0).toBe(simDevice.sync.status().lastPushedSeq);
              }
            }
            // The adversary: mallory's first changeset is genuine; the swapped and replayed ones are rejected, the forgery too.
            expect(all.has(malloryIds[0] as string)).toBe(true);
            expect(all.has(malloryIds[1] as string) || all.has(malloryIds[2] as string)).toBe(false);
            for (const status of statuses) {
              const codes = status.alarms.map((alarm) => `${alarm.code}:${alarm.device}`);
              expect(codes).toContain(`ChainBroken:${mallory.deviceId}`);
              expect(codes).toContain(`Forged:${stranger.deviceId}`);
            }
            // Nothing in the store is plaintext.
            const raw = await openMemoryKv({ server, bucket: 'lib' });
            for await (const entry of raw.scan()) {
              const stored = Buffer.from(entry.value).toString('latin1');
              expect(stored.includes('payload-'), `plaintext in ${entry.key}`).toBe(false);
              expect(stored.includes('mallory-'), `plaintext in ${entry.key}`).toBe(false);
            }
            for (const status of statuses) totalDuplicates += status.duplicates.events + status.duplicates.identicalRetries;
            for (const simDevice of devices) {
              totalDuplicates += simDevice.kv.stats.duplicated;
              totalFaults += simDevice.kv.stats.ambiguous + simDevice.kv.stats.dropped + simDevice.kv.stats.reordered;
            }
          } finally {
            for (const simDevice of devices) {
              await simDevice.sync.close({ timeoutMs: 0 }).catch(() => undefined);
              await simDevice.log.close().catch(() => undefined);
            }
          }
        },
      ),
      { numRuns: runs, seed, endOnFailure: true },
    );
    console.log(`sync simulation: ${totalDuplicates} duplicates observed, ${totalFaults} faults injected`);
    expect(totalDuplicates, 'duplicates were observed (and harmless)').toBeGreaterThan(0);
    expect(totalFaults, 'faults were injected').toBeGreaterThan(0);
  }, 600_000);
});
