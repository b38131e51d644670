/**
 * The binary format of segment files (specified in docs/formats/eventlog.md).
 * Decoders treat every byte as hostile: every length is bounds-checked and
 * every failure is an `InvalidFrame` error, never an exception of another
 * kind or a wrongly decoded event.
 */
import { EventLogError, EventLogErrorCode } from './errors.js';
import { type EventId, formatUuid, writeUuid } from './ids.js';
import { equalBytes } from './util.js';

export const segmentMagic = new Uint8Array([0x57, 0x45, 0x46, 0x54, 0x4c, 0x4f, 0x47, 0x00]); // "WEFTLOG\0"
export const formatVersion = 1;
export const segmentHeaderSize = 32;
/** Offset of the checkpoint field in the segment header (8-byte aligned, rewritten in place). */
export const checkpointOffset = 24;
export const framePrefixSize = 8;
export const headerVersion = 1;
/** Fixed part of a frame header, before the variable-length fields. */
const fixedHeaderSize = 84;
export const hashSize = 32;
export const nonceSize = 24;
/** The largest frame (header plus payload) a decoder accepts. */
export const maxFrameSize = 64 * 1024 * 1024;
export const maxNameBytes = 1024;
export const maxParents = 1024;

const flagEncrypted = 1;
const flagIdempotency = 2;
const flagCausation = 4;
const flagCorrelation = 8;
const knownFlags = flagEncrypted | flagIdempotency | flagCausation | flagCorrelation;

/** Encryption metadata of a frame; it sits outside the hashed region. */
export interface EncryptionMetadata {
  readonly keyId: number;
  readonly nonce: Uint8Array;
}

/** Everything a frame header holds. */
export interface FrameHeader {
  readonly kind: number;
  readonly id: EventId;
  readonly time: bigint;
  readonly position: number;
  readonly sequence: number;
  readonly batchIndex: number;
  readonly batchCount: number;
  readonly hash: Uint8Array;
  readonly entity: string;
  readonly scope: string;
  readonly causationId: EventId | undefined;
  readonly correlationId: EventId | undefined;
  readonly parents: readonly EventId[];
  readonly idempotencyKey: string | undefined;
  readonly encryption: EncryptionMetadata | undefined;
}

/** A decoded frame: its header, the stored payload bytes, and where it ends. */
export interface DecodedFrame {
  readonly header: FrameHeader;
  readonly payload: Uint8Array;
  /** Bytes the frame occupies, prefix included. */
  readonly size: number;
}

const encoder = new TextEncoder();

/** Entity and scope names repeat from frame to frame: their UTF-8 bytes are kept (up to a bound) instead of re-encoded. */
const nameBytes = new Map<string, Uint8Array>();
const maxCachedNames = 16_384;

function encodeName(name: string): Uint8Array {
  let bytes = nameBytes.get(name);
  if (bytes === undefined) {
    bytes = encoder.encode(name);
    if (nameBytes.size < maxCachedNames) nameBytes.set(name, bytes);
  }
  return bytes;
}
const decoder = new TextDecoder('utf-8', { fatal: true });

function invalid(message: string, offset?: number): EventLogError {
  return new EventLogError(EventLogErrorCode.InvalidFrame, message, offset === undefined ? {} : { offset });
}

/** Encodes a segment header. */
export function encodeSegmentHeader(firstPosition: number, checkpoint: number): Uint8Array {
  const bytes = new Uint8Array(segmentHeaderSize);
  bytes.set(segmentMagic, 0);
  bytes[8] = formatVersion;
  const view = new DataView(bytes.buffer);
  view.setBigUint64(16, BigInt(firstPosition), true);
  view.setBigUint64(checkpointOffset, BigInt(checkpoint), true);
  return bytes;
}

/** Decodes and checks a segment header. */
export function decodeSegmentHeader(bytes: Uint8Array): { firstPosition: number; checkpoint: number } {
  if (bytes.length < segmentHeaderSize) throw invalid(`segment header is ${bytes.length} bytes, expected ${segmentHeaderSize}`, 0);
  for (let index = 0; index < segmentMagic.length; index++) {
    if (bytes[index] !== segmentMagic[index]) throw invalid('not a weft segment (bad magic)', 0);
  }
  if (bytes[8] !== formatVersion) throw invalid(`unsupported segment format version ${bytes[8]}`, 8);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const firstPosition = safeNumber(view.getBigUint64(16, true), 'first position', 16);
  const checkpoint = safeNumber(view.getBigUint64(checkpointOffset, true), 'checkpoint', checkpointOffset);
  return { firstPosition, checkpoint };
}

/** Encodes the 8-byte checkpoint field. */
export function encodeCheckpoint(length: number): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(length), true);
  return bytes;
}

/** The byte length of the header {@link encodeFrame} would write for `header`. */
function headerLength(entity: Uint8Array, scope: Uint8Array, header: FrameHeader, idempotency: Uint8Array | undefined): number {
  return (
    fixedHeaderSize +
    2 +
    entity.length +
    2 +
    scope.length +
    (header.causationId === undefined ? 0 : 16) +
    (header.correlationId === undefined ? 0 : 16) +
    2 +
    16 * header.parents.length +
    (idempotency === undefined ? 0 : 2 + idempotency.length) +
    (header.encryption === undefined ? 0 : 4 + nonceSize)
  );
}

/**
 * Encodes one frame: `[u32 length][u32 crc32c][header][payload]`, where length
 * and CRC cover header and payload; into a zero-filled view from `allocate`
 * when given.
 */
export function encodeFrame(
  header: FrameHeader,
  payload: Uint8Array,
  crc32c: (data: Uint8Array) => number,
  allocate: (size: number) => Uint8Array = (size) => new Uint8Array(size),
): Uint8Array {
  const entity = encodeName(header.entity);
  const scope = encodeName(header.scope);
  const idempotency = header.idempotencyKey === undefined ? undefined : encoder.encode(header.idempotencyKey);
  const length = headerLength(entity, scope, header, idempotency);
  const frame = allocate(framePrefixSize + length + payload.length);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  let at = framePrefixSize;
  const flags =
    (header.encryption === undefined ? 0 : flagEncrypted) |
    (idempotency === undefined ? 0 : flagIdempotency) |
    (header.causationId === undefined ? 0 : flagCausation) |
    (header.correlationId === undefined ? 0 : flagCorrelation);
  frame[at] = headerVersion;
  frame[at + 1] = flags;
  view.setUint16(at + 2, header.kind, true);
  writeUuid(header.id, frame, at + 4);
  view.setBigUint64(at + 20, header.time, true);
  setUint64(view, at + 28, header.position);
  setUint64(view, at + 36, header.sequence);
  view.setUint16(at + 44, header.batchIndex, true);
  view.setUint16(at + 46, header.batchCount, true);
  view.setUint32(at + 48, payload.length, true);
  frame.set(header.hash, at + 52);
  at += fixedHeaderSize;
  at = writeBytes16(frame, view, at, entity);
  at = writeBytes16(frame, view, at, scope);
  if (header.causationId !== undefined) {
    writeUuid(header.causationId, frame, at);
    at += 16;
  }
  if (header.correlationId !== undefined) {
    writeUuid(header.correlationId, frame, at);
    at += 16;
  }
  view.setUint16(at, header.parents.length, true);
  at += 2;
  for (const parent of header.parents) {
    writeUuid(parent, frame, at);
    at += 16;
  }
  if (idempotency !== undefined) at = writeBytes16(frame, view, at, idempotency);
  if (header.encryption !== undefined) {
    view.setUint32(at, header.encryption.keyId, true);
    frame.set(header.encryption.nonce, at + 4);
    at += 4 + nonceSize;
  }
  frame.set(payload, at);
  view.setUint32(0, length + payload.length, true);
  view.setUint32(4, crc32c(frame.subarray(framePrefixSize)), true);
  return frame;
}

/** Writes a safe integer as a little-endian u64 (without making a bigint). */
function setUint64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true);
}

function writeBytes16(frame: Uint8Array, view: DataView, at: number, bytes: Uint8Array): number {
  view.setUint16(at, bytes.length, true);
  frame.set(bytes, at + 2);
  return at + 2 + bytes.length;
}

/** Why a frame could not be read at an offset: the bytes end too soon (a torn tail), or they are damaged. */
export type FrameProblem = 'truncated' | 'damaged';

/**
 * Decodes the frame at `offset` of `bytes` (the payload and header bytes as
 * in {@link decodeFrameBody}). Returns `{ problem }` instead of throwing for the
 * two outcomes recovery must tell apart.
 */
export function readFrame(
  bytes: Uint8Array,
  offset: number,
  crc32c: (data: Uint8Array) => number,
  payloadAs: 'copy' | 'view' = 'copy',
  headerBytesAs: 'copy' | 'view' = 'copy',
): DecodedFrame | { problem: FrameProblem; detail: string } {
  if (bytes.length - offset < framePrefixSize) return { problem: 'truncated', detail: 'the frame prefix is cut off' };
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, bytes.length - offset);
  const length = view.getUint32(0, true);
  if (length < fixedHeaderSize || length > maxFrameSize) return { problem: 'damaged', detail: `frame length ${length} is out of range` };
  if (bytes.length - offset - framePrefixSize < length)
    return { problem: 'truncated', detail: `the frame needs ${length} bytes, the file ends first` };
  const body = bytes.subarray(offset + framePrefixSize, offset + framePrefixSize + length);
  if (crc32c(body) !== view.getUint32(4, true)) return { problem: 'damaged', detail: 'CRC mismatch' };
  try {
    const { header, payload } = decodeFrameBody(body, payloadAs, headerBytesAs);
    return { header, payload, size: framePrefixSize + length };
  } catch (error) {
    return { problem: 'damaged', detail: error instanceof Error ? error.message : String(error) };
  }
}

/** The parents of the many events that have none: one shared, frozen array. */
const noParents: readonly EventId[] = Object.freeze([]);

/** Throws unless `count` bytes from `at` lie inside the body. */
function need(body: Uint8Array, at: number, count: number, what: string): void {
  if (at + count > body.length) throw invalid(`${what} runs past the end of the frame`, at);
}

/** Where the `u16 length ‖ bytes` field at `at` ends, checked against the body. */
function field16End(body: Uint8Array, view: DataView, at: number, what: string): number {
  need(body, at, 2, what);
  const end = at + 2 + view.getUint16(at, true);
  need(body, at + 2, end - at - 2, what);
  return end;
}

/**
 * Decodes a frame body (header and payload, as covered by the CRC). The
 * payload is a copy, or with `'view'` a view of `body` (for a reader that
 * drops it before `body`, such as indexing at open); the same for the hash
 * and the nonce with `headerBytesAs`. Views are for bodies nothing reuses
 * (file reads allocate a fresh buffer each time).
 *
 * @throws {EventLogError} `InvalidFrame` for any malformed field
 */
export function decodeFrameBody(
  body: Uint8Array,
  payloadAs: 'copy' | 'view' = 'copy',
  headerBytesAs: 'copy' | 'view' = 'copy',
): { header: FrameHeader; payload: Uint8Array } {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const copy = headerBytesAs === 'copy';
  need(body, 0, fixedHeaderSize, 'the fixed header');
  if (body[0] !== headerVersion) throw invalid(`unsupported header version ${body[0]}`, 0);
  const flags = body[1] as number;
  if ((flags & ~knownFlags) !== 0) throw invalid(`unknown header flags ${flags.toString(2)}`, 1);
  const kind = view.getUint16(2, true);
  const id = formatUuid(body, 4);
  const time = view.getBigUint64(20, true);
  const position = getSafeUint64(view, 28, 'position');
  const sequence = getSafeUint64(view, 36, 'sequence');
  const batchIndex = view.getUint16(44, true);
  const batchCount = view.getUint16(46, true);
  const payloadSize = view.getUint32(48, true);
  if (position < 1 || sequence < 1) throw invalid('position and sequence start at 1', 28);
  if (batchCount < 1 || batchIndex >= batchCount) throw invalid(`batch index ${batchIndex} of ${batchCount} is impossible`, 44);
  const hash = copy ? body.slice(52, 52 + hashSize) : body.subarray(52, 52 + hashSize);
  let at = fixedHeaderSize;
  let end = field16End(body, view, at, 'the entity');
  const entity = readName(body.subarray(at + 2, end), 'entity', end);
  at = end;
  end = field16End(body, view, at, 'the scope');
  const scope = readName(body.subarray(at + 2, end), 'scope', end);
  at = end;
  let causationId: EventId | undefined;
  let correlationId: EventId | undefined;
  if (flags & flagCausation) {
    need(body, at, 16, 'the causation id');
    causationId = formatUuid(body, at);
    at += 16;
  }
  if (flags & flagCorrelation) {
    need(body, at, 16, 'the correlation id');
    correlationId = formatUuid(body, at);
    at += 16;
  }
  need(body, at, 2, 'the parent count');
  const parentCount = view.getUint16(at, true);
  at += 2;
  if (parentCount > maxParents) throw invalid(`${parentCount} causal parents exceed the limit of ${maxParents}`, at);
  need(body, at, parentCount * 16, 'the causal parents');
  let parents = noParents;
  if (parentCount > 0) {
    const list: EventId[] = [];
    for (let index = 0; index < parentCount; index++) list.push(formatUuid(body, at + index * 16));
    parents = list;
  }
  at += parentCount * 16;
  let idempotencyKey: string | undefined;
  if (flags & flagIdempotency) {
    end = field16End(body, view, at, 'the idempotency key');
    idempotencyKey = readName(body.subarray(at + 2, end), 'idempotency key', end);
    at = end;
  }
  let encryption: EncryptionMetadata | undefined;
  if (flags & flagEncrypted) {
    need(body, at, 4 + nonceSize, 'the encryption metadata');
    const nonce = copy ? body.slice(at + 4, at + 4 + nonceSize) : body.subarray(at + 4, at + 4 + nonceSize);
    encryption = { keyId: view.getUint32(at, true), nonce };
    at += 4 + nonceSize;
  }
  if (body.length - at !== payloadSize) {
    throw invalid(`the header says ${payloadSize} payload bytes, the frame holds ${body.length - at}`, 48);
  }
  return {
    header: {
      kind,
      id,
      time,
      position,
      sequence,
      batchIndex,
      batchCount,
      hash,
      entity,
      scope,
      causationId,
      correlationId,
      parents,
      idempotencyKey,
      encryption,
    },
    payload: payloadAs === 'copy' ? body.slice(at) : body.subarray(at),
  };
}

/**
 * Names decoded before, by a hash of their bytes: entity and scope names
 * repeat from frame to frame, and decoding each again was a tenth of a
 * replay. A hit is checked byte for byte.
 */
const decodedNames = new Map<number, { bytes: Uint8Array; text: string }>();
const maxDecodedNameBytes = 128;

function readName(bytes: Uint8Array, what: string, at: number): string {
  if (bytes.length === 0 || bytes.length > maxNameBytes) throw invalid(`the ${what} must be 1 to ${maxNameBytes} bytes`, at);
  const cacheable = bytes.length <= maxDecodedNameBytes;
  let key = 0;
  if (cacheable) {
    key = 0x811c9dc5 ^ bytes.length;
    for (let index = 0; index < bytes.length; index++) key = Math.imul(key ^ (bytes[index] as number), 0x01000193);
    const known = decodedNames.get(key);
    if (known !== undefined && equalBytes(known.bytes, bytes)) return known.text;
  }
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw invalid(`the ${what} is not valid UTF-8`, at);
  }
  // Once full, the cache keeps what it has: clearing it would make a log with more names than it holds miss every time.
  if (cacheable && decodedNames.size < maxCachedNames) decodedNames.set(key, { bytes: bytes.slice(), text });
  return text;
}

/** Reads a little-endian u64 as a number (without making a bigint); beyond the safe integers it is an `InvalidFrame`. */
function getSafeUint64(view: DataView, at: number, what: string): number {
  const high = view.getUint32(at + 4, true);
  if (high > 0x1f_ffff) throw invalid(`${what} ${view.getBigUint64(at, true)} is beyond the supported range`, at);
  return high * 0x1_0000_0000 + view.getUint32(at, true);
}

function safeNumber(value: bigint, what: string, at: number): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${what} ${value} is beyond the supported range`, at);
  return Number(value);
}
