/**
 * Snapshots: the state of a library (every event) plus the per-device
 * cursors it covers, sealed under the current key generation in chunks at
 * `snapshots.<id>.<n>`, described by a signed manifest at `snapshots.<id>.0`,
 * and published by moving `snapshot.current` with compare-and-swap.
 */
import { concat } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { type DeviceIdentity, signWith, verifySignature } from './identity.js';

const magic = new Uint8Array([0x57, 0x53, 0x4e, 0x50]); // "WSNP"
const version = 1;
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
    const cursors = JSON.parse(decoder.decode(bytes.subarray(9, 9 + length))) as SnapshotCursors;
    return { cursors, changeset: bytes.subarray(9 + length) };
  } catch {
    throw new SyncError(SyncErrorCode.InvalidEnvelope, 'snapshot cursors are malformed');
  }
}

/** Signs a manifest: JSON of its fields, then the author key and an Ed25519 signature. */
export function encodeManifest(manifest: SnapshotManifest, author: DeviceIdentity): Uint8Array {
  const body = encoder.encode(JSON.stringify(manifest));
  const signed = concat([magic, new Uint8Array([version]), author.publicKey, body]);
  return concat([signed, signWith(author, signed)]);
}

/** Decodes a manifest and checks its signature; returns the author key to check against the membership. */
export function decodeManifest(bytes: Uint8Array): { manifest: SnapshotManifest; authorKey: Uint8Array } {
  if (bytes.length < 5 + 32 + 64 || !magic.every((byte, index) => bytes[index] === byte) || bytes[4] !== version) {
    throw new SyncError(SyncErrorCode.InvalidEnvelope, 'not a snapshot manifest');
  }
  const authorKey = bytes.slice(5, 37);
  const signed = bytes.subarray(0, bytes.length - 64);
  if (!verifySignature(authorKey, signed, bytes.subarray(bytes.length - 64)))
    throw new SyncError(SyncErrorCode.Forged, 'the snapshot manifest signature does not verify');
  try {
    return { manifest: JSON.parse(decoder.decode(bytes.subarray(37, bytes.length - 64))) as SnapshotManifest, authorKey };
  } catch {
    throw new SyncError(SyncErrorCode.InvalidEnvelope, 'the snapshot manifest is malformed');
  }
}
