/**
 * Verification of a pulled changeset: bytes and what the device knows of the
 * library in, a verdict out, no I/O. Every check a changeset must pass before
 * any of its events reach the local log lives here.
 */
import { bytesEqual } from '@weft/common';
import type { XChaCha } from '@weft/eventlog';
import { decodeChangesetBody, decodeEnvelope, type Envelope, envelopeSignatureValid, openEnvelope, type SyncedEvent } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { deviceIdOf } from './identity.js';
import type { Member } from './membership.js';
import { hexOf } from './util.js';

/** What a changeset is checked against. */
export interface ChangesetExpectation {
  readonly device: string;
  readonly seq: number;
  readonly keyPath: string;
  /** hex BLAKE3 of `bytes`, which chains the next changeset. */
  readonly hash: string;
  /** hex hash of the device's previous changeset (64 zeros before the first). */
  readonly previousHash: string;
  /** The device as the membership knows it, `undefined` when it is no member. */
  readonly member: Member | undefined;
  /** The library keys this device holds, by generation. */
  readonly keys: ReadonlyMap<number, Uint8Array>;
  readonly libraryId: string;
  readonly schemaVersion: number;
  readonly cipher: XChaCha;
}

/** The events and blobs of a verified changeset. */
export interface VerifiedChangeset {
  readonly events: SyncedEvent[];
  readonly blobs: string[];
  /** The key generation that sealed it (its signature verified). */
  readonly keyGeneration: number;
}

/**
 * Checks a changeset: its place (device, seq), its author's membership and
 * role, its signature, its hash chain, its schema and its seal.
 *
 * @throws {SyncError} `InvalidEnvelope`, `ChainBroken`, `Forged`, `Revoked`, `SchemaTooNew`, `DecryptionFailed`
 */
export function verifyChangeset(bytes: Uint8Array, expected: ChangesetExpectation): VerifiedChangeset {
  return openVerified(checkEnvelope(bytes, expected), expected);
}

/**
 * The checks that need no key: place, author, signature, chain, the cutoff
 * hash of a removed device, schema. Returns the decoded envelope.
 *
 * @throws {SyncError} as {@link verifyChangeset}, except `DecryptionFailed`
 */
export function checkEnvelope(bytes: Uint8Array, expected: Omit<ChangesetExpectation, 'keys' | 'libraryId' | 'cipher'>): Envelope {
  const { device, seq, keyPath, member } = expected;
  const fail = (code: SyncErrorCode, message: string) => new SyncError(code, `${keyPath}: ${message}`, { device, seq });
  let envelope: Envelope;
  try {
    envelope = decodeEnvelope(bytes);
  } catch (error) {
    throw fail(SyncErrorCode.InvalidEnvelope, error instanceof Error ? error.message : String(error));
  }
  if (envelope.device !== device || envelope.seq !== seq) {
    throw fail(
      SyncErrorCode.ChainBroken,
      `the envelope says device ${envelope.device} seq ${envelope.seq} (moved or replayed by the store)`,
    );
  }
  if (member === undefined) throw fail(SyncErrorCode.Forged, `device ${device} is not a member of the library`);
  if (deviceIdOf(envelope.authorKey) !== device || !bytesEqual(member.publicKey, envelope.authorKey)) {
    throw fail(SyncErrorCode.Forged, 'the author key is not the device member key');
  }
  if (member.role === 'reader') throw fail(SyncErrorCode.Revoked, `${device} is a reader and cannot write`);
  if (member.removedAfter !== undefined && seq > member.removedAfter) {
    throw fail(SyncErrorCode.Revoked, `${device} was removed after its changeset ${member.removedAfter}; later writes are rejected`);
  }
  if (!envelopeSignatureValid(envelope)) throw fail(SyncErrorCode.Forged, 'the signature does not verify');
  if (hexOf(envelope.previousHash) !== expected.previousHash) {
    throw fail(
      SyncErrorCode.ChainBroken,
      'it does not follow the previous changeset of its device (dropped, reordered or replayed by the store)',
    );
  }
  if (
    member.removedAfter !== undefined &&
    seq === member.removedAfter &&
    member.cutoffHash !== undefined &&
    expected.hash !== member.cutoffHash
  ) {
    throw fail(
      SyncErrorCode.Equivocation,
      `${device} was removed at this changeset, but with another one there: its history was rewritten at or below the cutoff`,
    );
  }
  if (envelope.schemaVersion > expected.schemaVersion) {
    throw fail(
      SyncErrorCode.SchemaTooNew,
      `it needs schema ${envelope.schemaVersion}; this device understands up to ${expected.schemaVersion}`,
    );
  }
  return envelope;
}

function openVerified(envelope: Envelope, expected: ChangesetExpectation): VerifiedChangeset {
  const { keyPath } = expected;
  const fail = (code: SyncErrorCode, message: string) =>
    new SyncError(code, `${keyPath}: ${message}`, { device: expected.device, seq: expected.seq });
  const key = expected.keys.get(envelope.keyGeneration);
  if (key === undefined) {
    throw fail(
      SyncErrorCode.DecryptionFailed,
      `it is sealed with key generation ${envelope.keyGeneration}, which this device does not hold`,
    );
  }
  const body = openEnvelope(envelope, key, expected.libraryId, keyPath, expected.cipher);
  if (body === undefined) throw fail(SyncErrorCode.DecryptionFailed, 'the payload fails authentication');
  try {
    return { ...decodeChangesetBody(body), keyGeneration: envelope.keyGeneration };
  } catch (error) {
    throw fail(SyncErrorCode.InvalidEnvelope, error instanceof Error ? error.message : String(error));
  }
}
