/**
 * One attack per claim of docs/security.md (the "Sync" section names each
 * claim's id). Each builds a library, attacks it as the store or as a
 * malicious member, and asserts what the claim says: honest devices, those
 * there before the attack and those added after it, detect it with a named
 * alarm, apply nothing forged, keep verifying logs, and converge once the
 * store is repaired.
 */
import { randomBytes } from 'node:crypto';
import { nodeXChaCha } from '@weft/eventlog';
import { encodeMembershipEntry, invitationOf, wrapKey } from '@weft/sync';
import { expect } from 'vitest';
import { encodeStatement } from '../../src/statements.js';
import {
  type Attack,
  expectNotCaughtUp,
  keyHeldBy,
  publishForgedSnapshot,
  readableWith,
  stored,
  write,
  writeAfterRemoval,
} from './attack-helpers.js';
import { chainAttacks } from './chain-attacks.js';
import { alarmsOf, bytes, eventOf, expectHealthy, forgeChangeset, kind, payloads } from './world.js';

export type { Attack } from './attack-helpers.js';

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
