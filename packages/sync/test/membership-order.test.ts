/**
 * Properties of `deriveMembership` itself (no store, no devices): the order
 * in which entries are listed changes nothing, and a removed owner's entries
 * with parents from before its removal change nothing, whatever they say and
 * whatever their hashes (removal wins; nothing is ordered by hash).
 */
import { randomBytes } from 'node:crypto';
import { loadHashers } from '@weft/eventlog';
import {
  createIdentity,
  type DeviceIdentity,
  decodeMembershipEntry,
  deriveMembership,
  encodeMembershipEntry,
  invitationOf,
  type MembershipEntry,
  type MembershipFields,
  type MembershipState,
} from '@weft/sync';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? (process.env.WEFT_LONG === '1' ? 500 : 60));
const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const hashers = await loadHashers();
const library = 'family';

const [founder, coOwner, third, member, accomplice] = Array.from({ length: 5 }, () => createIdentity()) as [
  DeviceIdentity,
  DeviceIdentity,
  DeviceIdentity,
  DeviceIdentity,
  DeviceIdentity,
];

function entry(author: DeviceIdentity, fields: Omit<MembershipFields, 'author'>): MembershipEntry {
  return decodeMembershipEntry(encodeMembershipEntry({ ...fields, author: author.deviceId }, author, library), hashers, library);
}

function about(subject: DeviceIdentity) {
  return { subject: subject.deviceId, subjectKey: subject.publicKey, subjectX25519: invitationOf(subject).x25519PublicKey };
}

const commitment = () => new Uint8Array(randomBytes(32));

/** founder creates, adds co-owner, third owner and member; then removes the co-owner. */
function honestChain(): { entries: MembershipEntry[]; beforeRemoval: MembershipEntry[] } {
  const genesis = entry(founder, {
    op: 'add',
    seq: 1,
    parents: [],
    ...about(founder),
    role: 'owner',
    keyGeneration: 0,
    cutoff: 0,
    keyCommitment: commitment(),
  });
  const addCo = entry(founder, {
    op: 'add',
    seq: 2,
    parents: [genesis.hash],
    ...about(coOwner),
    role: 'owner',
    keyGeneration: 0,
    cutoff: 0,
  });
  const addThird = entry(coOwner, {
    op: 'add',
    seq: 1,
    parents: [addCo.hash],
    ...about(third),
    role: 'owner',
    keyGeneration: 0,
    cutoff: 0,
  });
  const addMember = entry(third, {
    op: 'add',
    seq: 1,
    parents: [addThird.hash],
    ...about(member),
    role: 'member',
    keyGeneration: 0,
    cutoff: 0,
  });
  const removal = entry(founder, {
    op: 'remove',
    seq: 3,
    parents: [addMember.hash],
    ...about(coOwner),
    role: 'owner',
    keyGeneration: 1,
    cutoff: 0,
    keyCommitment: commitment(),
  });
  const beforeRemoval = [genesis, addCo, addThird, addMember];
  return { entries: [...beforeRemoval, removal], beforeRemoval };
}

/** What a membership says, comparably. */
function summary(state: MembershipState) {
  return {
    members: [...state.members.values()].map((m) => `${m.deviceId}:${m.role}:${m.removedAfter === undefined ? 'in' : 'out'}`).sort(),
    generation: state.generation,
    commitments: [...state.commitments].sort(([a], [b]) => a - b),
    contested: [...state.contested].sort(),
  };
}

const founderPublic = { deviceId: founder.deviceId, publicKey: founder.publicKey };

/** A backdated entry of the removed co-owner: any operation, parents from before its removal. */
const backdated = fc.record({
  op: fc.constantFrom('add-accomplice', 'promote-member', 'remove-third', 'remove-founder', 'rotate', 'demote-third'),
  parents: fc.subarray([0, 1, 2, 3], { minLength: 1 }),
  variant: fc.nat(),
});

describe('membership derivation', () => {
  it('does not depend on the listing order, and backdated entries of a removed owner change nothing but a mutual removal', () => {
    console.log(`membership order property: ${runs} runs, seed ${seed} (replay with WEFT_SEED=${seed})`);
    const { entries, beforeRemoval } = honestChain();
    const honest = summary(deriveMembership(entries, founderPublic));
    fc.assert(
      fc.property(fc.array(backdated, { minLength: 1, maxLength: 6 }), fc.nat(), (attacks, shuffleSeed) => {
        const forged = attacks.map((attack, index) => {
          const parents = attack.parents.map((at) => (beforeRemoval[at] as MembershipEntry).hash);
          const base = { seq: 10 + index, parents, keyGeneration: 0, cutoff: attack.variant % 1000 };
          switch (attack.op) {
            case 'add-accomplice':
              return entry(coOwner, { ...base, op: 'add', ...about(accomplice), role: 'owner' });
            case 'promote-member':
              return entry(coOwner, { ...base, op: 'role', ...about(member), role: 'owner' });
            case 'demote-third':
              return entry(coOwner, { ...base, op: 'role', ...about(third), role: 'reader' });
            case 'remove-third':
              return entry(coOwner, {
                ...base,
                op: 'remove',
                ...about(third),
                role: 'owner',
                keyGeneration: 1,
                cutoff: 0,
                keyCommitment: commitment(),
              });
            case 'remove-founder':
              return entry(coOwner, {
                ...base,
                op: 'remove',
                ...about(founder),
                role: 'owner',
                keyGeneration: 1,
                cutoff: 0,
                keyCommitment: commitment(),
              });
            default:
              return entry(coOwner, {
                ...base,
                op: 'rotate',
                ...about(coOwner),
                role: 'owner',
                keyGeneration: 1,
                cutoff: 0,
                keyCommitment: commitment(),
              });
          }
        });
        const all = [...entries, ...forged];
        const shuffled = [...all].sort(() => (shuffleSeed++ % 3) - 1);
        const derived = deriveMembership(all, founderPublic);
        expect(summary(deriveMembership(shuffled, founderPublic))).toEqual(summary(derived));
        // A removal of the founder counts where the co-owner was an owner: its parents reach the co-owner's addition.
        const mutual = attacks.some((attack) => attack.op === 'remove-founder' && attack.parents.some((at) => at >= 1));
        const result = summary(derived);
        if (!mutual) {
          // Nothing the removed owner wrote counts: the honest membership, generation and key commitment.
          expect(result).toEqual(honest);
        } else {
          // The stated limit: the founder that removed it is removed too; no one else changes, and generation 1 is void.
          expect(result.members).toContain(`${founder.deviceId}:owner:out`);
          expect(result.members).toContain(`${coOwner.deviceId}:owner:out`);
          expect(result.members).toContain(`${third.deviceId}:owner:in`);
          expect(result.members).toContain(`${member.deviceId}:member:in`);
          expect(result.members.some((m) => m.startsWith(accomplice.deviceId))).toBe(false);
          expect(result.contested).toEqual([1]);
          expect(result.commitments.map(([generation]) => generation)).toEqual([0]);
        }
      }),
      { numRuns: runs, seed, endOnFailure: true },
    );
  });
});
