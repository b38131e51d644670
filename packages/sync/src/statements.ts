/**
 * Owner statements that live outside the membership chain: the
 * garbage-collection floor of a device (`meta.floor.<device>`) and the
 * library's minimum schema version (`meta.min_schema_version`). Each is
 * signed by its author and counts only while the author is an owner (in a
 * library with a founder) or a member (out of band); anything else in
 * those keys is ignored and reported. Format: docs/formats/sync-membership.md.
 */
import { concat } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { type DeviceIdentity, deviceIdOf, signWith, verifySignature } from './identity.js';

const magic = new Uint8Array([0x57, 0x53, 0x54, 0x4d]); // "WSTM"
/** 2 binds the library: a statement of another library, signed by a device that is an owner in both, is refused. */
const version = 2;
const maxLibraryIdBytes = 255;
const kindCodes = { floor: 1, 'min-schema': 2 } as const;
const maxBody = 4096;

export type StatementKind = keyof typeof kindCodes;

/** A decoded, signature-checked statement: who said it, and what. */
export interface Statement {
  readonly kind: StatementKind;
  readonly author: string;
  readonly authorKey: Uint8Array;
  readonly body: Readonly<Record<string, unknown>>;
}

/** Encodes and signs a statement of library `libraryId`. */
export function encodeStatement(kind: StatementKind, body: Record<string, unknown>, author: DeviceIdentity, libraryId: string): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(body));
  const library = new TextEncoder().encode(libraryId);
  if (library.length > maxLibraryIdBytes) throw new SyncError(SyncErrorCode.InvalidArgument, 'a library id has at most 255 bytes');
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, json.length, true);
  const signed = concat([magic, new Uint8Array([version, kindCodes[kind], library.length]), library, author.publicKey, length, json]);
  return concat([signed, signWith(author, signed)]);
}

/**
 * Decodes a statement of `kind` made for library `libraryId` and checks its
 * signature; who may make it is the caller's check.
 *
 * @throws {SyncError} `InvalidEnvelope` for malformed bytes, a format without a library (1) or another library's
 *   statement, `Forged` for a bad signature
 */
export function decodeStatement(bytes: Uint8Array, kind: StatementKind, libraryId: string): Statement {
  const invalid = (why: string) => new SyncError(SyncErrorCode.InvalidEnvelope, `${kind} statement: ${why}`);
  if (!(bytes instanceof Uint8Array) || bytes.length < 4 + 3 + 32 + 4 + 64) throw invalid('too short (an unsigned value?)');
  if (!magic.every((byte, index) => bytes[index] === byte)) throw invalid('bad magic (an unsigned value?)');
  if (bytes[4] === 1) throw invalid('format 1 binds no library; an owner of this library must sign it again');
  if (bytes[4] !== version) throw invalid(`unsupported version ${bytes[4]}`);
  if (bytes[5] !== kindCodes[kind]) throw invalid('a statement of another kind');
  const libraryLength = bytes[6] as number;
  const keyStart = 7 + libraryLength;
  const lengthAt = keyStart + 32;
  const bodyStart = lengthAt + 4;
  if (bytes.length < bodyStart + 64) throw invalid('too short');
  const library = bytes.subarray(7, keyStart);
  const authorKey = bytes.slice(keyStart, lengthAt);
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(lengthAt, true);
  if (length > maxBody || bodyStart + length + 64 !== bytes.length) throw invalid('wrong length');
  if (!verifySignature(authorKey, bytes.subarray(0, bodyStart + length), bytes.subarray(bodyStart + length))) {
    throw new SyncError(SyncErrorCode.Forged, `${kind} statement: the signature does not verify`);
  }
  let statedLibrary: string;
  let body: unknown;
  try {
    statedLibrary = new TextDecoder('utf-8', { fatal: true }).decode(library);
    body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(bodyStart, bodyStart + length)));
  } catch {
    throw invalid('the library id or the body is not UTF-8 JSON');
  }
  if (statedLibrary !== libraryId) throw invalid(`made for another library (${JSON.stringify(statedLibrary.slice(0, 64))})`);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('the body is not an object');
  return { kind, author: deviceIdOf(authorKey), authorKey, body: body as Record<string, unknown> };
}

/** A non-negative safe integer field of a statement body. @throws {SyncError} `InvalidEnvelope` */
export function countField(statement: Statement, field: string): number {
  const value = statement.body[field];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new SyncError(SyncErrorCode.InvalidEnvelope, `${statement.kind} statement: ${field} is not a count`);
  }
  return value;
}
