/**
 * Attacks on the order of the membership chain (a removed owner backdating,
 * concurrent removals), on what a device remembers (a restart, a store that
 * forgets) and on library binding: claims R8-R10, D1-D3 and X1 of
 * docs/security.md.
 */
import { randomBytes } from 'node:crypto';
import { loadHashers, nodeXChaCha } from '@weft/eventlog';
import { type DeviceIdentity, decodeKeyWrap, encodeMembershipEntry, invitationOf, unwrapKey } from '@weft/sync';
import { expect } from 'vitest';
import type { MembershipFields } from '../../src/membership.js';
import { type Attack, keyHeldBy, publishForgedSnapshot, readableWith, stored, write, writeAfterRemoval } from './attack-helpers.js';
import { alarmsOf, eventOf, expectHealthy, type Node, payloads, type World } from './world.js';

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
