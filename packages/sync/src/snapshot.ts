/**
 * Snapshots: the state of a library (every event) plus the per-device
 * cursors it covers, sealed under the current key generation in chunks at
 * `snapshots.<id>.<n>`, described by a signed manifest at `snapshots.<id>.0`,
 * and published by moving `snapshot.current` with compare-and-swap.
 */
import { concat } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { type DeviceIdentity, libraryBound, signWith, verifySignature } from './identity.js';

const magic = new Uint8Array([0x57, 0x53, 0x4e, 0x50]); // "WSNP"
const version = 1;
/** The manifest's version: 2 names the membership position it was made at. */
/** 3 binds the library: the signature covers its id, so another library's manifest does not verify. */
const manifestVersion = 3;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Where each device's chain stood when the snapshot was taken. */
export type SnapshotCursors = Record<string, { seq: number; hash: string }>;

export interface SnapshotManifest {
  readonly id: string;
  readonly chunks: number;
  readonly generation: number;
  readonly author: string;
  readonly createdAt: number;
  /** hex BLAKE3 of the whole plaintext body. */
  readonly bodyHash: string;
  readonly cursors: SnapshotCursors;
  /** The membership position it was made at: the tips of the chain its author had applied. */
  readonly membership: readonly string[];
}

/** Encodes a snapshot body: cursors, then a changeset body of every event. */
export function encodeSnapshotBody(cursors: SnapshotCursors, changeset: Uint8Array): Uint8Array {
  const cursorBytes = encoder.encode(JSON.stringify(cursors));
  const header = new Uint8Array(9);
  header.set(magic, 0);
  header[4] = version;
  new DataView(header.buffer).setUint32(5, cursorBytes.length, true);
  return concat([header, cursorBytes, changeset]);
}

/** Decodes a snapshot body. @throws {SyncError} `InvalidEnvelope` */
export function decodeSnapshotBody(bytes: Uint8Array): { cursors: SnapshotCursors; changeset: Uint8Array } {
  if (bytes.length < 9 || !magic.every((byte, index) => bytes[index] === byte) || bytes[4] !== version) {
    throw new SyncError(SyncErrorCode.InvalidEnvelope, 'not a snapshot body');
  }
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(5, true);
  if (9 + length > bytes.length) throw new SyncError(SyncErrorCode.InvalidEnvelope, 'snapshot body cut short');
  try {
    const cursors = checkCursors(JSON.parse(decoder.decode(bytes.subarray(9, 9 + length))));
    return { cursors, changeset: bytes.subarray(9 + length) };
  } catch (error) {
    if (SyncError.is(error)) throw error;
    throw new SyncError(SyncErrorCode.InvalidEnvelope, 'snapshot cursors are malformed');
  }
}

/** Signs a manifest: JSON of its fields, then the author key and an Ed25519 signature. */
export function encodeManifest(manifest: SnapshotManifest, author: DeviceIdentity, libraryId: string): Uint8Array {
  const body = encoder.encode(JSON.stringify(manifest));
  const signed = concat([magic, new Uint8Array([manifestVersion]), author.publicKey, body]);
  return concat([signed, signWith(author, libraryBound(libraryId, signed))]);
}

const hex64 = /^[0-9a-f]{64}$/;
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** Checks the shape of snapshot cursors from hostile bytes. @throws {SyncError} `InvalidEnvelope` */
export function checkCursors(value: unknown): SnapshotCursors {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new SyncError(SyncErrorCode.InvalidEnvelope, 'snapshot cursors are not an object');
  const cursors: SnapshotCursors = {};
  for (const [device, cursor] of Object.entries(value as Record<string, unknown>)) {
    const { seq, hash } = (cursor ?? {}) as { seq?: unknown; hash?: unknown };
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(device) || !isCount(seq) || typeof hash !== 'string' || !hex64.test(hash))
      throw new SyncError(SyncErrorCode.InvalidEnvelope, `snapshot cursor of ${device.slice(0, 64)} is malformed`);
    cursors[device] = { seq, hash };
  }
  return cursors;
}

/**
 * Decodes a manifest of library `libraryId` and checks its signature; returns the author key to check
 * against the membership.
 */
export function decodeManifest(bytes: Uint8Array, libraryId: string): { manifest: SnapshotManifest; authorKey: Uint8Array } {
  if (bytes.length < 5 + 32 + 64 || !magic.every((byte, index) => bytes[index] === byte))
    throw new SyncError(SyncErrorCode.InvalidEnvelope, 'not a snapshot manifest');
  if (bytes[4] !== manifestVersion)
    throw new SyncError(
      SyncErrorCode.InvalidEnvelope,
      `unsupported snapshot manifest version ${bytes[4]} (this release reads ${manifestVersion})`,
    );
  const authorKey = bytes.slice(5, 37);
  const signed = bytes.subarray(0, bytes.length - 64);
  if (!verifySignature(authorKey, libraryBound(libraryId, signed), bytes.subarray(bytes.length - 64)))
    throw new SyncError(SyncErrorCode.Forged, `the snapshot manifest signature does not verify for library ${libraryId}`);
  let parsed: Partial<Record<keyof SnapshotManifest, unknown>>;
  try {
    parsed = JSON.parse(decoder.decode(bytes.subarray(37, bytes.length - 64))) as typeof parsed;
  } catch {
    throw new SyncError(SyncErrorCode.InvalidEnvelope, 'the snapshot manifest is malformed');
  }
  const { id, chunks, generation, author, createdAt, bodyHash, membership } = parsed ?? {};
  if (
    typeof id !== 'string' ||
    !/^[0-9a-f]{1,64}$/.test(id) ||
    !isCount(chunks) ||
    chunks < 1 ||
    chunks > 1_000_000 ||
    !isCount(generation) ||
    generation > 0xffffffff ||
    typeof author !== 'string' ||
    !isCount(createdAt) ||
    typeof bodyHash !== 'string' ||
    !hex64.test(bodyHash) ||
    !Array.isArray(membership) ||
    membership.length > 255 ||
    !membership.every((tip) => typeof tip === 'string' && hex64.test(tip))
  )
    throw new SyncError(SyncErrorCode.InvalidEnvelope, 'the snapshot manifest is malformed');
  return {
    manifest: {
      id,
      chunks,
      generation,
      author,
      createdAt,
      bodyHash,
      cursors: checkCursors(parsed.cursors),
      membership: membership as string[],
    },
    authorKey,
  };
}
