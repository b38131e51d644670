/**
 * How a bucket is laid out in FoundationDB's key space, and the byte
 * encodings of what is stored there. Decoders treat bytes as hostile: every
 * length is checked and a malformed record is a typed error, never a crash or
 * a wrong value. `docs/formats/fdb-layout.md` describes the same layout.
 *
 * Under the bucket's prefix `<namespace>/<bucket>/`:
 *
 * | key                                   | value                                      |
 * | ------------------------------------- | ------------------------------------------ |
 * | `h`                                   | head: the versionstamp of the last change  |
 * | `z`                                   | horizon: changes at or before it may be trimmed |
 * | `r/<key>`                             | record (below)                             |
 * | `c/<key>\0<u32 chunk index>`          | one chunk of a value too large to inline   |
 * | `l/<versionstamp><u16 order>`         | change-log entry: `<op><key>`              |
 * | `e/<u64 expiry ms><key>`              | expiry index entry (empty)                 |
 * | `w/<u64 ms><8 random bytes>`          | write id: the versionstamp of that write   |
 */

import { KvErrorCode, type Version, type WatchCursor } from '@weft/kv';
import { kvError } from '@weft/kv/backend';

/** Bytes of a FoundationDB versionstamp (8-byte commit version, 2-byte batch order). */
export const stampBytes = 10;
/** Bytes of a weft version: the versionstamp plus a 2-byte order within the transaction. */
export const versionBytes = 12;
/** FoundationDB's largest value; records inline values up to what fits, larger ones are chunked. */
export const fdbValueLimit = 100_000;
/** Bytes of one chunk of a large value. */
export const chunkBytes = fdbValueLimit;
/** Record header after the version: op, expiry, chunk count, value length. */
export const recordHeaderBytes = 1 + 8 + 4 + 4;
/** The largest value stored inline in its record. */
export const inlineLimit = fdbValueLimit - versionBytes - recordHeaderBytes;

const backend = 'fdb';

/** The kinds of change, as stored in records and log entries. */
export type Op = 'put' | 'delete' | 'purge' | 'expire';
const opBytes: Record<Op, number> = { put: 0x70, delete: 0x64, purge: 0x78, expire: 0x65 };
const opsByByte = new Map<number, Op>(Object.entries(opBytes).map(([op, byte]) => [byte, op as Op]));

/** The key prefixes of one bucket. */
export class BucketLayout {
  readonly prefix: Buffer;
  readonly head: Buffer;
  readonly horizon: Buffer;
  readonly records: Buffer;
  readonly chunks: Buffer;
  readonly log: Buffer;
  readonly expiries: Buffer;
  readonly writes: Buffer;

  constructor(namespace: string, bucket: string) {
    this.prefix = Buffer.from(`${namespace}/${bucket}/`, 'latin1');
    const sub = (tag: string) => Buffer.concat([this.prefix, Buffer.from(tag, 'latin1')]);
    this.head = sub('h');
    this.horizon = sub('z');
    this.records = sub('r/');
    this.chunks = sub('c/');
    this.log = sub('l/');
    this.expiries = sub('e/');
    this.writes = sub('w/');
  }

  record(key: string): Buffer {
    return Buffer.concat([this.records, Buffer.from(key, 'utf8')]);
  }

  /** The range of every chunk of `key`'s value. */
  chunkRange(key: string): [Buffer, Buffer] {
    const base = Buffer.concat([this.chunks, Buffer.from(key, 'utf8')]);
    return [Buffer.concat([base, zero]), Buffer.concat([base, one])];
  }

  chunk(key: string, index: number): Buffer {
    const suffix = Buffer.alloc(5);
    suffix.writeUInt32BE(index, 1);
    return Buffer.concat([this.chunks, Buffer.from(key, 'utf8'), suffix]);
  }

  /** The log key of `version` (12 bytes). */
  logKey(version: Buffer): Buffer {
    return Buffer.concat([this.log, version]);
  }

  /** The first log key strictly after `version`. */
  logAfter(version: Buffer): Buffer {
    return Buffer.concat([this.log, version, zero]);
  }

  logEnd(): Buffer {
    return Buffer.concat([this.log, Buffer.from([0xff])]);
  }

  /** The version a log key stands for. */
  logVersion(key: Buffer): Buffer {
    if (key.length !== this.log.length + versionBytes) corrupt('a change-log key has the wrong length');
    return key.subarray(this.log.length);
  }

  expiry(expiresAt: number, key: string): Buffer {
    return Buffer.concat([this.expiries, u64(expiresAt), Buffer.from(key, 'utf8')]);
  }

  /** The key and expiry time an expiry index key stands for. */
  parseExpiry(indexKey: Buffer): { expiresAt: number; key: string } {
    if (indexKey.length <= this.expiries.length + 8) corrupt('an expiry index key is too short');
    const expiresAt = Number(indexKey.readBigUInt64BE(this.expiries.length));
    return { expiresAt, key: indexKey.subarray(this.expiries.length + 8).toString('utf8') };
  }

  /** The range of expiry index entries due at or before `now`. */
  expiredRange(now: number): [Buffer, Buffer] {
    return [this.expiries, Buffer.concat([this.expiries, u64(now + 1)])];
  }

  writeMarker(writeId: Buffer): Buffer {
    return Buffer.concat([this.writes, writeId]);
  }

  /** The range of write markers created before `ms`. */
  writeMarkersBefore(ms: number): [Buffer, Buffer] {
    return [this.writes, Buffer.concat([this.writes, u64(ms)])];
  }

  /** The range of the records whose keys may match the whole-token prefix `prefix` (callers still filter). */
  recordRange(prefix: string | undefined): [Buffer, Buffer] {
    if (prefix === undefined) return [this.records, Buffer.concat([this.records, Buffer.from([0xff])])];
    // Keys in [p, p/) are p itself, p.* and p-*: '-' and '.' sort just below '/'.
    return [this.record(prefix), this.record(`${prefix}/`)];
  }

  /** The key a record key stands for. */
  recordKey(recordKey: Buffer): string {
    return recordKey.subarray(this.records.length).toString('utf8');
  }
}

const zero = Buffer.from([0]);
const one = Buffer.from([1]);

/** A decoded record. `version` is the 12-byte version. */
export interface StoredRecord {
  readonly version: Buffer;
  readonly op: 'put' | 'delete' | 'purge';
  /** Milliseconds since the epoch after which the value is gone; 0 for none. */
  readonly expiresAt: number;
  readonly chunks: number;
  readonly length: number;
  /** The inline value (empty when chunked). */
  readonly inline: Buffer;
}

/**
 * The part of a record after its versionstamp, as written with a
 * versionstamped value: order, op, expiry, chunk count, length, inline value.
 */
export function encodeRecordSuffix(
  order: number,
  op: 'put' | 'delete' | 'purge',
  expiresAt: number,
  value: Uint8Array | undefined,
): Buffer {
  const length = value?.byteLength ?? 0;
  const chunks = length > inlineLimit ? Math.ceil(length / chunkBytes) : 0;
  const header = Buffer.alloc(2 + recordHeaderBytes);
  header.writeUInt16BE(order, 0);
  header[2] = opBytes[op];
  header.writeBigUInt64BE(BigInt(expiresAt), 3);
  header.writeUInt32BE(chunks, 11);
  header.writeUInt32BE(length, 15);
  if (chunks > 0 || value === undefined || length === 0) return header;
  return Buffer.concat([header, value]);
}

/** The chunks a value larger than {@link inlineLimit} is split into (empty for an inline value). */
export function splitChunks(value: Uint8Array): Buffer[] {
  if (value.byteLength <= inlineLimit) return [];
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < value.byteLength; offset += chunkBytes) {
    chunks.push(Buffer.from(value.subarray(offset, offset + chunkBytes)));
  }
  return chunks;
}

/** Reassembles a chunked value; throws `OperationFailed` when the chunks do not match the record. */
export function joinChunks(record: StoredRecord, rows: ReadonlyArray<readonly [Buffer, Buffer]>, key: string): Uint8Array {
  if (rows.length !== record.chunks) corrupt(`expected ${record.chunks} chunks, found ${rows.length}`, key);
  const value = new Uint8Array(record.length);
  let offset = 0;
  for (const [index, [, chunk]] of rows.entries()) {
    const expected = index < record.chunks - 1 ? chunkBytes : record.length - chunkBytes * (record.chunks - 1);
    if (chunk.byteLength !== expected) corrupt(`chunk ${index} has ${chunk.byteLength} bytes, expected ${expected}`, key);
    value.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return value;
}

/** Decodes a stored record; throws `OperationFailed` for bytes that are not one. */
export function decodeRecord(bytes: Buffer, key: string): StoredRecord {
  if (bytes.length < versionBytes + recordHeaderBytes) corrupt(`a record of ${bytes.length} bytes is too short`, key);
  const op = opsByByte.get(bytes[versionBytes] as number);
  if (op === undefined || op === 'expire') corrupt(`a record has the unknown op byte ${bytes[versionBytes]}`, key);
  const expiresAt = Number(bytes.readBigUInt64BE(versionBytes + 1));
  const chunks = bytes.readUInt32BE(versionBytes + 9);
  const length = bytes.readUInt32BE(versionBytes + 13);
  const inline = bytes.subarray(versionBytes + recordHeaderBytes);
  if (!Number.isSafeInteger(expiresAt)) corrupt('a record has an impossible expiry', key);
  if (chunks === 0 && inline.length !== length) corrupt(`a record says ${length} bytes but holds ${inline.length}`, key);
  if (chunks > 0 && (inline.length !== 0 || length <= inlineLimit || chunks !== Math.ceil(length / chunkBytes))) {
    corrupt(`a record's chunk count ${chunks} does not match its length ${length}`, key);
  }
  if (op !== 'put' && length !== 0) corrupt(`a ${op} record carries a value`, key);
  return { version: bytes.subarray(0, versionBytes), op, expiresAt, chunks, length, inline };
}

/** A change-log entry's value: the op and the key. */
export function encodeLogEntry(op: Op, key: string): Buffer {
  return Buffer.concat([Buffer.from([opBytes[op]]), Buffer.from(key, 'utf8')]);
}

export function decodeLogEntry(bytes: Buffer): { op: Op; key: string } {
  const op = opsByByte.get(bytes[0] as number);
  if (op === undefined || bytes.length < 2) corrupt('a change-log entry is malformed');
  return { op, key: bytes.subarray(1).toString('utf8') };
}

/** A 12-byte version from a 10-byte versionstamp and an order within the transaction. */
export function versionOf(stamp: Buffer, order: number): Buffer {
  if (stamp.length !== stampBytes) corrupt(`a versionstamp of ${stamp.length} bytes`);
  const version = Buffer.alloc(versionBytes);
  stamp.copy(version, 0);
  version.writeUInt16BE(order, stampBytes);
  return version;
}

/** The head and horizon values: a versionstamp followed by a 2-byte order. */
export function decodeVersionValue(bytes: Buffer | undefined, what: string): Buffer | undefined {
  if (bytes === undefined) return undefined;
  if (bytes.length !== versionBytes) corrupt(`the ${what} holds ${bytes.length} bytes, not a version`);
  return bytes;
}

/** The FoundationDB commit version inside a weft version. */
export function commitVersionOf(version: Buffer): bigint {
  return version.readBigUInt64BE(0);
}

/** The smallest version with the given commit version. */
export function versionAtCommit(commitVersion: bigint): Buffer {
  const version = Buffer.alloc(versionBytes);
  version.writeBigUInt64BE(commitVersion < 0n ? 0n : commitVersion, 0);
  return version;
}

const hexPattern = /^[0-9a-f]{24}$/;

/** The public text of a version or cursor: 24 lowercase hex digits. */
export function toHex(version: Buffer): Version & WatchCursor {
  return version.toString('hex') as Version & WatchCursor;
}

/** Parses a version or cursor; throws `InvalidArgument` for anything that is not one. */
export function fromHex(text: unknown, what: 'version' | 'cursor', key?: string): Buffer {
  if (typeof text === 'string' && hexPattern.test(text)) return Buffer.from(text, 'hex');
  throw kvError(
    KvErrorCode.InvalidArgument,
    backend,
    `${typeof text === 'string' ? `'${text.slice(0, 40)}'` : typeof text} is not a ${what} of the fdb backend`,
    { key },
  );
}

function u64(value: number): Buffer {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(value))), 0);
  return bytes;
}

function corrupt(detail: string, key?: string): never {
  throw kvError(KvErrorCode.OperationFailed, backend, `corrupt data in the bucket: ${detail}`, { key });
}
