/**
 * The binary format of segment files (specified in docs/formats/eventlog.md).
 * Decoders treat every byte as hostile: every length is bounds-checked and
 * every failure is an `InvalidFrame` error, never an exception of another
 * kind or a wrongly decoded event.
 */
import { EventLogError, EventLogErrorCode } from './errors.js';
import { type EventId, formatUuid, writeUuid } from './ids.js';

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

/** The DataView of the buffer frames were last encoded into: frames share arena buffers, so one view serves many. */
let encodeView: DataView | undefined;

function viewOf(frame: Uint8Array): DataView {
  if (encodeView?.buffer !== frame.buffer) encodeView = new DataView(frame.buffer);
  return encodeView;
}

/**
 * Encodes one frame: `[u32 length][u32 crc32c][header][payload]`, where length
 * and CRC cover header and payload; into a zero-filled view from `allocate`
 * when given. `idBytes`, when given, are the 16 bytes of `header.id` (an
 * appender that has them skips parsing the string).
 */
export function encodeFrame(
  header: FrameHeader,
  payload: Uint8Array,
  crc32c: (data: Uint8Array, start?: number, end?: number) => number,
  allocate: (size: number) => Uint8Array = (size) => new Uint8Array(size),
  idBytes?: Uint8Array,
): Uint8Array {
  const entity = encodeName(header.entity);
  const scope = encodeName(header.scope);
  const idempotency = header.idempotencyKey === undefined ? undefined : encoder.encode(header.idempotencyKey);
  const length = headerLength(entity, scope, header, idempotency);
  const frame = allocate(framePrefixSize + length + payload.length);
  const view = viewOf(frame);
  const base = frame.byteOffset;
  let at = framePrefixSize;
  const flags =
    (header.encryption === undefined ? 0 : flagEncrypted) |
    (idempotency === undefined ? 0 : flagIdempotency) |
    (header.causationId === undefined ? 0 : flagCausation) |
    (header.correlationId === undefined ? 0 : flagCorrelation);
  frame[at] = headerVersion;
  frame[at + 1] = flags;
  view.setUint16(base + at + 2, header.kind, true);
  if (idBytes === undefined) writeUuid(header.id, frame, at + 4);
  else for (let index = 0; index < 16; index++) frame[at + 4 + index] = idBytes[index] as number;
  view.setBigUint64(base + at + 20, header.time, true);
  setUint64(view, base + at + 28, header.position);
  setUint64(view, base + at + 36, header.sequence);
  view.setUint16(base + at + 44, header.batchIndex, true);
  view.setUint16(base + at + 46, header.batchCount, true);
  view.setUint32(base + at + 48, payload.length, true);
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
  view.setUint16(base + at, header.parents.length, true);
  at += 2;
  for (const parent of header.parents) {
    writeUuid(parent, frame, at);
    at += 16;
  }
  if (idempotency !== undefined) at = writeBytes16(frame, view, at, idempotency);
  if (header.encryption !== undefined) {
    view.setUint32(base + at, header.encryption.keyId, true);
    frame.set(header.encryption.nonce, at + 4);
    at += 4 + nonceSize;
  }
  frame.set(payload, at);
  view.setUint32(base, length + payload.length, true);
  view.setUint32(base + 4, crc32c(frame, framePrefixSize, frame.length), true);
  return frame;
}

/** Writes a safe integer as a little-endian u64 (without making a bigint). */
function setUint64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** Writes a u16 length and the bytes at `at` of `frame`; `view` covers the frame's whole buffer. */
function writeBytes16(frame: Uint8Array, view: DataView, at: number, bytes: Uint8Array): number {
  view.setUint16(frame.byteOffset + at, bytes.length, true);
  frame.set(bytes, at + 2);
  return at + 2 + bytes.length;
}

/** Why a frame could not be read at an offset: the bytes end too soon (a torn tail), or they are damaged. */
export type FrameProblem = 'truncated' | 'damaged';

/** How the byte fields of a decoded frame relate to the bytes it was decoded from. */
export interface FrameReadOptions {
  /** The payload as a copy (default) or a view of the bytes. */
  readonly payloadAs?: 'copy' | 'view';
  /** The hash and nonce as copies (default) or views of the bytes. */
  readonly headerBytesAs?: 'copy' | 'view';
  /** A DataView over the whole of `bytes`, for a reader decoding many frames of one buffer. */
  readonly view?: DataView;
  /** The frame's CRC was checked already (by {@link checkFrames}). */
  readonly crcChecked?: boolean;
}

/**
 * Checks, in one call, the CRC of every whole frame of `bytes` from `start`,
 * in place: returns where checking stopped, the end of the last whole frame
 * whose CRC matched. A frame there is cut off by the end of `bytes`, or its
 * length or CRC is wrong ({@link readFrame} says which).
 */
export function checkFrames(
  bytes: Uint8Array,
  view: DataView,
  start: number,
  crc32c: (data: Uint8Array, start?: number, end?: number) => number,
): number {
  let at = start;
  while (bytes.length - at >= framePrefixSize) {
    const length = view.getUint32(at, true);
    if (length < fixedHeaderSize || length > maxFrameSize || bytes.length - at - framePrefixSize < length) break;
    const bodyStart = at + framePrefixSize;
    if (crc32c(bytes, bodyStart, bodyStart + length) !== view.getUint32(at + 4, true)) break;
    at = bodyStart + length;
  }
  return at;
}

/**
 * Decodes the frame at `offset` of `bytes`, its CRC checked in place (the
 * byte fields as {@link FrameReadOptions} say; copies by default). Returns
 * `{ problem }` instead of throwing for the two outcomes recovery must tell
 * apart.
 */
export function readFrame(
  bytes: Uint8Array,
  offset: number,
  crc32c: (data: Uint8Array, start?: number, end?: number) => number,
  options: FrameReadOptions = {},
): DecodedFrame | { problem: FrameProblem; detail: string } {
  if (bytes.length - offset < framePrefixSize) return { problem: 'truncated', detail: 'the frame prefix is cut off' };
  const view = options.view ?? new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(offset, true);
  if (length < fixedHeaderSize || length > maxFrameSize) return { problem: 'damaged', detail: `frame length ${length} is out of range` };
  if (bytes.length - offset - framePrefixSize < length)
    return { problem: 'truncated', detail: `the frame needs ${length} bytes, the file ends first` };
  const start = offset + framePrefixSize;
  if (options.crcChecked !== true && crc32c(bytes, start, start + length) !== view.getUint32(offset + 4, true)) {
    return { problem: 'damaged', detail: 'CRC mismatch' };
  }
  try {
    return decodeBodyAt(bytes, view, start, start + length, options.payloadAs ?? 'copy', options.headerBytesAs ?? 'copy');
  } catch (error) {
    return { problem: 'damaged', detail: error instanceof Error ? error.message : String(error) };
  }
}

/** The parents of the many events that have none: one shared, frozen array. */
const noParents: readonly EventId[] = Object.freeze([]);

/** Throws unless `count` bytes from `at` lie before `end` (offsets in messages are from the body's start). */
function need(at: number, count: number, end: number, start: number, what: string): void {
  if (at + count > end) throw invalid(`${what} runs past the end of the frame`, at - start);
}

/** Where the `u16 length ‖ bytes` field at `at` ends, checked against the body. */
function field16End(view: DataView, at: number, end: number, start: number, what: string): number {
  need(at, 2, end, start, what);
  const fieldEnd = at + 2 + view.getUint16(at, true);
  need(at + 2, fieldEnd - at - 2, end, start, what);
  return fieldEnd;
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
  return decodeBodyAt(body, new DataView(body.buffer, body.byteOffset, body.byteLength), 0, body.length, payloadAs, headerBytesAs);
}

/** Decodes the body at `bytes[start, end)`, read through `view` (over the whole of `bytes`), in place. */
function decodeBodyAt(
  bytes: Uint8Array,
  view: DataView,
  start: number,
  end: number,
  payloadAs: 'copy' | 'view',
  headerBytesAs: 'copy' | 'view',
): DecodedFrame {
  const copy = headerBytesAs === 'copy';
  need(start, fixedHeaderSize, end, start, 'the fixed header');
  if (bytes[start] !== headerVersion) throw invalid(`unsupported header version ${bytes[start]}`, 0);
  const flags = bytes[start + 1] as number;
  if ((flags & ~knownFlags) !== 0) throw invalid(`unknown header flags ${flags.toString(2)}`, 1);
  const kind = view.getUint16(start + 2, true);
  const id = formatUuid(bytes, start + 4);
  const time = view.getBigUint64(start + 20, true);
  const position = getSafeUint64(view, start + 28, 'position', start);
  const sequence = getSafeUint64(view, start + 36, 'sequence', start);
  const batchIndex = view.getUint16(start + 44, true);
  const batchCount = view.getUint16(start + 46, true);
  const payloadSize = view.getUint32(start + 48, true);
  if (position < 1 || sequence < 1) throw invalid('position and sequence start at 1', 28);
  if (batchCount < 1 || batchIndex >= batchCount) throw invalid(`batch index ${batchIndex} of ${batchCount} is impossible`, 44);
  const hashAt = start + 52;
  const hash = copy ? bytes.slice(hashAt, hashAt + hashSize) : bytes.subarray(hashAt, hashAt + hashSize);
  let at = start + fixedHeaderSize;
  let fieldEnd = field16End(view, at, end, start, 'the entity');
  const entity = readName(bytes, at + 2, fieldEnd, 'entity', fieldEnd - start);
  at = fieldEnd;
  fieldEnd = field16End(view, at, end, start, 'the scope');
  const scope = readName(bytes, at + 2, fieldEnd, 'scope', fieldEnd - start);
  at = fieldEnd;
  let causationId: EventId | undefined;
  let correlationId: EventId | undefined;
  if (flags & flagCausation) {
    need(at, 16, end, start, 'the causation id');
    causationId = formatUuid(bytes, at);
    at += 16;
  }
  if (flags & flagCorrelation) {
    need(at, 16, end, start, 'the correlation id');
    correlationId = formatUuid(bytes, at);
    at += 16;
  }
  need(at, 2, end, start, 'the parent count');
  const parentCount = view.getUint16(at, true);
  at += 2;
  if (parentCount > maxParents) throw invalid(`${parentCount} causal parents exceed the limit of ${maxParents}`, at - start);
  need(at, parentCount * 16, end, start, 'the causal parents');
  let parents = noParents;
  if (parentCount > 0) {
    const list: EventId[] = [];
    for (let index = 0; index < parentCount; index++) list.push(formatUuid(bytes, at + index * 16));
    parents = list;
  }
  at += parentCount * 16;
  let idempotencyKey: string | undefined;
  if (flags & flagIdempotency) {
    fieldEnd = field16End(view, at, end, start, 'the idempotency key');
    idempotencyKey = readName(bytes, at + 2, fieldEnd, 'idempotency key', fieldEnd - start);
    at = fieldEnd;
  }
  let encryption: EncryptionMetadata | undefined;
  if (flags & flagEncrypted) {
    need(at, 4 + nonceSize, end, start, 'the encryption metadata');
    const nonce = copy ? bytes.slice(at + 4, at + 4 + nonceSize) : bytes.subarray(at + 4, at + 4 + nonceSize);
    encryption = { keyId: view.getUint32(at, true), nonce };
    at += 4 + nonceSize;
  }
  if (end - at !== payloadSize) {
    throw invalid(`the header says ${payloadSize} payload bytes, the frame holds ${end - at}`, 48);
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
    payload: payloadAs === 'copy' ? bytes.slice(at, end) : bytes.subarray(at, end),
    size: framePrefixSize + end - start,
  };
}

/**
 * Names decoded before, by a hash of their bytes: entity and scope names
 * repeat from frame to frame, and decoding each again was a tenth of a
 * replay. A hit is checked byte for byte.
 */
const decodedNames = new Map<number, { bytes: Uint8Array; text: string }>();
const maxDecodedNameBytes = 128;

function readName(bytes: Uint8Array, start: number, end: number, what: string, at: number): string {
  const length = end - start;
  if (length === 0 || length > maxNameBytes) throw invalid(`the ${what} must be 1 to ${maxNameBytes} bytes`, at);
  const cacheable = length <= maxDecodedNameBytes;
  let key = 0;
  if (cacheable) {
    key = 0x811c9dc5 ^ length;
    for (let index = start; index < end; index++) key = Math.imul(key ^ (bytes[index] as number), 0x01000193);
    const known = decodedNames.get(key);
    if (known !== undefined && equalRange(known.bytes, bytes, start, end)) return known.text;
  }
  const nameBytes = bytes.subarray(start, end);
  let text: string;
  try {
    text = decoder.decode(nameBytes);
  } catch {
    throw invalid(`the ${what} is not valid UTF-8`, at);
  }
  // Once full, the cache keeps what it has: clearing it would make a log with more names than it holds miss every time.
  if (cacheable && decodedNames.size < maxCachedNames) decodedNames.set(key, { bytes: nameBytes.slice(), text });
  return text;
}

/** Whether `known` holds the same bytes as `bytes[start, end)`. */
function equalRange(known: Uint8Array, bytes: Uint8Array, start: number, end: number): boolean {
  if (known.length !== end - start) return false;
  for (let index = 0; index < known.length; index++) if (known[index] !== bytes[start + index]) return false;
  return true;
}

/** Reads a little-endian u64 as a number (without making a bigint); beyond the safe integers it is an `InvalidFrame`. */
function getSafeUint64(view: DataView, at: number, what: string, start = 0): number {
  const high = view.getUint32(at + 4, true);
  if (high > 0x1f_ffff) throw invalid(`${what} ${view.getBigUint64(at, true)} is beyond the supported range`, at - start);
  return high * 0x1_0000_0000 + view.getUint32(at, true);
}

function safeNumber(value: bigint, what: string, at: number): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${what} ${value} is beyond the supported range`, at);
  return Number(value);
}
