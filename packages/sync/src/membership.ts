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
import { fromHex, toHex } from '@weft/common';
import type { Hashers } from '@weft/eventlog';
import { concat } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { type DeviceIdentity, deviceIdOf, libraryBound, signWith, verifySignature } from './identity.js';

export type Role = 'owner' | 'member' | 'reader';
export type MembershipOp = 'add' | 'remove' | 'role' | 'rotate';

const magic = new Uint8Array([0x57, 0x4d, 0x45, 0x4d]); // "WMEM"
const version = 3;
const zeroHash = new Uint8Array(32);
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
  return fromHex(hex);
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
    ...fields.parents.map((parent) => fromHex(parent)),
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
  for (let index = 0; index < parentCount; index++) parents.push(toHex(bytes.subarray(at + index * 32, at + index * 32 + 32)));
  at += parentCount * 32;
  const subject = readText();
  need(32 + 32 + 4 + 8 + 32 + 32 + 32 + 64);
  const subjectKey = bytes.slice(at, at + 32);
  const subjectX25519 = bytes.slice(at + 32, at + 64);
  const keyGeneration = view.getUint32(at + 64, true);
  const cutoffBig = view.getBigUint64(at + 68, true);
  if (cutoffBig > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('cutoff out of range');
  const cutoff = Number(cutoffBig);
  const cutoffHash = toHex(bytes.subarray(at + 76, at + 108));
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
    hash: toHex(hashers.blake3(bytes)),
  };
}
