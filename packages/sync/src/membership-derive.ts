/**
 * Deriving the membership from a set of signed entries (the rules are in
 * docs/formats/sync-membership.md, "Deriving the membership"): positional
 * authority, removal wins, concurrent rotations void. The entry format
 * itself is membership.ts.
 */
import { bytesEqual, toHex } from '@weft/common';
import { type DevicePublic, deviceIdOf } from './identity.js';
import type { Member, MembershipEntry, MembershipState } from './membership.js';

const zeroHashHex = '0'.repeat(64);

/**
 * What derivations of one chain share: per entry hash, its ancestors and the
 * membership its causal past produces. Both depend only on the hash (an
 * entry names its parents by hash), so a cache can live as long as the chain.
 */
export interface MembershipCache {
  readonly ancestors: Map<string, ReadonlySet<string>>;
  readonly before: Map<string, MembershipState>;
}

export function newMembershipCache(): MembershipCache {
  return { ancestors: new Map(), before: new Map() };
}

/** Concurrent entries are ordered by author and seq, never by a value the author can grind after the fact. */
function compareEntries(a: MembershipEntry, b: MembershipEntry): number {
  if (a.author !== b.author) return a.author < b.author ? -1 : 1;
  if (a.seq !== b.seq) return a.seq - b.seq;
  return a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0;
}

function commitmentOf(entry: MembershipEntry): string | undefined {
  const hex = toHex(entry.keyCommitment);
  return hex === zeroHashHex ? undefined : hex;
}

function isGenesis(entry: MembershipEntry, founder: DevicePublic): boolean {
  return (
    entry.op === 'add' &&
    entry.parents.length === 0 &&
    entry.author === founder.deviceId &&
    entry.subject === founder.deviceId &&
    entry.role === 'owner' &&
    bytesEqual(entry.authorKey, founder.publicKey)
  );
}

function activeOwnersIn(members: ReadonlyMap<string, Member>): number {
  let count = 0;
  for (const member of members.values()) if (member.role === 'owner' && member.removedAfter === undefined) count++;
  return count;
}

/**
 * Whether an entry is within its author's authority where its author wrote
 * it: in the membership its own causal past produces. Returns why not.
 */
function positionalReason(entry: MembershipEntry, past: MembershipState): string | undefined {
  const author = past.members.get(entry.author);
  if (author === undefined || author.removedAfter !== undefined || author.role !== 'owner')
    return `${entry.author} is not an owner at this point`;
  if (!bytesEqual(author.publicKey, entry.authorKey)) return 'the author key is not the member key';
  const subject = past.members.get(entry.subject);
  switch (entry.op) {
    case 'add':
      if (subject !== undefined)
        return subject.removedAfter === undefined
          ? `${entry.subject} is already a member`
          : `${entry.subject} was removed; add a new identity instead`;
      if (deviceIdOf(entry.subjectKey) !== entry.subject) return 'the subject key is not the subject device id';
      return undefined;
    case 'remove':
      if (subject === undefined || subject.removedAfter !== undefined) return `${entry.subject} is not a member`;
      if (subject.role === 'owner' && activeOwnersIn(past.members) === 1) return 'the last owner cannot be removed';
      if (entry.keyGeneration <= past.generation) return `a removal must rotate to a new key generation (in force: ${past.generation})`;
      if (commitmentOf(entry) === undefined) return 'a removal carries no commitment to the new key';
      if (entry.cutoff === 0 && entry.cutoffHash !== zeroHashHex) return 'a cutoff of 0 binds no changeset hash';
      return undefined;
    case 'role':
      if (subject === undefined || subject.removedAfter !== undefined) return `${entry.subject} is not a member`;
      if (subject.role === 'owner' && entry.role !== 'owner' && activeOwnersIn(past.members) === 1)
        return 'the last owner cannot step down';
      return undefined;
    case 'rotate':
      if (entry.subject !== entry.author) return 'a rotation names its author as its subject';
      if (entry.keyGeneration <= past.generation) return `a rotation must move to a new key generation (in force: ${past.generation})`;
      if (commitmentOf(entry) === undefined) return 'a rotation carries no commitment to the new key';
      return undefined;
  }
}

/** Strongly connected components of a small graph (Tarjan), each in discovery order. */
function components(nodes: readonly string[], edges: ReadonlyMap<string, readonly string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const result: string[][] = [];
  let counter = 0;
  const visit = (node: string): void => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const next of edges.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) as number, low.get(next) as number));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node) as number, index.get(next) as number));
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      for (;;) {
        const top = stack.pop() as string;
        onStack.delete(top);
        component.push(top);
        if (top === node) break;
      }
      result.push(component);
    }
  };
  for (const node of nodes) if (!index.has(node)) visit(node);
  return result;
}

/**
 * The membership a set of entries produces (docs/formats/sync-membership.md,
 * "Deriving the membership"). In short:
 *
 * - **Authority is positional.** An entry counts only if its author was an
 *   owner, and the change was allowed, in the membership its own causal past
 *   produces (its parents and everything they follow).
 * - **Removal wins.** Once a removal of a device counts, every entry of that
 *   device the removal's author had not seen (its parents did not lead to
 *   it) counts nowhere: old parents buy a removed owner nothing. The one
 *   exception is a removal of the very owner that removed it: two owners
 *   that remove each other concurrently are both removed.
 * - **Concurrent key generations are void.** A key created by a rotation
 *   (a removal, or a plain rotation) concurrent with another rotation may be
 *   held by a device the other removed: neither key is adopted, and an owner
 *   that has seen both rotates again.
 * - Concurrent entries apply in the order of author and seq; no hash decides
 *   anything.
 */
export function deriveMembership(
  entries: readonly MembershipEntry[],
  founder: DevicePublic,
  cache: MembershipCache = newMembershipCache(),
): MembershipState {
  const byHash = new Map<string, MembershipEntry>();
  for (const entry of entries) byHash.set(entry.hash, entry);
  const authorSeqs = new Map<string, number>();
  for (const entry of byHash.values()) authorSeqs.set(entry.author, Math.max(authorSeqs.get(entry.author) ?? 0, entry.seq));

  // Causal order: parents first, concurrent entries by author and seq. Entries with an unknown parent wait.
  const order: MembershipEntry[] = [];
  const placed = new Set<string>();
  let pending = [...byHash.values()].sort(compareEntries);
  for (let progress = true; progress; ) {
    progress = false;
    const still: MembershipEntry[] = [];
    for (const entry of pending) {
      if (entry.parents.every((parent) => placed.has(parent))) {
        order.push(entry);
        placed.add(entry.hash);
        progress = true;
      } else still.push(entry);
    }
    pending = still;
  }
  // Ancestors, parents first (memoised: they depend on the hash alone).
  const ancestorsOf = (entry: MembershipEntry): ReadonlySet<string> => {
    const cached = cache.ancestors.get(entry.hash);
    if (cached !== undefined) return cached;
    const set = new Set<string>();
    for (const parent of entry.parents) {
      set.add(parent);
      for (const hash of cache.ancestors.get(parent) ?? ancestorsOf(byHash.get(parent) as MembershipEntry)) set.add(hash);
    }
    cache.ancestors.set(entry.hash, set);
    return set;
  };
  // The order is topological, so each entry's ancestors are known when it is reached.
  for (const entry of order) ancestorsOf(entry);
  const concurrent = (a: MembershipEntry, b: MembershipEntry) => a !== b && !ancestorsOf(a).has(b.hash) && !ancestorsOf(b).has(a.hash);

  // 1. Positional authority.
  const rejected: Array<{ hash: string; author: string; reason: string }> = [];
  const reasons = new Map<string, string>();
  const genesis = order.find((entry) => isGenesis(entry, founder) && commitmentOf(entry) !== undefined);
  for (const entry of order) {
    let reason: string | undefined;
    if (entry.parents.length === 0) {
      if (entry !== genesis)
        reason = isGenesis(entry, founder) ? 'the genesis entry carries no key commitment' : 'before the founder created the library';
    } else {
      reason = positionalReason(entry, stateBefore(entry));
    }
    if (reason !== undefined) reasons.set(entry.hash, reason);
  }
  function stateBefore(entry: MembershipEntry): MembershipState {
    const cached = cache.before.get(entry.hash);
    if (cached !== undefined) return cached;
    const past = [...ancestorsOf(entry)].map((hash) => byHash.get(hash) as MembershipEntry);
    const state = deriveMembership(past, founder, cache);
    cache.before.set(entry.hash, state);
    return state;
  }

  // 2. Removal wins. `voids(r, e)`: r removes e's author, whose entry e r's author had not seen.
  const removals = order.filter((entry) => entry.op === 'remove' && !reasons.has(entry.hash));
  const voids = (removal: MembershipEntry, entry: MembershipEntry) =>
    removal.subject === entry.author &&
    removal !== entry &&
    !ancestorsOf(removal).has(entry.hash) &&
    !(entry.op === 'remove' && entry.subject === removal.author);
  const edges = new Map<string, string[]>();
  for (const voider of removals)
    edges.set(
      voider.hash,
      removals.filter((entry) => voids(voider, entry)).map((entry) => entry.hash),
    );
  // Removals in a cycle of voiding all count; otherwise a removal counts unless a counting removal voids it.
  const counting = new Set<string>();
  const componentOf = new Map<string, number>();
  const parts = components(
    removals.map((entry) => entry.hash),
    edges,
  ).reverse();
  parts.forEach((part, index) => {
    for (const hash of part) componentOf.set(hash, index);
  });
  for (const [index, part] of parts.entries()) {
    for (const hash of part) {
      const entry = byHash.get(hash) as MembershipEntry;
      const voidedBy = removals.find(
        (voider) => counting.has(voider.hash) && componentOf.get(voider.hash) !== index && voids(voider, entry),
      );
      if (voidedBy === undefined) counting.add(hash);
      else reasons.set(hash, `concurrent with the removal of ${entry.author} by ${voidedBy.author} (removal wins)`);
    }
  }
  for (const entry of order) {
    if (reasons.has(entry.hash) || entry.op === 'remove') continue;
    const voidedBy = removals.find((voider) => counting.has(voider.hash) && voids(voider, entry));
    if (voidedBy !== undefined)
      reasons.set(entry.hash, `concurrent with the removal of ${entry.author} by ${voidedBy.author} (removal wins)`);
  }

  // 3. Rotations concurrent with another rotation create no usable key.
  const rotations = order.filter((entry) => (entry.op === 'remove' || entry.op === 'rotate') && !reasons.has(entry.hash));
  const voidKeys = new Set(rotations.filter((entry) => rotations.some((other) => concurrent(entry, other))).map((entry) => entry.hash));

  // 4. Apply what counts, in order.
  const members = new Map<string, Member>();
  const ownerGenerations = new Map<string, Set<number>>();
  const commitments = new Map<number, string>();
  const contested = new Set<number>();
  let generation = 0;
  for (const entry of order) {
    const reason = reasons.get(entry.hash) ?? apply(entry);
    if (reason !== undefined) rejected.push({ hash: entry.hash, author: entry.author, reason });
    else markOwners();
  }
  function markOwners(): void {
    for (const member of members.values()) {
      if (member.role !== 'owner' || member.removedAfter !== undefined) continue;
      const owned = ownerGenerations.get(member.deviceId) ?? new Set<number>();
      owned.add(generation);
      ownerGenerations.set(member.deviceId, owned);
    }
  }
  function rotate(entry: MembershipEntry): void {
    generation = Math.max(generation, entry.keyGeneration);
    if (voidKeys.has(entry.hash) || contested.has(entry.keyGeneration)) {
      contested.add(entry.keyGeneration);
      commitments.delete(entry.keyGeneration);
    } else commitments.set(entry.keyGeneration, commitmentOf(entry) as string);
  }
  function apply(entry: MembershipEntry): string | undefined {
    if (entry === genesis) {
      members.set(entry.subject, {
        deviceId: entry.subject,
        publicKey: entry.subjectKey,
        x25519PublicKey: entry.subjectX25519,
        role: 'owner',
        removedAfter: undefined,
      });
      generation = entry.keyGeneration;
      commitments.set(generation, commitmentOf(entry) as string);
      return undefined;
    }
    // Its author must be a member by entries that count (an owner added by a void entry never was one).
    if (!members.has(entry.author)) return `${entry.author} is not a member by entries that count`;
    const subject = members.get(entry.subject);
    switch (entry.op) {
      case 'add':
        if (subject !== undefined) return `${entry.subject} is already a member (a concurrent entry added it)`;
        members.set(entry.subject, {
          deviceId: entry.subject,
          publicKey: entry.subjectKey,
          x25519PublicKey: entry.subjectX25519,
          role: entry.role,
          removedAfter: undefined,
        });
        return undefined;
      case 'remove':
        rotate(entry);
        if (subject === undefined) return `${entry.subject} is not a member by entries that count`;
        if (subject.removedAfter !== undefined) return `${entry.subject} was already removed by a concurrent entry`;
        members.set(entry.subject, {
          ...subject,
          removedAfter: entry.cutoff,
          cutoffHash: entry.cutoffHash,
          removedBy: { author: entry.author, entry: entry.hash },
        });
        return undefined;
      case 'role':
        if (subject === undefined || subject.removedAfter !== undefined) return `${entry.subject} is not a member`;
        if (subject.role === 'owner' && entry.role !== 'owner' && activeOwnersIn(members) === 1) return 'the last owner cannot step down';
        members.set(entry.subject, { ...subject, role: entry.role });
        return undefined;
      case 'rotate':
        rotate(entry);
        return undefined;
    }
  }
  const referenced = new Set(order.flatMap((entry) => entry.parents));
  const tips = order
    .map((entry) => entry.hash)
    .filter((hash) => !referenced.has(hash))
    .sort();
  return {
    members,
    generation,
    ownerGenerations,
    commitments,
    contested,
    rejected,
    waiting: pending.length,
    tips,
    authorSeqs,
  };
}

/**
 * The membership at a position of the chain: what the entries `tips` and
 * everything they follow produce, concurrent and later entries left out.
 * `undefined` when one of them is not among `entries` (not seen yet, or
 * never written).
 */
export function membershipAt(
  entries: readonly MembershipEntry[],
  tips: readonly string[],
  founder: DevicePublic,
  cache: MembershipCache = newMembershipCache(),
): MembershipState | undefined {
  const byHash = new Map(entries.map((entry) => [entry.hash, entry]));
  const closure = new Map<string, MembershipEntry>();
  const stack = [...tips];
  while (stack.length > 0) {
    const hash = stack.pop() as string;
    if (closure.has(hash)) continue;
    const entry = byHash.get(hash);
    if (entry === undefined) return undefined;
    closure.set(hash, entry);
    stack.push(...entry.parents);
  }
  return deriveMembership([...closure.values()], founder, cache);
}
