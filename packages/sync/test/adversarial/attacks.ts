/**
 * One attack per claim of docs/security.md (the "Sync" section names each
 * claim's id). Each builds a library, attacks it as the store or as a
 * malicious member, and asserts what the claim says: honest devices, those
 * there before the attack and those added after it, detect it with a named
 * alarm, apply nothing forged, keep verifying logs, and converge once the
 * store is repaired.
 */
import { randomBytes } from 'node:crypto';
import { loadHashers, nodeXChaCha } from '@weft/eventlog';
import {
  type DeviceIdentity,
  decodeEnvelope,
  decodeKeyWrap,
  encodeChangeset,
  encodeMembershipEntry,
  invitationOf,
  openEnvelope,
  payloadAad,
  unwrapKey,
  wrapKey,
} from '@weft/sync';
import { expect } from 'vitest';
import type { MembershipFields } from '../../src/membership.js';
import { encodeManifest, encodeSnapshotBody } from '../../src/snapshot.js';
import { encodeStatement } from '../../src/statements.js';
import { alarmsOf, bytes, eventOf, expectHealthy, forgeChangeset, kind, type Node, payloads, type World } from './world.js';

export interface Attack {
  /** The claim id in docs/security.md and what it says. */
  readonly claim: string;
  readonly run: (world: World) => Promise<void>;
}

const concat = (...parts: Uint8Array[]) => Buffer.concat(parts);

/** Appends `payload` on a device and pushes it (one changeset). */
async function write(node: Node, payload: string): Promise<void> {
  await node.log.append({ entity: 'doc', kind, payload: bytes(payload) });
  await node.sync.syncOnce();
}

async function stored(world: World, key: string): Promise<Uint8Array> {
  const entry = await world.raw.get(key);
  if (entry === undefined) throw new Error(`${key} is not in the store`);
  return entry.value;
}

/** The library key of a generation as `identity` unwraps it from the store (what a member, or a former one, holds). */
async function keyHeldBy(world: World, identity: DeviceIdentity, generation: number): Promise<Uint8Array> {
  const key = unwrapKey(decodeKeyWrap(await stored(world, `keys.${identity.deviceId}.${generation}`)), identity, 'family', nodeXChaCha);
  if (key === undefined) throw new Error('no key');
  return key;
}

/** Whether a changeset opens under `key`: what a device holding that key can read. */
async function readableWith(world: World, keyPath: string, key: Uint8Array): Promise<boolean> {
  const envelope = decodeEnvelope(await stored(world, keyPath));
  return openEnvelope(envelope, key, 'family', keyPath, nodeXChaCha) !== undefined;
}

/**
 * What a removed device that keeps its generation-0 key can do: sign and
 * store its changeset 2 (after its first), carrying `payload`. Returns that key.
 */
async function writeAfterRemoval(world: World, removed: DeviceIdentity, payload: string): Promise<Uint8Array> {
  const r = removed.deviceId;
  const key = await keyHeldBy(world, removed, 0);
  await world.raw.create(
    `changes.${r}.2`,
    await forgeChangeset({
      author: removed,
      seq: 2,
      previous: await stored(world, `changes.${r}.1`),
      generation: 0,
      key,
      events: [eventOf(payload)],
    }),
  );
  return key;
}

async function expectNotCaughtUp(node: Node): Promise<void> {
  await expect(node.sync.waitUntilCaughtUp({ timeoutMs: 300 })).rejects.toThrow(/not caught up/);
}

export const storeAttacks: Attack[] = [
  {
    claim: 'S1 the store holds no plaintext: payloads, blobs and snapshots are sealed',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      await write(owner, 'secret-owner-payload');
      await write(member, 'secret-member-payload');
      await member.sync.putBlob(bytes('secret-blob-bytes'));
      await member.sync.syncOnce();
      await owner.sync.publishSnapshot();
      await world.settle();
      for await (const entry of world.raw.scan()) {
        expect(Buffer.from(entry.value).toString('latin1')).not.toMatch(/secret-/);
      }
      await expectHealthy([owner, member]);
    },
  },
  {
    claim: 'S2 a changeset the store alters is rejected (Forged) and applied once repaired',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      await write(owner, 'first');
      await world.settle();
      await write(owner, 'second');
      const late = await world.join('late');
      for (const victim of [member, late]) await victim.store.flip(`changes.${owner.identity.deviceId}.2`, -10);
      await world.settle([member, late]);
      for (const victim of [member, late]) {
        expect(alarmsOf(victim, owner.identity.deviceId)).toContain('Forged');
        expect(await payloads(victim.log)).not.toContain('second');
        victim.store.repair();
      }
      await world.settle();
      await expectHealthy([owner, member, late]);
    },
  },
  {
    claim: 'S3 a changeset the store replays at another seq or moves from another device breaks the chain (ChainBroken)',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      await write(member, 'member-1');
      await write(owner, 'owner-1');
      await write(owner, 'owner-2');
      const late = await world.join('late');
      const o = owner.identity.deviceId;
      member.store.lies.set(`changes.${o}.2`, await stored(world, `changes.${o}.1`));
      late.store.lies.set(`changes.${o}.2`, await stored(world, `changes.${member.identity.deviceId}.1`));
      await world.settle([member, late]);
      for (const victim of [member, late]) {
        expect(alarmsOf(victim, o)).toContain('ChainBroken');
        expect(await payloads(victim.log)).not.toContain('owner-2');
        victim.store.repair();
      }
      await world.settle();
      await expectHealthy([owner, member, late]);
    },
  },
  {
    claim: 'S4 a changeset the store drops from inside a chain is a ChangesetGap alarm, and waitUntilCaughtUp does not resolve',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      for (const n of [1, 2, 3]) await write(owner, `owner-${n}`);
      const late = await world.join('late');
      const o = owner.identity.deviceId;
      for (const victim of [member, late]) victim.store.hidden.add(`changes.${o}.2`);
      // The head too says only 1: the later changeset that exists gives the gap away.
      late.store.lies.set(`heads.${o}`, await stored(world, `heads.${o}`).then(() => bytes(JSON.stringify({ seq: 1, time: 0 }))));
      await world.settle([member, late]);
      for (const victim of [member, late]) {
        expect(alarmsOf(victim, o)).toContain('ChangesetGap');
        expect(await payloads(victim.log)).not.toContain('owner-3');
        await expectNotCaughtUp(victim);
        victim.store.repair();
      }
      await world.settle();
      for (const victim of [member, late]) await victim.sync.waitUntilCaughtUp({ timeoutMs: 5000 });
      await expectHealthy([owner, member, late]);
    },
  },
  {
    claim: 'S5 a rolled-back head hides nothing: devices probe past heads, and the rollback is a HeadRolledBack alarm',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const o = owner.identity.deviceId;
      await write(owner, 'owner-1');
      const oldHead = await stored(world, `heads.${o}`);
      for (const n of [2, 3, 4]) await write(owner, `owner-${n}`);
      await world.settle([member, owner]);
      // A device that saw the newer head, and a new one that never did (another member's applied map gives it away).
      const late = await world.join('late');
      for (const victim of [member, late]) victim.store.lies.set(`heads.${o}`, oldHead);
      await world.settle([member, late]);
      for (const victim of [member, late]) {
        expect(alarmsOf(victim, o)).toContain('HeadRolledBack');
        expect(victim.sync.status().devices[o]?.applied).toBe(4);
        await victim.sync.waitUntilCaughtUp({ timeoutMs: 5000 });
      }
      await expectHealthy([owner, member, late]);
    },
  },
  {
    claim: 'S6 a device whose own head the store rolls back republishes it (HeadRolledBack)',
    run: async (world) => {
      const owner = world.node('owner');
      const o = owner.identity.deviceId;
      await write(owner, 'owner-1');
      const oldHead = await stored(world, `heads.${o}`);
      await write(owner, 'owner-2');
      await world.raw.put(`heads.${o}`, oldHead);
      await world.settle([owner], 1);
      expect(alarmsOf(owner, o)).toContain('HeadRolledBack');
      expect(JSON.parse(Buffer.from(await stored(world, `heads.${o}`)).toString()).seq).toBe(2);
    },
  },
  {
    claim: 'S7 a partial listing of heads hides no member: every member is probed',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      member.store.unlisted.add(`heads.${owner.identity.deviceId}`);
      for (const n of [1, 2]) await write(owner, `owner-${n}`);
      await world.settle([member]);
      expect(await payloads(member.log)).toEqual(['owner-1', 'owner-2']);
      // The status shows what was applied, though no head was ever seen.
      expect(member.sync.status().devices[owner.identity.deviceId]).toMatchObject({ head: 2, applied: 2, lag: 0 });
      await expectHealthy([owner, member]);
    },
  },
  {
    claim:
      'S8 a key wrap the store replaces (replayed from another generation, or garbage) is never used: KeyCommitmentMismatch, rotation pending',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const leaving = await world.join('leaving');
      await world.settle();
      await owner.sync.removeMember(leaving.identity.deviceId);
      const m = member.identity.deviceId;
      member.store.lies.set(`keys.${m}.1`, await stored(world, `keys.${m}.0`));
      await world.settle([member]);
      expect(alarmsOf(member)).toContain('KeyCommitmentMismatch');
      expect(member.sync.status().rotationPending).toBe(true);
      await member.log.append({ entity: 'doc', kind, payload: bytes('held back') });
      await member.sync.syncOnce();
      expect(member.sync.status().pendingUploads).toBe(1);
      member.store.lies.set(`keys.${m}.1`, randomBytes(200));
      await world.settle([member]);
      expect(alarmsOf(member)).toContain('InvalidEnvelope');
      member.store.repair();
      await world.settle();
      expect(member.sync.status().rotationPending).toBe(false);
      expect(await payloads(owner.log)).toContain('held back');
      await expectHealthy([owner, member]);
    },
  },
  {
    claim: 'S9 a garbage-collection floor or minimum schema that no current owner signed is ignored and reported',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const o = owner.identity.deviceId;
      for (const n of [1, 2]) await write(owner, `owner-${n}`);
      // An unsigned minimum schema (as an older release wrote it), and a floor signed by a member, not an owner.
      await world.raw.put('meta.min_schema_version', bytes('99'));
      await world.raw.put(`meta.floor.${o}`, encodeStatement('floor', { device: o, floor: 2 }, member.identity, 'family'));
      member.store.hidden.add(`changes.${o}.1`);
      await world.settle([member]);
      expect(member.sync.status().rebootstrapRequired).toBe(false);
      expect(alarmsOf(member, o)).toContain('ChangesetGap');
      expect(alarmsOf(member)).toContain('InvalidEnvelope');
      expect(alarmsOf(member)).toContain('Forged');
      member.store.repair();
      await world.settle();
      await expectHealthy([owner, member]);
    },
  },
  {
    claim:
      'S10 a store that withholds a removal entry cannot make a device seal for the removed member: it sees the new generation and holds its uploads',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const removed = await world.join('removed');
      await world.settle();
      const entriesBefore = new Set<string>();
      for await (const key of world.raw.keys('membership')) entriesBefore.add(key);
      await owner.sync.removeMember(removed.identity.deviceId);
      for await (const key of world.raw.keys('membership')) if (!entriesBefore.has(key)) member.store.hidden.add(key);
      await write(owner, 'after rotation');
      await world.settle([member]);
      expect(member.sync.status().rotationPending).toBe(true);
      await member.log.append({ entity: 'doc', kind, payload: bytes('member after rotation') });
      await member.sync.syncOnce();
      expect(member.sync.status().pendingUploads).toBe(1);
      member.store.repair();
      await world.settle([owner, member]);
      expect(member.sync.status().pendingUploads).toBe(0);
      const oldKey = await keyHeldBy(world, removed.identity, 0);
      expect(await readableWith(world, `changes.${member.identity.deviceId}.1`, oldKey)).toBe(false);
      await expectHealthy([owner, member]);
    },
  },
  {
    claim: 'S11 alarms survive floods: heads invented for 150 devices do not push out an earlier HeadRolledBack',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const o = owner.identity.deviceId;
      await write(owner, 'owner-1');
      const oldHead = await stored(world, `heads.${o}`);
      await write(owner, 'owner-2');
      await world.settle([member, owner]);
      member.store.lies.set(`heads.${o}`, oldHead);
      await world.settle([member], 1);
      expect(alarmsOf(member, o)).toContain('HeadRolledBack');
      // The store invents heads of devices that never existed, each far ahead, every round.
      const { createIdentity } = await import('@weft/sync');
      for (let index = 0; index < 150; index++) {
        const invented = createIdentity().deviceId;
        await world.raw.put(`heads.${invented}`, bytes(JSON.stringify({ seq: 5, snapshot: 0, at: Date.now() })));
      }
      await world.settle([member], 2);
      expect(alarmsOf(member, o)).toContain('HeadRolledBack');
      // Every invented device got its alarm too: nothing was dropped to make room.
      expect(member.sync.status().alarms.length).toBeGreaterThan(150);
    },
  },
  {
    claim:
      "S12 an owner's statement made for another library (a floor, a minimum schema) is refused, though its author is an owner here too",
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const o = owner.identity.deviceId;
      for (const n of [1, 2, 3]) await write(owner, `owner-${n}`);
      // The same device is an owner of another library: its statements there are validly signed, for that library.
      await world.raw.put(`meta.floor.${o}`, encodeStatement('floor', { device: o, floor: 3 }, owner.identity, 'another-library'));
      await world.raw.put('meta.min_schema_version', encodeStatement('min-schema', { version: 99 }, owner.identity, 'another-library'));
      member.store.hidden.add(`changes.${o}.1`);
      await world.settle([member]);
      expect(member.sync.status().rebootstrapRequired).toBe(false);
      expect(
        member.sync
          .status()
          .alarms.map((alarm) => alarm.message)
          .join('\n'),
      ).toContain('made for another library');
      member.store.repair();
      await world.settle([member]);
      expect(member.sync.status().devices[o]?.applied).toBe(3);
      expect(member.sync.status().lastError ?? '').not.toContain('SchemaTooOld');
    },
  },
  {
    claim:
      'S13 a lie in a head or an applied map outlives no repair: lag and waitUntilCaughtUp recover once the store does, with no restart',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const other = await world.join('other');
      const o = owner.identity.deviceId;
      for (const n of [1, 2, 3]) await write(owner, `owner-${n}`);
      await world.settle([member, other, owner]);
      const honest = JSON.parse(Buffer.from(await stored(world, `heads.${o}`)).toString()) as Record<string, unknown>;
      const otherHead = JSON.parse(Buffer.from(await stored(world, `heads.${other.identity.deviceId}`)).toString()) as Record<
        string,
        unknown
      >;
      // One round of lies: the owner's head far ahead, and another member claiming to have applied far ahead.
      member.store.lies.set(`heads.${o}`, bytes(JSON.stringify({ ...honest, seq: 2 ** 53 - 1 })));
      member.store.lies.set(`heads.${other.identity.deviceId}`, bytes(JSON.stringify({ ...otherHead, applied: { [o]: 2 ** 50 } })));
      await world.settle([member], 1);
      expect(member.sync.status().devices[o]?.lag).toBeGreaterThan(1_000_000);
      member.store.repair();
      await member.sync.waitUntilCaughtUp({ timeoutMs: 5000 });
      expect(member.sync.status().devices[o]).toMatchObject({ applied: 3, lag: 0 });
      await expectHealthy([owner, member, other]);
    },
  },
  {
    claim:
      'S14 a chain that switches between two forks of one device (a cloned device, each copy signing its own seq 2 and 3) breaks there (ChainBroken): nothing after the switch is applied',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      await write(member, 'member-1');
      await world.settle();
      const m = member.identity.deviceId;
      const key = await keyHeldBy(world, member.identity, 0);
      const first = await stored(world, `changes.${m}.1`);
      // Fork A is in the store; fork B, validly signed by the same device, follows its own seq 2.
      const a2 = await forgeChangeset({
        author: member.identity,
        seq: 2,
        previous: first,
        generation: 0,
        key,
        events: [eventOf('fork-a-2')],
      });
      const b2 = await forgeChangeset({
        author: member.identity,
        seq: 2,
        previous: first,
        generation: 0,
        key,
        events: [eventOf('fork-b-2')],
      });
      const b3 = await forgeChangeset({ author: member.identity, seq: 3, previous: b2, generation: 0, key, events: [eventOf('fork-b-3')] });
      await world.raw.create(`changes.${m}.2`, a2);
      await world.raw.create(`changes.${m}.3`, b3);
      const late = await world.join('late');
      await world.settle([owner, late]);
      for (const node of [owner, late]) {
        expect(alarmsOf(node, m), node.name).toContain('ChainBroken');
        expect(await payloads(node.log)).toContain('fork-a-2');
        expect(await payloads(node.log)).not.toContain('fork-b-3');
      }
    },
  },
];

export const memberAttacks: Attack[] = [
  {
    claim: 'M1 a device that is no member cannot have changesets accepted (Forged)',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const stranger = await import('@weft/sync').then(({ createIdentity }) => createIdentity());
      await world.raw.create(
        `changes.${stranger.deviceId}.1`,
        await forgeChangeset({
          author: stranger,
          seq: 1,
          previous: undefined,
          generation: 0,
          key: randomBytes(32),
          events: [eventOf('stranger')],
        }),
      );
      await world.raw.put(`heads.${stranger.deviceId}`, bytes(JSON.stringify({ seq: 1, time: 0 })));
      await world.settle();
      for (const node of [owner, member]) expect(alarmsOf(node, stranger.deviceId)).toContain('Forged');
      await expectHealthy([owner, member], ['stranger']);
    },
  },
  {
    claim: 'M2 a member cannot write as another member (Forged)',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const other = await world.join('other');
      await world.settle();
      const key = await keyHeldBy(world, member.identity, 0);
      const o = other.identity.deviceId;
      await world.raw.create(
        `changes.${o}.1`,
        await forgeChangeset({
          author: member.identity,
          device: o,
          seq: 1,
          previous: undefined,
          generation: 0,
          key,
          events: [eventOf('impersonated')],
        }),
      );
      await world.settle([owner, member]);
      expect(alarmsOf(owner, o)).toContain('Forged');
      await expectHealthy([owner, member], ['impersonated']);
    },
  },
  {
    claim:
      "M6 a member cannot replace another member's event: a copy of it, other payload, in the member's own signed changeset is refused (Forged) on every device, those added later too, and no device keeps it",
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      await world.settle();
      await write(owner, 'original');
      await write(member, 'member-1');
      await world.settle();
      const original = (await owner.log.read().next()).value;
      if (original === undefined) throw new Error('no event');
      // The id names its author: its last 6 bytes are the owner's tag.
      expect(original.id.endsWith(owner.identity.deviceId.slice(0, 12))).toBe(true);
      const m = member.identity.deviceId;
      await world.raw.create(
        `changes.${m}.2`,
        await forgeChangeset({
          author: member.identity,
          seq: 2,
          previous: await stored(world, `changes.${m}.1`),
          generation: 0,
          key: await keyHeldBy(world, member.identity, 0),
          events: [eventOf('forged copy', original.id), eventOf('member-2')],
        }),
      );
      const late = await world.device('late', undefined, { bootstrap: 'replay' });
      await owner.sync.addMember(invitationOf(late.identity));
      const other = await world.join('other');
      await world.settle([owner, late, other]);
      for (const node of [owner, late, other]) expect(alarmsOf(node, m), node.name).toContain('Forged');
      await expectHealthy([owner, late, other], ['forged copy']);
      // The rest of the member's changeset is its own, and applied.
      expect(await payloads(late.log)).toContain('member-2');
      expect(await payloads(late.log)).toContain('original');
    },
  },
  {
    claim:
      'M7 an event id seen with other contents than the copy a device holds is an alarm (Equivocation), and the held copy stays (events written before sync tagged their ids: a stated limit)',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      await write(member, 'member-1');
      await world.settle();
      // An untagged id (as an event written before its device opened sync has).
      const untagged = eventOf('untagged original');
      const m = member.identity.deviceId;
      const key = await keyHeldBy(world, member.identity, 0);
      const first = await forgeChangeset({
        author: member.identity,
        seq: 2,
        previous: await stored(world, `changes.${m}.1`),
        generation: 0,
        key,
        events: [untagged],
      });
      await world.raw.create(`changes.${m}.2`, first);
      await world.settle([owner]);
      await world.raw.create(
        `changes.${m}.3`,
        await forgeChangeset({
          author: member.identity,
          seq: 3,
          previous: first,
          generation: 0,
          key,
          events: [{ ...untagged, payload: bytes('untagged rewritten') }],
        }),
      );
      await world.settle([owner]);
      expect(alarmsOf(owner, m)).toContain('Equivocation');
      expect(await payloads(owner.log)).toContain('untagged original');
      expect(await payloads(owner.log)).not.toContain('untagged rewritten');
    },
  },
  {
    claim: 'M3 a reader cannot write (Revoked)',
    run: async (world) => {
      const owner = world.node('owner');
      const reader = await world.join('reader', 'reader');
      await world.settle();
      const key = await keyHeldBy(world, reader.identity, 0);
      const r = reader.identity.deviceId;
      await world.raw.create(
        `changes.${r}.1`,
        await forgeChangeset({
          author: reader.identity,
          seq: 1,
          previous: undefined,
          generation: 0,
          key,
          events: [eventOf('reader write')],
        }),
      );
      await world.settle([owner]);
      expect(alarmsOf(owner, r)).toContain('Revoked');
      await expectHealthy([owner, reader], ['reader write']);
    },
  },
  {
    claim: 'M4 a member cannot change the membership: its entries take no effect',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      await world.settle();
      const friend = (await import('@weft/sync')).createIdentity();
      const entry = encodeMembershipEntry(
        {
          op: 'add',
          author: member.identity.deviceId,
          seq: 1,
          parents: owner.sync.membership()?.tips ?? [],
          subject: friend.deviceId,
          subjectKey: friend.publicKey,
          subjectX25519: invitationOf(friend).x25519PublicKey,
          role: 'owner',
          keyGeneration: 0,
          cutoff: 0,
        },
        member.identity,
        'family',
      );
      await world.raw.create(`membership.${member.identity.deviceId}.1`, entry);
      await world.settle();
      for (const node of [owner, member]) {
        expect(node.sync.membership()?.members.has(friend.deviceId)).toBe(false);
        expect(node.sync.membership()?.rejected.some((rejected) => /not an owner/.test(rejected.reason))).toBe(true);
      }
    },
  },
  {
    claim: 'M5 a member cannot hand out keys or snapshots: its wraps and manifests are refused (KeyCommitmentMismatch, SnapshotRejected)',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      await write(owner, 'owner-1');
      await world.settle();
      // The member plants a wrap of a key it chose for the next generation, for a device the owner adds later.
      const late = (await import('@weft/sync')).createIdentity();
      const chosen = new Uint8Array(randomBytes(32));
      await world.raw.put(`keys.${late.deviceId}.0`, wrapKey(chosen, 0, invitationOf(late), member.identity, 'family', nodeXChaCha));
      // And a snapshot of its own.
      await publishForgedSnapshot(world, member.identity, await keyHeldBy(world, member.identity, 0), {
        generation: 0,
        membership: owner.sync.membership()?.tips ?? [],
        cursors: {},
        events: [eventOf('member snapshot')],
      });
      await owner.sync.addMember(invitationOf(late));
      const lateNode = await world.device('late', late);
      await world.settle();
      expect(alarmsOf(lateNode)).toContain('SnapshotRejected');
      expect(lateNode.sync.status().keyGeneration).toBe(0);
      await expectHealthy([owner, member, lateNode], ['member snapshot']);
    },
  },
];

/** Publishes a snapshot as `author` holding `key`, and points `snapshot.current` at it (what anyone with store access can do). */
async function publishForgedSnapshot(
  world: World,
  author: DeviceIdentity,
  key: Uint8Array,
  options: {
    generation: number;
    membership: readonly string[];
    cursors: Record<string, { seq: number; hash: string }>;
    events: ReturnType<typeof eventOf>[];
    /** The library the manifest is signed for (this one unless given). */
    manifestLibrary?: string;
  },
): Promise<void> {
  const { blake3 } = await loadHashers();
  const id = randomBytes(12).toString('hex');
  const body = encodeSnapshotBody(options.cursors, encodeChangeset(options.events));
  const nonce = randomBytes(24);
  const keyPath = `snapshots.${id}.1`;
  await world.raw.put(keyPath, concat(nonce, nodeXChaCha.seal(key, nonce, body, payloadAad('family', keyPath, options.generation))));
  const manifest = {
    id,
    chunks: 1,
    generation: options.generation,
    author: author.deviceId,
    createdAt: Date.now(),
    bodyHash: Buffer.from(blake3(body)).toString('hex'),
    cursors: options.cursors,
    membership: options.membership,
  };
  await world.raw.put(`snapshots.${id}.0`, encodeManifest(manifest, author, options.manifestLibrary ?? 'family'));
  await world.raw.put('snapshot.current', bytes(JSON.stringify({ id, generation: options.generation, createdAt: manifest.createdAt })));
}

export const removedAttacks: Attack[] = [
  {
    claim: 'R1 a removed member cannot have changesets above its cutoff accepted (Revoked), and reads nothing sealed after the rotation',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const removed = await world.join('removed');
      await write(removed, 'before removal');
      await world.settle();
      const { cutoff } = await owner.sync.removeMember(removed.identity.deviceId);
      expect(cutoff).toBe(1);
      const r = removed.identity.deviceId;
      const oldKey = await writeAfterRemoval(world, removed.identity, 'after removal');
      await write(owner, 'owner after rotation');
      await write(member, 'member after rotation');
      const late = await world.join('late');
      await world.settle([owner, member, late]);
      for (const node of [owner, member, late]) expect(alarmsOf(node, r)).toContain('Revoked');
      for (const keyPath of [`changes.${owner.identity.deviceId}.1`, `changes.${member.identity.deviceId}.1`])
        expect(await readableWith(world, keyPath, oldKey)).toBe(false);
      await expectHealthy([owner, member, late], ['after removal']);
      expect(await payloads(late.log)).toContain('before removal');
    },
  },
  {
    claim:
      'R2 a removed member that rewrites its history at or below the cutoff is caught by devices added later (Equivocation) and nothing of the rewrite is applied',
    run: async (world) => {
      const owner = world.node('owner');
      const removed = await world.join('removed');
      for (const n of [1, 2, 3]) await write(removed, `original-${n}`);
      await world.settle();
      await owner.sync.removeMember(removed.identity.deviceId);
      const r = removed.identity.deviceId;
      const originals = await Promise.all([1, 2, 3].map((seq) => stored(world, `changes.${r}.${seq}`)));
      const key = await keyHeldBy(world, removed.identity, 0);
      // Rewrite 2 and 3: validly signed, chained from 1, but another history.
      const rewritten2 = await forgeChangeset({
        author: removed.identity,
        seq: 2,
        previous: originals[0],
        generation: 0,
        key,
        events: [eventOf('rewritten-2')],
      });
      const rewritten3 = await forgeChangeset({
        author: removed.identity,
        seq: 3,
        previous: rewritten2,
        generation: 0,
        key,
        events: [eventOf('rewritten-3')],
      });
      await world.raw.put(`changes.${r}.2`, rewritten2);
      await world.raw.put(`changes.${r}.3`, rewritten3);
      const late = await world.device('late', undefined, { bootstrap: 'replay' });
      await owner.sync.addMember(invitationOf(late.identity));
      await world.settle([owner, late]);
      expect(alarmsOf(late, r)).toContain('Equivocation');
      expect(await payloads(late.log)).not.toContain('original-1');
      expect(await payloads(late.log)).not.toContain('rewritten-2');
      // The store is repaired: the original history is served again.
      for (const [index, value] of originals.entries()) await world.raw.put(`changes.${r}.${index + 1}`, value);
      await world.settle([owner, late]);
      await expectHealthy([owner, late], ['rewritten-2', 'rewritten-3']);
      expect(await payloads(late.log)).toContain('original-3');
    },
  },
  {
    claim: 'R3 a device that applied a history other than the one the removal bound raises Equivocation',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const removed = await world.join('removed');
      await write(removed, 'original-1');
      const r = removed.identity.deviceId;
      const original = await stored(world, `changes.${r}.1`);
      const key = await keyHeldBy(world, removed.identity, 0);
      // The store shows the member one history and the owner (who removes the device) another.
      await world.settle([member]);
      const other = await forgeChangeset({
        author: removed.identity,
        seq: 1,
        previous: undefined,
        generation: 0,
        key,
        events: [eventOf('shown to the owner')],
      });
      owner.store.lies.set(`changes.${r}.1`, other);
      await world.settle([owner]);
      await owner.sync.removeMember(r);
      owner.store.repair();
      await world.raw.put(`changes.${r}.1`, original);
      await world.settle([member]);
      expect(alarmsOf(member, r)).toContain('Equivocation');
    },
  },
  {
    claim:
      'R4 a removed owner cannot plant a key wrap: wraps count only from owners of their generation and must match its commitment (KeyCommitmentMismatch)',
    run: async (world) => {
      const owner = world.node('owner');
      const coOwner = await world.join('co-owner', 'owner');
      const member = await world.join('member');
      await world.settle();
      const m = invitationOf(member.identity);
      const chosen = new Uint8Array(randomBytes(32));
      const plant = () => world.raw.put(`keys.${m.deviceId}.1`, wrapKey(chosen, 1, m, coOwner.identity, 'family', nodeXChaCha));
      // Planted before its removal: the rotating owner writes its own wrap over it.
      await plant();
      await owner.sync.removeMember(coOwner.identity.deviceId);
      // Planted again after its removal, before the member looked.
      await plant();
      await world.settle([member]);
      expect(alarmsOf(member, coOwner.identity.deviceId)).toContain('KeyCommitmentMismatch');
      expect(member.sync.status().rotationPending).toBe(true);
      await member.log.append({ entity: 'doc', kind, payload: bytes('member secret') });
      await member.sync.syncOnce();
      expect(member.sync.status().pendingUploads).toBe(1);
      // Repair: the owner writes the member's wraps again.
      await owner.sync.addMember(m);
      await world.settle([owner, member]);
      expect(member.sync.status().rotationPending).toBe(false);
      expect(member.sync.status().keyGeneration).toBe(1);
      expect(await readableWith(world, `changes.${m.deviceId}.1`, chosen)).toBe(false);
      await expectHealthy([owner, member]);
      expect(await payloads(owner.log)).toContain('member secret');
    },
  },
  {
    claim: 'R5 a removed owner cannot feed new devices a fake history: its snapshots lapse with its authority (SnapshotRejected)',
    run: async (world) => {
      const owner = world.node('owner');
      const coOwner = await world.join('co-owner', 'owner');
      for (const n of [1, 2]) await write(owner, `owner-${n}`);
      await world.settle();
      const tips = coOwner.sync.membership()?.tips ?? [];
      const oldKey = await keyHeldBy(world, coOwner.identity, 0);
      await owner.sync.removeMember(coOwner.identity.deviceId);
      await publishForgedSnapshot(world, coOwner.identity, oldKey, {
        generation: 0,
        membership: tips,
        cursors: { [owner.identity.deviceId]: { seq: 99, hash: 'ab'.repeat(32) } },
        events: [eventOf('invented')],
      });
      const late = await world.join('late');
      await world.settle([owner, late]);
      expect(alarmsOf(late, coOwner.identity.deviceId)).toContain('SnapshotRejected');
      await late.sync.waitUntilCaughtUp({ timeoutMs: 5000 });
      await expectHealthy([owner, late], ['invented']);
    },
  },
  {
    claim:
      "R6 a snapshot's cursors are checked against the store: beyond a device's changesets, or another hash, it is refused (SnapshotRejected)",
    run: async (world) => {
      const owner = world.node('owner');
      for (const n of [1, 2]) await write(owner, `owner-${n}`);
      const key = await keyHeldBy(world, owner.identity, 0);
      const o = owner.identity.deviceId;
      // Even an owner's own device (stolen, say) cannot claim cursors the store contradicts.
      for (const cursor of [
        { seq: 7, hash: 'cd'.repeat(32) },
        { seq: 2, hash: 'ef'.repeat(32) },
      ]) {
        await publishForgedSnapshot(world, owner.identity, key, {
          generation: 0,
          membership: owner.sync.membership()?.tips ?? [],
          cursors: { [o]: cursor },
          events: [eventOf('stolen-device snapshot')],
        });
        const late = await world.join(`late-${cursor.seq}`);
        await world.settle([late]);
        expect(alarmsOf(late, o)).toContain('SnapshotRejected');
        await expectHealthy([owner, late], ['stolen-device snapshot']);
      }
    },
  },
  {
    claim: "R7 a removed owner's membership entries and owner statements take no effect",
    run: async (world) => {
      const owner = world.node('owner');
      const coOwner = await world.join('co-owner', 'owner');
      await world.settle();
      await owner.sync.removeMember(coOwner.identity.deviceId);
      await world.settle([owner]);
      const friend = (await import('@weft/sync')).createIdentity();
      const entry = encodeMembershipEntry(
        {
          op: 'add',
          author: coOwner.identity.deviceId,
          seq: 9,
          parents: owner.sync.membership()?.tips ?? [],
          subject: friend.deviceId,
          subjectKey: friend.publicKey,
          subjectX25519: invitationOf(friend).x25519PublicKey,
          role: 'owner',
          keyGeneration: 1,
          cutoff: 0,
        },
        coOwner.identity,
        'family',
      );
      await world.raw.create(`membership.${coOwner.identity.deviceId}.9`, entry);
      await world.raw.put('meta.min_schema_version', encodeStatement('min-schema', { version: 50 }, coOwner.identity, 'family'));
      await write(owner, 'still syncing');
      await world.settle([owner]);
      expect(owner.sync.membership()?.members.has(friend.deviceId)).toBe(false);
      expect(alarmsOf(owner)).toContain('Forged');
      expect(owner.sync.status().lastPushedSeq).toBeGreaterThan(0);
    },
  },
];

/**
 * A removed owner's entries with parents from before its removal, in
 * `variants` with different hashes (grinding): each at its own seq, one free
 * field varied. With `below`, it grinds until one of them hashes below that
 * hash (what would have ordered it first under an order by hash). Returns
 * their hashes.
 */
async function backdate(
  world: World,
  author: DeviceIdentity,
  fields: Omit<MembershipFields, 'author' | 'seq' | 'parents'>,
  parents: readonly string[],
  firstSeq: number,
  variants: number,
  below?: string,
): Promise<string[]> {
  const hashers = await loadHashers();
  const chosen: Array<{ entry: Uint8Array; hash: string }> = [];
  let ground = below === undefined;
  for (let n = 0; chosen.length < variants || !ground; n++) {
    if (n > 100_000) throw new Error('grinding found no hash below the target');
    const seq = firstSeq + chosen.length;
    const varied =
      fields.op === 'remove' || fields.op === 'rotate'
        ? { ...fields, keyCommitment: new Uint8Array(randomBytes(32)) }
        : { ...fields, cutoff: n };
    const entry = encodeMembershipEntry({ ...varied, author: author.deviceId, seq, parents }, author, 'family');
    const hash = Buffer.from(hashers.blake3(entry)).toString('hex');
    const hit = below !== undefined && hash < below;
    if (chosen.length < variants - 1 || hit || (ground && chosen.length < variants)) {
      chosen.push({ entry, hash });
      ground ||= hit;
    }
  }
  for (const [index, { entry }] of chosen.entries()) await world.raw.create(`membership.${author.deviceId}.${firstSeq + index}`, entry);
  return chosen.map(({ hash }) => hash);
}

/** The hash of the entry that removed `device`, as `node` derives it. */
function removalOf(node: Node, device: string): string {
  const removedBy = node.sync.membership()?.members.get(device)?.removedBy;
  if (removedBy === undefined) throw new Error(`${device} is not removed on ${node.name}`);
  return removedBy.entry;
}

/** A device's membership fields as the owner derives them, for entries naming it as subject. */
function subjectFields(node: Node, device: string) {
  const member = node.sync.membership()?.members.get(device);
  if (member === undefined) throw new Error(`${device} is not known on ${node.name}`);
  return { subject: device, subjectKey: member.publicKey, subjectX25519: member.x25519PublicKey };
}

/** What a removed device can read: every key generation it can unwrap from the store. */
async function keysHeldBy(world: World, identity: DeviceIdentity): Promise<Uint8Array[]> {
  const keys: Uint8Array[] = [];
  for await (const entry of world.raw.scan(`keys.${identity.deviceId}`)) {
    const key = unwrapKey(decodeKeyWrap(entry.value), identity, 'family', nodeXChaCha);
    if (key !== undefined) keys.push(key);
  }
  return keys;
}

/**
 * A store that goes back to an older copy of itself (`takeCopy` takes it and
 * returns how to restore it): devices write back what it lost, and everyone
 * converges (D3). On the memory backend the copy is of the bucket's keys; on
 * spawned servers, of the server's data directory (store-amnesia.test.ts).
 */
export async function storeAmnesia(world: World, takeCopy: (world: World) => Promise<() => Promise<void>>): Promise<void> {
  const owner = world.node('owner');
  const member = await world.join('member');
  const offline = await world.join('offline');
  for (const node of [owner, member, offline]) await write(node, `${node.name} before the copy`);
  await world.settle();
  // The copy the store will be restored from.
  const restore = await takeCopy(world);
  for (const node of [owner, member, offline]) await write(node, `${node.name} after the copy`);
  await world.settle();
  const added = await world.join('added-after-the-copy');
  await world.settle([owner, member]);
  // The offline device is away from now on; the store goes back to the copy.
  await restore();
  const healers = [owner, member];
  await world.settle(healers);
  // The first device to look finds the loss and writes back what it holds (the others' too).
  expect(alarmsOf(owner)).toContain('StoreForgot');
  const late = await world.join('late');
  const everyone = [owner, member, added, late];
  await world.settle(everyone);
  for (const node of everyone) await node.sync.waitUntilCaughtUp({ timeoutMs: 5000 });
  await expectHealthy(everyone);
  expect(await payloads(late.log)).toEqual(
    expect.arrayContaining(['offline after the copy', 'owner after the copy', 'member after the copy']),
  );
  expect(alarmsOf(late)).toEqual([]);
  // The offline author comes back to a store holding its own changesets, with its own bytes: no fork.
  await world.settle([offline, ...everyone]);
  await offline.sync.waitUntilCaughtUp({ timeoutMs: 5000 });
  expect(alarmsOf(offline)).not.toContain('Fork');
  await expectHealthy([offline, ...everyone]);
}

/** A copy of every key of the world's bucket; restoring deletes what is newer and puts back what changed. */
export async function copyOfBucket(world: World): Promise<() => Promise<void>> {
  const copy = new Map<string, Uint8Array>();
  for await (const entry of world.raw.scan()) copy.set(entry.key, entry.value);
  return async () => {
    for await (const entry of world.raw.scan()) if (!copy.has(entry.key)) await world.raw.delete(entry.key);
    for (const [key, value] of copy) {
      const now = await world.raw.get(key);
      if (now === undefined || !Buffer.from(now.value).equals(Buffer.from(value))) await world.raw.put(key, value);
    }
  };
}

/**
 * A library with the founder, a co-owner, a third owner and a member, where
 * the founder has just removed the co-owner; `before` are the chain's tips
 * from before that removal (what a backdating co-owner names as parents).
 */
async function coOwnerRemoved(world: World) {
  const owner = world.node('owner');
  const coOwner = await world.join('co-owner', 'owner');
  const third = await world.join('third-owner', 'owner');
  const member = await world.join('member');
  await world.settle();
  const before = owner.sync.membership()?.tips ?? [];
  await owner.sync.removeMember(coOwner.identity.deviceId);
  await world.settle([owner, third, member]);
  return { owner, coOwner, third, member, before };
}

/** Attacks on the order of the membership chain, and on what a device remembers of it. */
export const chainAttacks: Attack[] = [
  {
    claim:
      'R8 a removed owner gains nothing by backdating: entries with parents from before its removal, ground to order before it, add no one, promote no one, remove no one and rotate nothing',
    run: async (world) => {
      const { owner, coOwner, third, member, before } = await coOwnerRemoved(world);
      const removal = removalOf(owner, coOwner.identity.deviceId);
      const { createIdentity } = await import('@weft/sync');
      const accomplice = createIdentity();
      const attacker = coOwner.identity;
      const role = { role: 'owner' as const, keyGeneration: 0, cutoff: 0 };
      const hashes = [
        ...(await backdate(
          world,
          attacker,
          {
            op: 'add',
            subject: accomplice.deviceId,
            subjectKey: accomplice.publicKey,
            subjectX25519: invitationOf(accomplice).x25519PublicKey,
            ...role,
          },
          before,
          10,
          32,
          removal,
        )),
        ...(await backdate(world, attacker, { op: 'role', ...subjectFields(owner, member.identity.deviceId), ...role }, before, 50, 8)),
        ...(await backdate(
          world,
          attacker,
          { op: 'remove', ...subjectFields(owner, third.identity.deviceId), role: 'owner', keyGeneration: 1, cutoff: 0 },
          before,
          70,
          8,
        )),
        ...(await backdate(
          world,
          attacker,
          { op: 'rotate', ...subjectFields(owner, attacker.deviceId), ...role, keyGeneration: 1 },
          before,
          90,
          8,
        )),
      ];
      // Under an order by hash, some of these would have come before the removal.
      expect(hashes.some((hash) => hash < removal)).toBe(true);
      const late = await world.join('late', 'member', 'third-owner');
      await write(member, 'member after the attack');
      await world.settle([owner, third, member, late]);
      for (const node of [owner, third, member, late]) {
        const membership = node.sync.membership();
        expect(membership?.members.has(accomplice.deviceId), node.name).toBe(false);
        expect(membership?.members.get(member.identity.deviceId)?.role).toBe('member');
        expect(node.sync.membership()?.members.get(third.identity.deviceId)?.removedAfter).toBeUndefined();
        expect(node.sync.membership()?.members.get(owner.identity.deviceId)?.removedAfter).toBeUndefined();
        expect(membership?.rejected.filter((entry) => hashes.includes(entry.hash))).toHaveLength(hashes.length);
        expect(node.sync.status().keyGeneration).toBe(1);
      }
      // The removed owner holds no key of the generation in force, and reads nothing written after.
      for (const key of await keysHeldBy(world, attacker))
        expect(await readableWith(world, `changes.${member.identity.deviceId}.1`, key)).toBe(false);
      await expectHealthy([owner, third, member, late]);
    },
  },
  {
    claim:
      'R9 a removed owner that backdates a removal of the owner that removed it removes both (stated limit): it gains no role and no key, a remaining owner rotates again, and nothing written after opens with a key it holds',
    run: async (world) => {
      const { owner, coOwner, third, member, before } = await coOwnerRemoved(world);
      await backdate(
        world,
        coOwner.identity,
        { op: 'remove', ...subjectFields(owner, owner.identity.deviceId), role: 'owner', keyGeneration: 1, cutoff: 0 },
        before,
        10,
        8,
      );
      await world.settle([third, member]);
      await write(member, 'member after the mutual removal');
      await write(third, 'third owner after the mutual removal');
      const late = await world.join('late', 'member', 'third-owner');
      await world.settle([third, member, late]);
      for (const node of [third, member, late]) {
        const membership = node.sync.membership();
        expect(membership?.members.get(coOwner.identity.deviceId)?.removedAfter).toBeDefined();
        expect(membership?.members.get(owner.identity.deviceId)?.removedAfter).toBeDefined();
        // Generation 1 came from two concurrent rotations: void; the third owner rotated to 2.
        expect(membership?.contested.has(1)).toBe(true);
        expect(node.sync.status().keyGeneration).toBe(2);
        expect(node.sync.status().rotationPending).toBe(false);
      }
      for (const key of await keysHeldBy(world, coOwner.identity)) {
        expect(await readableWith(world, `changes.${member.identity.deviceId}.1`, key)).toBe(false);
        expect(await readableWith(world, `changes.${third.identity.deviceId}.1`, key)).toBe(false);
      }
      await expectHealthy([third, member, late]);
      expect(await payloads(late.log)).toContain('member after the mutual removal');
    },
  },
  {
    claim:
      'R10 two owners that remove two members concurrently leave neither removed device a key: the concurrent generation is void and an owner rotates again',
    run: async (world) => {
      const owner = world.node('owner');
      const coOwner = await world.join('co-owner', 'owner');
      const x = await world.join('x');
      const y = await world.join('y');
      const member = await world.join('member');
      await world.settle();
      // The co-owner does not see the owner's removal before it writes its own.
      const hiddenKey = `membership.${owner.identity.deviceId}.${(owner.sync.membership()?.authorSeqs.get(owner.identity.deviceId) ?? 0) + 1}`;
      coOwner.store.hidden.add(hiddenKey);
      await owner.sync.removeMember(x.identity.deviceId);
      await coOwner.sync.removeMember(y.identity.deviceId);
      coOwner.store.repair();
      await world.settle([owner, coOwner, member]);
      await write(member, 'after both removals');
      await world.settle([owner, coOwner, member]);
      for (const node of [owner, coOwner, member]) {
        const membership = node.sync.membership();
        expect(membership?.members.get(x.identity.deviceId)?.removedAfter).toBeDefined();
        expect(membership?.members.get(y.identity.deviceId)?.removedAfter).toBeDefined();
        expect(membership?.contested.has(1)).toBe(true);
        expect(node.sync.status().keyGeneration).toBe(2);
      }
      for (const removed of [x, y])
        for (const key of await keysHeldBy(world, removed.identity))
          expect(await readableWith(world, `changes.${member.identity.deviceId}.1`, key)).toBe(false);
      await expectHealthy([owner, coOwner, member]);
    },
  },
  {
    claim:
      'D1 a restart does not undo a removal: a device keeps every membership entry it verified, and a store that hides one after the restart is a StoreForgot alarm',
    run: async (world) => {
      const owner = world.node('owner');
      await world.join('member');
      const removed = await world.join('removed');
      await write(removed, 'before removal');
      await world.settle();
      await owner.sync.removeMember(removed.identity.deviceId);
      await world.settle();
      const o = owner.identity.deviceId;
      const r = removed.identity.deviceId;
      const removalKey = `membership.${o}.${owner.sync.membership()?.authorSeqs.get(o)}`;
      const member = await world.restart('member');
      // After the restart the store hides the removal and the member's wrap of the new generation.
      member.store.hidden.add(removalKey);
      member.store.hidden.add(`keys.${member.identity.deviceId}.1`);
      const oldKey = await writeAfterRemoval(world, removed.identity, 'removed device after its removal');
      await write(member, 'member after restart');
      await world.settle([owner, member]);
      expect(alarmsOf(member)).toContain('StoreForgot');
      expect(alarmsOf(member, r)).toContain('Revoked');
      expect(member.sync.membership()?.members.get(r)?.removedAfter).toBe(1);
      expect(member.sync.status().keyGeneration).toBe(1);
      expect(await readableWith(world, `changes.${member.identity.deviceId}.1`, oldKey)).toBe(false);
      await expectHealthy([owner, member], ['removed device after its removal']);
    },
  },
  {
    claim:
      'D2 a store that forgets membership entries and key wraps is healed: devices write back what they verified, and a device added afterwards sees the removal',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      const removed = await world.join('removed');
      await world.settle();
      await owner.sync.removeMember(removed.identity.deviceId);
      await world.settle();
      const forgotten: string[] = [];
      for await (const entry of world.raw.scan('membership')) forgotten.push(entry.key);
      forgotten.push(`keys.${member.identity.deviceId}.1`);
      for (const key of forgotten) await world.raw.delete(key);
      await world.restart('member');
      await world.settle([world.node('member'), owner]);
      for (const key of forgotten) expect(await world.raw.get(key), key).toBeDefined();
      const late = await world.join('late');
      await write(world.node('member'), 'after the store forgot');
      await world.settle([owner, world.node('member'), late]);
      expect(late.sync.membership()?.members.get(removed.identity.deviceId)?.removedAfter).toBeDefined();
      expect(late.sync.status().keyGeneration).toBe(1);
      await expectHealthy([owner, world.node('member'), late]);
    },
  },
  {
    claim:
      'D3 a store restored from an older copy is healed: devices write back, byte for byte, the changesets, heads, membership entries and key wraps it lost, those of an offline author too; every device, and one added later, holds every event and catches up',
    run: (world) => storeAmnesia(world, copyOfBucket),
  },
  {
    claim:
      'X1 a membership entry of another library is refused (Forged), though its author is an owner in both: every signed object binds its library',
    run: async (world) => {
      const owner = world.node('owner');
      const member = await world.join('member');
      await world.settle();
      const { createIdentity } = await import('@weft/sync');
      const accomplice = createIdentity();
      // The same founder, an owner of "other" too, adds the accomplice there: the entry is copied into this library.
      const copied = encodeMembershipEntry(
        {
          op: 'add',
          author: owner.identity.deviceId,
          seq: 50,
          parents: owner.sync.membership()?.tips ?? [],
          subject: accomplice.deviceId,
          subjectKey: accomplice.publicKey,
          subjectX25519: invitationOf(accomplice).x25519PublicKey,
          role: 'owner',
          keyGeneration: 0,
          cutoff: 0,
        },
        owner.identity,
        'other',
      );
      await world.raw.create(`membership.${owner.identity.deviceId}.50`, copied);
      const late = await world.join('late');
      await world.settle([owner, member, late]);
      for (const node of [owner, member, late]) {
        expect(node.sync.membership()?.members.has(accomplice.deviceId)).toBe(false);
        expect(alarmsOf(node, owner.identity.deviceId)).toContain('Forged');
      }
      // A snapshot manifest the owner signed for the other library, over a body that is valid here.
      await write(owner, 'owner-1');
      const o = owner.identity.deviceId;
      const hashers = await loadHashers();
      const first = await stored(world, `changes.${o}.1`);
      await publishForgedSnapshot(world, owner.identity, await keyHeldBy(world, owner.identity, 0), {
        generation: 0,
        membership: owner.sync.membership()?.tips ?? [],
        cursors: { [o]: { seq: 1, hash: Buffer.from(hashers.blake3(first)).toString('hex') } },
        events: [eventOf('other-library snapshot')],
        manifestLibrary: 'other',
      });
      const newcomer = await world.join('newcomer');
      await world.settle([owner, newcomer]);
      expect(alarmsOf(newcomer)).toContain('Forged');
      await expectHealthy([owner, newcomer], ['other-library snapshot']);
      expect(await payloads(newcomer.log)).toContain('owner-1');
    },
  },
];

/** Limits stated in docs/security.md, shown to hold as stated. */
export const limitAttacks: Attack[] = [
  {
    claim: "L1 an owner's stolen device can add a device before it is removed, but every device sees the signed entry and who wrote it",
    run: async (world) => {
      const owner = world.node('owner');
      const stolen = await world.join('stolen', 'owner');
      const member = await world.join('member');
      await world.settle();
      const accomplice = (await import('@weft/sync')).createIdentity();
      await stolen.sync.addMember(invitationOf(accomplice));
      await world.settle([owner, member]);
      for (const node of [owner, member]) {
        expect(node.sync.membership()?.members.has(accomplice.deviceId)).toBe(true);
      }
      await owner.sync.removeMember(stolen.identity.deviceId);
      await owner.sync.removeMember(accomplice.deviceId);
      await world.settle([owner, member]);
      expect(owner.sync.status().keyGeneration).toBe(2);
      expect(member.sync.status().keyGeneration).toBe(2);
    },
  },
];

export const allAttacks: Attack[] = [...storeAttacks, ...memberAttacks, ...removedAttacks, ...chainAttacks, ...limitAttacks];
