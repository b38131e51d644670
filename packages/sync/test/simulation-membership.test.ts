/**
 * The seeded simulation with a membership chain: on top of the faults of the
 * replication simulation (ambiguous writes, watch faults, partitions, crashes
 * at each push step), fast-check interleaves appends, blobs, snapshots,
 * garbage collection, a device joining from a snapshot and a member's removal
 * with key rotation. After healing and draining:
 * - the active devices hold identical logs, LWW maps and blobs;
 * - the removed member's writes after its removal are rejected everywhere, and
 *   nothing written after the rotation reaches it;
 * - a device bootstrapped from a snapshot ends with the same events as the
 *   devices that replayed everything;
 * - garbage collection never strands an active device, and a device that
 *   finds history purged below its cursor is told to re-bootstrap.
 */
import { randomBytes } from 'node:crypto';
import { type EventId, type EventLog, loadHashers, nodeXChaCha, openEventLog, SimulatedFileSystem } from '@weft/eventlog';
import { createMemoryKvServer, type MemoryKvServer, openMemoryKv } from '@weft/kv';
import {
  createIdentity,
  createLibrary,
  type DeviceIdentity,
  decodeKeyWrap,
  encodeChangeset,
  invitationOf,
  type LibraryConfig,
  lwwSet,
  openSync,
  type PushStage,
  projectLww,
  type Sync,
  sealEnvelope,
  unwrapKey,
} from '@weft/sync';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { countField, decodeStatement } from '../src/statements.js';
import { calm, FaultyKv, seededRandom } from './faulty-kv.js';
import { bytes, kind, text } from './helpers.js';

const long = process.env.WEFT_LONG === '1';
const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? (long ? 60 : 8));
const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const stages: Array<PushStage | 'idle'> = ['prepared', 'created', 'head-published', 'done', 'idle'];
const maxValueBytes = 64 * 1024;

class CrashHere extends Error {}

interface Node {
  readonly name: string;
  readonly identity: DeviceIdentity;
  readonly fs: SimulatedFileSystem;
  readonly kv: FaultyKv;
  log: EventLog;
  sync: Sync;
  crashStage: PushStage | undefined;
  readonly bootstrap: 'snapshot' | 'replay';
  /** Durable own events: id -> payload. */
  readonly appended: Map<string, string>;
  readonly blobs: Map<string, Uint8Array>;
  readonly appliedSeen: Map<string, number>;
}

type Command =
  | { op: 'append'; node: number; lww: boolean }
  | { op: 'blob'; node: number; size: number }
  | { op: 'sync'; node: number }
  | { op: 'syncAll' }
  | { op: 'snapshot' }
  | { op: 'gc' }
  | { op: 'join' }
  | { op: 'remove' }
  | { op: 'crash'; node: number; stage: number }
  | { op: 'partition'; node: number }
  | { op: 'heal'; node: number };

const nodeIndex = fc.nat({ max: 3 });
const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('append' as const), node: nodeIndex, lww: fc.boolean() }), weight: 6 },
  { arbitrary: fc.record({ op: fc.constant('blob' as const), node: nodeIndex, size: fc.constantFrom(10, 5_000, 100_000) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('sync' as const), node: nodeIndex }), weight: 4 },
  { arbitrary: fc.record({ op: fc.constant('syncAll' as const) }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('snapshot' as const) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('gc' as const) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('join' as const) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('remove' as const) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('crash' as const), node: nodeIndex, stage: fc.nat({ max: stages.length - 1 }) }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('partition' as const), node: nodeIndex }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('heal' as const), node: nodeIndex }), weight: 1 },
);

const knobsArbitrary = fc.record({
  ambiguousWrites: fc.constantFrom(0, 0.2),
  dropWatchEvents: fc.constantFrom(0, 0.3),
  duplicateWatchEvents: fc.constantFrom(0, 0.3),
  reorderWatchEvents: fc.constantFrom(0, 0.3),
  partitioned: fc.constant(false),
});

async function eventMap(log: EventLog): Promise<Map<string, string>> {
  const events = new Map<string, string>();
  for await (const event of log.read()) events.set(event.id, `${event.entity}|${event.kind}|${event.time}|${text(event.payload)}`);
  return events;
}

describe('seeded sync simulation with membership, rotation, snapshots, GC and blobs', () => {
  it(`converges, keeps removed members out and never strands a device (${runs} runs)`, async () => {
    console.log(`membership simulation: ${runs} runs, seed ${seed} (replay with WEFT_SEED=${seed})`);
    let removals = 0;
    let joins = 0;
    let collections = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        knobsArbitrary,
        fc.array(commandArbitrary, { minLength: 10, maxLength: 40 }),
        fc.integer({ min: 1, max: 2 ** 30 }),
        async (scheduler, knobs, commands, runSeed) => {
          const server: MemoryKvServer = createMemoryKvServer();
          const random = seededRandom(runSeed);
          const bucket = () => openMemoryKv({ server, bucket: 'lib', maxValueBytes });
          const ownerIdentity = createIdentity();
          const library: LibraryConfig = await createLibrary({ kv: await bucket(), identity: ownerIdentity, id: 'sim' });
          const openNode = async (node: Omit<Node, 'log' | 'sync'> & Partial<Pick<Node, 'log' | 'sync'>>) => {
            node.log = await openEventLog({ dir: '/device', fs: node.fs, encryption: {} });
            node.sync = await openSync({
              log: node.log,
              kv: node.kv,
              identity: node.identity,
              library,
              live: false,
              bootstrap: node.bootstrap,
              faults: {
                onPushStage: (stage) => {
                  if (node.crashStage === stage) throw new CrashHere(stage);
                },
              },
            });
            return node as Node;
          };
          const makeNode = async (name: string, identity = createIdentity(), bootstrap: 'snapshot' | 'replay' = 'snapshot') => {
            const kv = new FaultyKv(await bucket(), random);
            return openNode({
              name,
              identity,
              fs: new SimulatedFileSystem(),
              kv,
              crashStage: undefined,
              bootstrap,
              appended: new Map(),
              blobs: new Map(),
              appliedSeen: new Map(),
            });
          };
          const owner = await makeNode('owner', ownerIdentity);
          const a = await makeNode('a');
          const b = await makeNode('b');
          await owner.sync.addMember(invitationOf(a.identity));
          await owner.sync.addMember(invitationOf(b.identity));
          const nodes: Node[] = [owner, a, b];
          for (const node of nodes) {
            node.kv.knobs = { ...knobs };
            node.kv.scheduler = scheduler;
          }
          let joined: Node | undefined;
          let removedAt: number | undefined;
          const afterRemoval = new Set<string>();
          const step = <T>(work: () => Promise<T>) => scheduler.waitFor(work()).catch((error: unknown) => error);
          const restart = async (node: Node) => {
            node.fs.crashAt(node.fs.operations);
            await node.sync.close({ timeoutMs: 0 }).catch(() => undefined);
            node.fs.crash(runSeed);
            node.crashStage = undefined;
            await openNode(node);
          };
          const active = () => nodes.filter((node) => node !== b || removedAt === undefined);
          const pick = (index: number) => nodes[index % nodes.length] as Node;
          try {
            for (const [commandIndex, command] of commands.entries()) {
              switch (command.op) {
                case 'append': {
                  const node = pick(command.node);
                  const payload = `secret-${node.name}-${node.appended.size}-${runSeed}`;
                  const id = command.lww
                    ? await lwwSet(node.log, 'shared', `k${node.appended.size % 3}`, bytes(payload))
                    : ((await node.log.append({ entity: `doc-${node.name}`, kind, payload: bytes(payload) })).events[0]?.id as string);
                  await node.log.flush();
                  node.appended.set(id, payload);
                  if (removedAt !== undefined && node !== b) afterRemoval.add(id);
                  break;
                }
                case 'blob': {
                  const node = pick(command.node);
                  if (node === b && removedAt !== undefined) break;
                  const data = new Uint8Array(randomBytes(command.size));
                  const id = await step(() => node.sync.putBlob(data));
                  if (typeof id !== 'string') break;
                  node.blobs.set(id, data);
                  const ref = (await node.log.append({ entity: `doc-${node.name}`, kind, payload: bytes(`blob ${id}`) })).events[0]
                    ?.id as string;
                  await node.log.flush();
                  node.appended.set(ref, `blob ${id}`);
                  if (removedAt !== undefined) afterRemoval.add(ref);
                  break;
                }
                case 'sync':
                  await step(() => pick(command.node).sync.syncOnce());
                  break;
                case 'syncAll':
                  await step(() => Promise.allSettled(nodes.map((node) => node.sync.syncOnce())));
                  break;
                case 'snapshot':
                  await step(() => owner.sync.publishSnapshot());
                  break;
                case 'gc':
                  collections++;
                  await step(() => owner.sync.collectGarbage({ graceMs: 0 }));
                  break;
                case 'join':
                  if (joined !== undefined) break;
                  joins++;
                  joined = await makeNode('joined');
                  joined.kv.knobs = { ...knobs };
                  joined.kv.scheduler = scheduler;
                  await step(() => owner.sync.addMember(invitationOf((joined as Node).identity)));
                  nodes.push(joined);
                  break;
                case 'remove':
                  if (removedAt !== undefined) break;
                  if ((await step(() => owner.sync.removeMember(b.identity.deviceId))) instanceof Error) break;
                  removals++;
                  removedAt = commandIndex;
                  break;
                case 'crash': {
                  const node = pick(command.node);
                  const stage = stages[command.stage];
                  if (stage !== 'idle' && stage !== undefined) {
                    node.crashStage = stage;
                    await step(() => node.sync.syncOnce());
                  }
                  await restart(node);
                  break;
                }
                case 'partition':
                  pick(command.node).kv.knobs.partitioned = true;
                  break;
                case 'heal':
                  pick(command.node).kv.knobs.partitioned = false;
                  break;
              }
              for (const node of nodes) {
                for (const [other, info] of Object.entries(node.sync.status().devices)) {
                  expect(info.applied, `${node.name}: applied seq of ${other} went backwards`).toBeGreaterThanOrEqual(
                    node.appliedSeen.get(other) ?? 0,
                  );
                  node.appliedSeen.set(other, info.applied);
                }
              }
            }

            // A removed member that keeps its old key and writes anyway.
            let forgedId: string | undefined;
            if (removedAt !== undefined) {
              const raw = await bucket();
              const wrapped = await raw.get(`keys.${b.identity.deviceId}.0`);
              const oldKey =
                wrapped === undefined ? undefined : unwrapKey(decodeKeyWrap(wrapped.value), b.identity, library.id, nodeXChaCha);
              // Its next free seq (it may have created changesets it never got to announce).
              const head = await raw.get(`heads.${b.identity.deviceId}`);
              const floor = await raw.get(`meta.floor.${b.identity.deviceId}`);
              let last = Math.max(
                head === undefined ? 0 : (JSON.parse(text(head.value)) as { seq: number }).seq,
                floor === undefined ? 0 : countField(decodeStatement(floor.value, 'floor', library.id), 'floor'),
              );
              while ((await raw.get(`changes.${b.identity.deviceId}.${last + 1}`)) !== undefined) last++;
              const previous = last === 0 ? undefined : await raw.get(`changes.${b.identity.deviceId}.${last}`);
              const { blake3 } = await loadHashers();
              forgedId = '01890000-0000-7000-8000-00000000beef';
              const keyPath = `changes.${b.identity.deviceId}.${last + 1}`;
              await raw.put(
                keyPath,
                sealEnvelope(
                  {
                    device: b.identity.deviceId,
                    seq: last + 1,
                    schemaVersion: 1,
                    timestamp: Date.now(),
                    authorKey: b.identity.publicKey,
                    previousHash: previous === undefined ? new Uint8Array(32) : blake3(previous.value),
                    keyGeneration: 0,
                  },
                  encodeChangeset([
                    {
                      id: forgedId as EventId,
                      entity: 'doc-b',
                      scope: 'doc-b',
                      kind,
                      time: 1n,
                      causationId: undefined,
                      correlationId: undefined,
                      parents: [],
                      payload: bytes('written after removal'),
                      shredded: false,
                    },
                  ]),
                  oldKey ?? new Uint8Array(32),
                  library.id,
                  keyPath,
                  nodeXChaCha,
                  b.identity,
                ),
              );
              await raw.put(`heads.${b.identity.deviceId}`, bytes(JSON.stringify({ seq: last + 1, time: Date.now() })));
            }

            // Heal and drain; a device told to re-bootstrap does so.
            for (const node of nodes) {
              node.kv.knobs = { ...calm };
              node.kv.scheduler = undefined;
            }
            // An owner retries an invitation that failed in the storm.
            if (joined !== undefined) await owner.sync.addMember(invitationOf(joined.identity));
            const drain = async (group: readonly Node[], rounds = 12) => {
              for (let round = 0; round < rounds; round++) {
                for (const node of group) {
                  await node.sync.refreshHeads();
                  // The removed member may fail to upload what it wrote (it was removed): that is its problem only.
                  const round = node.sync.syncOnce();
                  if (node === b && removedAt !== undefined) await round.catch(() => undefined);
                  else await round;
                  if (node.sync.status().rebootstrapRequired) {
                    // A removed member cannot open snapshots sealed after its removal; the others must manage.
                    const bootstrapped = node.sync.bootstrapFromSnapshot();
                    if (node === b && removedAt !== undefined) await bootstrapped.catch(() => false);
                    else await bootstrapped;
                  }
                }
              }
            };
            await drain(nodes);
            const live = active();
            const maps = await Promise.all(live.map((node) => eventMap(node.log)));
            const reference = maps[0] as Map<string, string>;
            for (const [index, map] of maps.entries()) {
              expect(
                [...map.keys()].sort(),
                `${live[index]?.name} differs from the owner: ${JSON.stringify(live[index]?.sync.status().devices)}`,
              ).toEqual([...reference.keys()].sort());
            }
            const lww = await Promise.all(
              live.map(async (node) => [...(await projectLww(node.log, 'shared')).entries].map(([key, value]) => `${key}=${text(value)}`)),
            );
            for (const map of lww) expect(map).toEqual(lww[0]);
            for (const node of live) {
              expect(node.sync.status().rebootstrapRequired, `${node.name} was stranded`).toBe(false);
              for (const id of node.appended.keys())
                if (node !== b) expect(reference.has(id), `${node.name}'s event ${id} was lost`).toBe(true);
              for (const source of live) {
                for (const [id, data] of source.blobs) {
                  const stored = await node.sync.getBlob(id);
                  expect(Buffer.from(stored ?? []).equals(Buffer.from(data)), `${node.name} lacks blob ${id}`).toBe(true);
                }
              }
            }
            if (removedAt !== undefined) {
              expect(reference.has(forgedId as string), 'a write after removal was accepted').toBe(false);
              for (const node of live) {
                expect(
                  node.sync.status().alarms.some((alarm) => alarm.code === 'Revoked'),
                  `${node.name} did not report the write after removal: ${JSON.stringify(node.sync.status().devices[b.identity.deviceId])} ${JSON.stringify(node.sync.status().alarms.map((alarm) => alarm.message))}`,
                ).toBe(true);
              }
              const seenByRemoved = await eventMap(b.log);
              for (const id of afterRemoval)
                expect(seenByRemoved.has(id), `the removed member read ${id}, written after the rotation`).toBe(false);
            }
            // A new device from the snapshot ends with what everyone replayed.
            await owner.sync.publishSnapshot();
            const fresh = await makeNode('fresh');
            await owner.sync.addMember(invitationOf(fresh.identity));
            nodes.push(fresh);
            await drain([owner, fresh], 3);
            expect([...(await eventMap(fresh.log)).keys()].sort()).toEqual([...(await eventMap(owner.log)).keys()].sort());
            // Nothing in the store is plaintext.
            const raw = await bucket();
            for await (const entry of raw.scan())
              expect(Buffer.from(entry.value).toString('latin1').includes('secret-'), `plaintext in ${entry.key}`).toBe(false);
          } finally {
            for (const node of nodes) {
              await node.sync.close({ timeoutMs: 0 }).catch(() => undefined);
              await node.log.close().catch(() => undefined);
            }
          }
        },
      ),
      { numRuns: runs, seed, endOnFailure: true },
    );
    console.log(`membership simulation: ${removals} removals, ${joins} joins, ${collections} garbage collections`);
  }, 600_000);
});
