/**
 * The membership chain: signed entries at `membership.<author>.<seq>`, each
 * naming the hashes of the entries its author had seen (its causal parents).
 * The membership of a library is derived from them by `deriveMembership`:
 * authority is positional (an entry counts only where its own causal past
 * made its author an owner), removal wins over whatever the removed device
 * wrote concurrently, and no value an author can grind orders anything.
 * Wall-clock time plays no part.
 * Format: docs/formats/sync-membership.md.
 */
import type { Hashers } from '@weft/eventlog';
import { concat } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { type DeviceIdentity, type DevicePublic, deviceIdOf, libraryBound, signWith, verifySignature } from './identity.js';

export type Role = 'owner' | 'member' | 'reader';
export type MembershipOp = 'add' | 'remove' | 'role' | 'rotate';

const magic = new Uint8Array([0x57, 0x4d, 0x45, 0x4d]); // "WMEM"
const version = 3;
const zeroHash = new Uint8Array(32);
const zeroHashHex = '0'.repeat(64);
const opCodes: Record<MembershipOp, number> = { add: 1, remove: 2, role: 3, rotate: 4 };
const opNames: Record<number, MembershipOp> = { 1: 'add', 2: 'remove', 3: 'role', 4: 'rotate' };
const roleCodes: Record<Role, number> = { owner: 1, member: 2, reader: 3 };
const roleNames: Record<number, Role> = { 1: 'owner', 2: 'member', 3: 'reader' };
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** What a membership entry says. */
export interface MembershipFields {
  readonly op: MembershipOp;
  readonly author: string;
  readonly seq: number;
  /** hex hashes of the entries the author had seen that no other entry it had seen follows. */
  readonly parents: readonly string[];
  readonly subject: string;
  readonly subjectKey: Uint8Array;
  readonly subjectX25519: Uint8Array;
  readonly role: Role;
  /** For `remove` and `rotate`: the key generation the library rotates to; otherwise the generation in force. */
  readonly keyGeneration: number;
  /** For `remove`: the subject's last changeset the author accepted; later ones are rejected everywhere. */
  readonly cutoff: number;
  /**
   * For `remove`: hex BLAKE3 of the subject's changeset at the cutoff (zeros when the cutoff is 0): every
   * chain of the subject must pass through it. @default zeros
   */
  readonly cutoffHash?: string;
  /**
   * For an entry that creates a key generation (the genesis entry, a removal): the commitment to that
   * generation's key (`keyCommitment` in keys.ts), never the key. @default zeros
   */
  readonly keyCommitment?: Uint8Array;
}

/** A decoded, signature-checked entry. */
export interface MembershipEntry extends MembershipFields {
  readonly cutoffHash: string;
  readonly keyCommitment: Uint8Array;
  readonly authorKey: Uint8Array;
  /** hex BLAKE3 of the whole entry. */
  readonly hash: string;
}

/** A member as the derived state knows it. */
export interface Member {
  readonly deviceId: string;
  readonly publicKey: Uint8Array;
  readonly x25519PublicKey: Uint8Array;
  readonly role: Role;
  /** Set once removed: changesets after this seq are rejected. */
  readonly removedAfter: number | undefined;
  /** Set once removed: hex hash of its changeset at `removedAfter` (zeros when that is 0). */
  readonly cutoffHash?: string | undefined;
  /** Set once removed: the owner whose entry removed it, and that entry's hash. */
  readonly removedBy?: { readonly author: string; readonly entry: string } | undefined;
}

/** The membership a set of entries produces. */
export interface MembershipState {
  /** Every device ever added, removed ones included (with `removedAfter`). */
  readonly members: ReadonlyMap<string, Member>;
  /** The key generation in force. */
  readonly generation: number;
  /**
   * Per device, the key generations during which it was an owner (not removed): a key wrap of a
   * generation counts only from an owner of that generation. Having once been an owner grants nothing else.
   */
  readonly ownerGenerations: ReadonlyMap<string, ReadonlySet<number>>;
  /** Per key generation, the hex commitment to its key from the entry that created it. */
  readonly commitments: ReadonlyMap<number, string>;
  /**
   * Key generations created by concurrent rotations: no key of theirs is adopted (one of them may be held by a
   * device the other removed); an owner that has seen them rotates again.
   */
  readonly contested: ReadonlySet<number>;
  /** Entries that were not applied, with why. */
  readonly rejected: ReadonlyArray<{ readonly hash: string; readonly author: string; readonly reason: string }>;
  /** Entries waiting for parents not yet seen. */
  readonly waiting: number;
  /** Entry hashes that no other entry follows: the parents of the next entry. */
  readonly tips: readonly string[];
  /** Per author, the highest entry seq seen. */
  readonly authorSeqs: ReadonlyMap<string, number>;
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  return bytes;
}

function u64(value: number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(value), true);
  return bytes;
}

function text8(value: string): Uint8Array {
  const bytes = encoder.encode(value);
  if (bytes.length === 0 || bytes.length > 255) throw new SyncError(SyncErrorCode.InvalidArgument, 'a device id is 1 to 255 bytes');
  return concat([new Uint8Array([bytes.length]), bytes]);
}

function hash32(hex: string, what: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new SyncError(SyncErrorCode.InvalidArgument, `a ${what} is 64 hex digits`);
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** Encodes and signs an entry of library `libraryId`. */
export function encodeMembershipEntry(fields: MembershipFields, author: DeviceIdentity, libraryId: string): Uint8Array {
  if (fields.parents.length > 255) throw new SyncError(SyncErrorCode.InvalidArgument, 'at most 255 parents');
  const signed = concat([
    magic,
    new Uint8Array([version, opCodes[fields.op], roleCodes[fields.role]]),
    text8(fields.author),
    u64(fields.seq),
    new Uint8Array([fields.parents.length]),
    ...fields.parents.map((parent) => new Uint8Array(Buffer.from(parent, 'hex'))),
    text8(fields.subject),
    fields.subjectKey,
    fields.subjectX25519,
    u32(fields.keyGeneration),
    u64(fields.cutoff),
    fields.cutoffHash === undefined ? zeroHash : hash32(fields.cutoffHash, 'cutoff hash'),
    fields.keyCommitment ?? zeroHash,
    author.publicKey,
  ]);
  return concat([signed, signWith(author, libraryBound(libraryId, signed))]);
}

/**
 * Decodes an entry of library `libraryId` and checks its signature (which
 * covers the library id: another library's entry does not verify) and that
 * its author key is its author's.
 *
 * @throws {SyncError} `InvalidEnvelope`, `Forged`
 */
export function decodeMembershipEntry(bytes: Uint8Array, hashers: Hashers, libraryId: string): MembershipEntry {
  const invalid = (why: string) => new SyncError(SyncErrorCode.InvalidEnvelope, `membership entry: ${why}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (count: number) => {
    if (at + count > bytes.length) throw invalid('cut short');
  };
  need(7);
  for (let index = 0; index < 4; index++) if (bytes[index] !== magic[index]) throw invalid('bad magic');
  if (bytes[4] !== version)
    throw invalid(
      bytes[4] === 1 || bytes[4] === 2
        ? `version ${bytes[4]} (written before entries bound their library); create the library again with this release`
        : `unsupported version ${bytes[4]}`,
    );
  const op = opNames[bytes[5] as number];
  const role = roleNames[bytes[6] as number];
  if (op === undefined || role === undefined) throw invalid('unknown operation or role');
  at = 7;
  const readText = () => {
    need(1);
    const length = bytes[at] as number;
    need(1 + length);
    try {
      const value = decoder.decode(bytes.subarray(at + 1, at + 1 + length));
      at += 1 + length;
      return value;
    } catch {
      throw invalid('a device id is not UTF-8');
    }
  };
  const author = readText();
  need(9);
  const seqBig = view.getBigUint64(at, true);
  if (seqBig === 0n || seqBig > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('seq out of range');
  const seq = Number(seqBig);
  const parentCount = bytes[at + 8] as number;
  at += 9;
  need(parentCount * 32);
  const parents: string[] = [];
  for (let index = 0; index < parentCount; index++)
    parents.push(Buffer.from(bytes.subarray(at + index * 32, at + index * 32 + 32)).toString('hex'));
  at += parentCount * 32;
  const subject = readText();
  need(32 + 32 + 4 + 8 + 32 + 32 + 32 + 64);
  const subjectKey = bytes.slice(at, at + 32);
  const subjectX25519 = bytes.slice(at + 32, at + 64);
  const keyGeneration = view.getUint32(at + 64, true);
  const cutoffBig = view.getBigUint64(at + 68, true);
  if (cutoffBig > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('cutoff out of range');
  const cutoff = Number(cutoffBig);
  const cutoffHash = Buffer.from(bytes.subarray(at + 76, at + 108)).toString('hex');
  const keyCommitment = bytes.slice(at + 108, at + 140);
  const authorKey = bytes.slice(at + 140, at + 172);
  const signedEnd = at + 172;
  if (bytes.length !== signedEnd + 64) throw invalid('trailing bytes');
  if (!verifySignature(authorKey, libraryBound(libraryId, bytes.subarray(0, signedEnd)), bytes.subarray(signedEnd))) {
    throw new SyncError(SyncErrorCode.Forged, `membership entry ${author}.${seq}: the signature does not verify for library ${libraryId}`, {
      device: author,
      seq,
    });
  }
  if (deviceIdOf(authorKey) !== author)
    throw new SyncError(SyncErrorCode.Forged, `membership entry ${author}.${seq}: the author key is not ${author}'s`, {
      device: author,
      seq,
    });
  return {
    op,
    author,
    seq,
    parents,
    subject,
    subjectKey,
    subjectX25519,
    role,
    keyGeneration,
    cutoff,
    cutoffHash,
    keyCommitment,
    authorKey,
    hash: Buffer.from(hashers.blake3(bytes)).toString('hex'),
  };
}

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
  const hex = Buffer.from(entry.keyCommitment).toString('hex');
  return hex === zeroHashHex ? undefined : hex;
}

function isGenesis(entry: MembershipEntry, founder: DevicePublic): boolean {
  return (
    entry.op === 'add' &&
    entry.parents.length === 0 &&
    entry.author === founder.deviceId &&
    entry.subject === founder.deviceId &&
    entry.role === 'owner' &&
    Buffer.from(entry.authorKey).equals(Buffer.from(founder.publicKey))
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
  if (!Buffer.from(author.publicKey).equals(Buffer.from(entry.authorKey))) return 'the author key is not the member key';
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
