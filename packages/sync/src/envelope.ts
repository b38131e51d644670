/**
 * Signed, encrypted changeset envelopes (docs/formats/sync-envelope.md) and
 * the changeset body they carry. Decoders treat bytes as hostile.
 */
import { type EventId, type LogEvent, RandomPool, type XChaCha } from '@weft/eventlog';
import { SyncError, SyncErrorCode } from './errors.js';
import { type DeviceIdentity, signWith, verifySignature } from './identity.js';

/** Version 2: changesets of libraries whose membership carries key commitments and bound cutoffs. */
export const envelopeVersion = 2;
const magic = new Uint8Array([0x57, 0x53, 0x59, 0x4e]); // "WSYN"
const nonceSize = 24;
const signatureSize = 64;
const hashSize = 32;

/** One event as it travels between devices. */
export interface SyncedEvent {
  readonly id: EventId;
  readonly entity: string;
  readonly scope: string;
  readonly kind: number;
  readonly time: bigint;
  readonly causationId: EventId | undefined;
  readonly correlationId: EventId | undefined;
  readonly parents: readonly EventId[];
  /** Empty when `shredded`. */
  readonly payload: Uint8Array;
  /** The author had shredded this event's key before pushing it. */
  readonly shredded: boolean;
}

/** What a changeset or a snapshot carries of a local event: a shredded payload travels as shredded, never as bytes. */
export function syncedOf(event: LogEvent): SyncedEvent {
  const shredded = event.disposition === 'shredded';
  return {
    id: event.id,
    entity: event.entity,
    scope: event.scope,
    kind: event.kind,
    time: event.time,
    causationId: event.causationId,
    correlationId: event.correlationId,
    parents: event.parents,
    payload: shredded ? new Uint8Array(0) : event.payload,
    shredded,
  };
}

/** The signed fields of an envelope. */
export interface EnvelopeFields {
  readonly device: string;
  readonly seq: number;
  readonly schemaVersion: number;
  readonly timestamp: number;
  readonly authorKey: Uint8Array;
  readonly previousHash: Uint8Array;
  readonly keyGeneration: number;
}

/** A decoded envelope: its fields, nonce, sealed payload and the bytes the signature covers. */
export interface Envelope extends EnvelopeFields {
  readonly nonce: Uint8Array;
  readonly sealed: Uint8Array;
  readonly signed: Uint8Array;
  readonly signature: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
/** Nonces come from a pooled CSPRNG buffer: one system call per changeset was a measurable part of a push. */
const noncePool = new RandomPool();

function invalid(message: string): SyncError {
  return new SyncError(SyncErrorCode.InvalidEnvelope, message);
}

/** The AAD of a changeset payload: binds store id, key path, key generation and format version. */
export function payloadAad(storeId: string, keyPath: string, keyGeneration: number): Uint8Array {
  const store = encoder.encode(storeId);
  const path = encoder.encode(keyPath);
  const aad = new Uint8Array(12 + 2 + store.length + 2 + path.length + 4 + 1);
  aad.set(encoder.encode('weft-sync-v1'), 0);
  const view = new DataView(aad.buffer);
  let at = 12;
  view.setUint16(at, store.length, true);
  aad.set(store, at + 2);
  at += 2 + store.length;
  view.setUint16(at, path.length, true);
  aad.set(path, at + 2);
  at += 2 + path.length;
  view.setUint32(at, keyGeneration, true);
  aad[at + 4] = envelopeVersion;
  return aad;
}

/** Seals a changeset body and signs the envelope. */
export function sealEnvelope(
  fields: EnvelopeFields,
  body: Uint8Array,
  libraryKey: Uint8Array,
  storeId: string,
  keyPath: string,
  cipher: XChaCha,
  identity: DeviceIdentity,
): Uint8Array {
  const nonce = noncePool.take(nonceSize);
  const sealed = cipher.seal(libraryKey, nonce, body, payloadAad(storeId, keyPath, fields.keyGeneration));
  const device = encoder.encode(fields.device);
  if (device.length === 0 || device.length > 64) throw new SyncError(SyncErrorCode.InvalidArgument, 'a device id is 1 to 64 bytes');
  const size = 4 + 1 + 1 + device.length + 8 + 4 + 8 + 32 + hashSize + 4 + nonceSize + 4 + sealed.length;
  const bytes = new Uint8Array(size + signatureSize);
  const view = new DataView(bytes.buffer);
  bytes.set(magic, 0);
  bytes[4] = envelopeVersion;
  bytes[5] = device.length;
  bytes.set(device, 6);
  let at = 6 + device.length;
  view.setBigUint64(at, BigInt(fields.seq), true);
  view.setUint32(at + 8, fields.schemaVersion, true);
  view.setBigUint64(at + 12, BigInt(fields.timestamp), true);
  bytes.set(fields.authorKey, at + 20);
  bytes.set(fields.previousHash, at + 52);
  view.setUint32(at + 84, fields.keyGeneration, true);
  bytes.set(nonce, at + 88);
  view.setUint32(at + 112, sealed.length, true);
  bytes.set(sealed, at + 116);
  at += 116 + sealed.length;
  bytes.set(signWith(identity, bytes.subarray(0, at)), at);
  return bytes;
}

/**
 * Decodes an envelope without trusting it.
 *
 * @throws {SyncError} `InvalidEnvelope`
 */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  if (!(bytes instanceof Uint8Array) || bytes.length < 6) throw invalid('too short to be an envelope');
  for (let index = 0; index < 4; index++) if (bytes[index] !== magic[index]) throw invalid('not a weft sync envelope (bad magic)');
  if (bytes[4] !== envelopeVersion)
    throw invalid(
      `unsupported envelope version ${bytes[4]} (this release reads version ${envelopeVersion}; version 1 predates key commitments)`,
    );
  const deviceLength = bytes[5] as number;
  const fixed = 6 + deviceLength + 116;
  if (deviceLength === 0 || bytes.length < fixed + signatureSize) throw invalid('the envelope is cut short');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let device: string;
  try {
    device = decoder.decode(bytes.subarray(6, 6 + deviceLength));
  } catch {
    throw invalid('the device id is not UTF-8');
  }
  const at = 6 + deviceLength;
  const seq = view.getBigUint64(at, true);
  if (seq < 1n || seq > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`sequence ${seq} is out of range`);
  const sealedLength = view.getUint32(at + 112, true);
  if (bytes.length !== fixed + sealedLength + signatureSize) throw invalid('the envelope length does not match its payload length');
  const timestamp = view.getBigUint64(at + 12, true);
  return {
    device,
    seq: Number(seq),
    schemaVersion: view.getUint32(at + 8, true),
    timestamp: Number(timestamp > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : timestamp),
    authorKey: bytes.slice(at + 20, at + 52),
    previousHash: bytes.slice(at + 52, at + 84),
    keyGeneration: view.getUint32(at + 84, true),
    nonce: bytes.slice(at + 88, at + 112),
    sealed: bytes.slice(at + 116, at + 116 + sealedLength),
    signed: bytes.subarray(0, fixed + sealedLength),
    signature: bytes.slice(fixed + sealedLength),
  };
}

/** True when the envelope's signature is valid for its author key. */
export function envelopeSignatureValid(envelope: Envelope): boolean {
  return verifySignature(envelope.authorKey, envelope.signed, envelope.signature);
}

/** Opens the payload; `undefined` when authentication fails. */
export function openEnvelope(
  envelope: Envelope,
  libraryKey: Uint8Array,
  storeId: string,
  keyPath: string,
  cipher: XChaCha,
): Uint8Array | undefined {
  return cipher.open(libraryKey, envelope.nonce, envelope.sealed, payloadAad(storeId, keyPath, envelope.keyGeneration));
}

// ---------------------------------------------------------------- changeset body

/** Encodes the events of a changeset and the blobs it references. */
export function encodeChangeset(events: readonly SyncedEvent[], blobs: readonly string[] = []): Uint8Array {
  const parts: Uint8Array[] = [u32(events.length)];
  for (const event of events) {
    const entity = encoder.encode(event.entity);
    const scope = encoder.encode(event.scope);
    const head = new Uint8Array(16 + 2 + 8 + 1);
    writeUuid(event.id, head, 0);
    const view = new DataView(head.buffer);
    view.setUint16(16, event.kind, true);
    view.setBigUint64(18, event.time, true);
    head[26] = (event.causationId === undefined ? 0 : 1) | (event.correlationId === undefined ? 0 : 2) | (event.shredded ? 4 : 0);
    parts.push(head, u16(entity.length), entity, u16(scope.length), scope);
    if (event.causationId !== undefined) parts.push(uuidBytes(event.causationId));
    if (event.correlationId !== undefined) parts.push(uuidBytes(event.correlationId));
    parts.push(u16(event.parents.length), ...event.parents.map(uuidBytes), u32(event.payload.length), event.payload);
  }
  parts.push(u16(blobs.length));
  for (const blob of blobs) {
    const id = encoder.encode(blob);
    parts.push(new Uint8Array([id.length]), id);
  }
  return concat(parts);
}

/** Decodes a changeset body: its events (see {@link decodeChangesetBody} for the blob references too). */
export function decodeChangeset(bytes: Uint8Array): SyncedEvent[] {
  return decodeChangesetBody(bytes).events;
}

/**
 * Decodes a changeset body: its events and the ids of the blobs it references.
 *
 * @throws {SyncError} `InvalidEnvelope`
 */
export function decodeChangesetBody(bytes: Uint8Array): { events: SyncedEvent[]; blobs: string[] } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (count: number) => {
    if (at + count > bytes.length) throw invalid('the changeset body is cut short');
  };
  const text = (): string => {
    need(2);
    const length = view.getUint16(at, true);
    need(2 + length);
    try {
      const value = decoder.decode(bytes.subarray(at + 2, at + 2 + length));
      at += 2 + length;
      if (value === '') throw invalid('an empty name');
      return value;
    } catch (error) {
      if (error instanceof SyncError) throw error;
      throw invalid('a name is not UTF-8');
    }
  };
  const uuid = (): EventId => {
    need(16);
    const id = formatUuid(bytes, at);
    at += 16;
    return id;
  };
  need(4);
  const count = view.getUint32(0, true);
  at = 4;
  if (count > 1_000_000) throw invalid(`${count} events is more than a changeset holds`);
  const events: SyncedEvent[] = [];
  for (let index = 0; index < count; index++) {
    need(27);
    const id = formatUuid(bytes, at);
    const kind = view.getUint16(at + 16, true);
    const time = view.getBigUint64(at + 18, true);
    const flags = bytes[at + 26] as number;
    if ((flags & ~7) !== 0) throw invalid('unknown event flags');
    at += 27;
    const entity = text();
    const scope = text();
    const causationId = flags & 1 ? uuid() : undefined;
    const correlationId = flags & 2 ? uuid() : undefined;
    need(2);
    const parentCount = view.getUint16(at, true);
    at += 2;
    const parents: EventId[] = [];
    for (let parent = 0; parent < parentCount; parent++) parents.push(uuid());
    need(4);
    const length = view.getUint32(at, true);
    at += 4;
    need(length);
    const payload = bytes.slice(at, at + length);
    at += length;
    events.push({ id, entity, scope, kind, time, causationId, correlationId, parents, payload, shredded: (flags & 4) !== 0 });
  }
  need(2);
  const blobCount = view.getUint16(at, true);
  at += 2;
  const blobs: string[] = [];
  for (let index = 0; index < blobCount; index++) {
    need(1);
    const length = bytes[at] as number;
    need(1 + length);
    const blob = decoder.decode(bytes.subarray(at + 1, at + 1 + length));
    if (!/^[0-9a-f]{32,64}$/.test(blob)) throw invalid('a blob id is malformed');
    blobs.push(blob);
    at += 1 + length;
  }
  if (at !== bytes.length) throw invalid('the changeset body has trailing bytes');
  return { events, blobs };
}

const hex = Array.from({ length: 256 }, (_, index) => index.toString(16).padStart(2, '0'));

function formatUuid(bytes: Uint8Array, offset: number): EventId {
  let text = '';
  for (let index = 0; index < 16; index++) {
    if (index === 4 || index === 6 || index === 8 || index === 10) text += '-';
    text += hex[bytes[offset + index] as number];
  }
  return text as EventId;
}

function writeUuid(id: string, target: Uint8Array, offset: number): void {
  const compact = id.replaceAll('-', '');
  for (let index = 0; index < 16; index++) target[offset + index] = Number.parseInt(compact.slice(index * 2, index * 2 + 2), 16);
}

function uuidBytes(id: string): Uint8Array {
  const bytes = new Uint8Array(16);
  writeUuid(id, bytes, 0);
  return bytes;
}

function u16(value: number): Uint8Array {
  const bytes = new Uint8Array(2);
  new DataView(bytes.buffer).setUint16(0, value, true);
  return bytes;
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  return bytes;
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
