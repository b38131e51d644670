/**
 * A last-writer-wins map over synced events: the built-in example of state
 * that converges on every device. Writes are events of two kinds on the
 * entity `map/<name>`; the projection keeps, per key, the write with the
 * greatest hybrid-logical-clock time, a delete winning a tie, then the
 * greater event id. Events stamped further in the future than `maxSkewMs`
 * are refused (reported, not applied), so a device with a runaway clock
 * cannot pin a key forever.
 */
import type { EventId, EventLog, LogEvent } from '@weft/eventlog';
import { HybridLogicalClock } from '@weft/eventlog';
import { SyncError, SyncErrorCode } from './errors.js';

/** Kind of a map write. */
export const lwwSetKind = 0x1f01;
/** Kind of a map delete. */
export const lwwDeleteKind = 0x1f02;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function entityOf(map: string): string {
  if (typeof map !== 'string' || map.length === 0 || map.length > 200)
    throw new SyncError(SyncErrorCode.InvalidArgument, 'a map name is 1 to 200 characters');
  return `map/${map}`;
}

function encode(key: string, value: Uint8Array): Uint8Array {
  const keyBytes = encoder.encode(key);
  if (keyBytes.length === 0 || keyBytes.length > 0xffff)
    throw new SyncError(SyncErrorCode.InvalidArgument, 'a map key is 1 to 65535 bytes');
  const payload = new Uint8Array(2 + keyBytes.length + value.length);
  new DataView(payload.buffer).setUint16(0, keyBytes.length, true);
  payload.set(keyBytes, 2);
  payload.set(value, 2 + keyBytes.length);
  return payload;
}

function decode(payload: Uint8Array): { key: string; value: Uint8Array } | undefined {
  if (payload.length < 2) return undefined;
  const length = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint16(0, true);
  if (length === 0 || 2 + length > payload.length) return undefined;
  return { key: decoder.decode(payload.subarray(2, 2 + length)), value: payload.slice(2 + length) };
}

/** Writes `key = value` in the map `map` of this device's log. */
export async function lwwSet(log: EventLog, map: string, key: string, value: Uint8Array): Promise<EventId> {
  const receipt = await log.append({ entity: entityOf(map), kind: lwwSetKind, payload: encode(key, value) });
  return receipt.events[0]?.id as EventId;
}

/** Deletes `key` from the map `map`. */
export async function lwwDelete(log: EventLog, map: string, key: string): Promise<EventId> {
  const receipt = await log.append({ entity: entityOf(map), kind: lwwDeleteKind, payload: encode(key, new Uint8Array(0)) });
  return receipt.events[0]?.id as EventId;
}

/** The state of a map: live entries, and the events refused for far-future timestamps. */
export interface LwwState {
  readonly entries: ReadonlyMap<string, Uint8Array>;
  readonly refused: readonly EventId[];
}

interface Winner {
  readonly time: bigint;
  readonly deleted: boolean;
  readonly id: string;
  readonly value: Uint8Array;
}

function wins(candidate: Winner, current: Winner | undefined): boolean {
  if (current === undefined) return true;
  if (candidate.time !== current.time) return candidate.time > current.time;
  if (candidate.deleted !== current.deleted) return candidate.deleted;
  return candidate.id > current.id;
}

/**
 * Folds a map's events. The result depends only on the set of events, not
 * on their order in the log, so devices with the same events agree.
 */
export async function projectLww(log: EventLog, map: string, options: { now?: number; maxSkewMs?: number } = {}): Promise<LwwState> {
  const now = options.now ?? Date.now();
  const maxSkewMs = options.maxSkewMs ?? 5 * 60 * 1000;
  const winners = new Map<string, Winner>();
  const refused: EventId[] = [];
  for await (const event of log.readEntity(entityOf(map))) apply(event);
  function apply(event: LogEvent): void {
    if (event.kind !== lwwSetKind && event.kind !== lwwDeleteKind) return;
    if (HybridLogicalClock.parts(event.time).wallMs > now + maxSkewMs) {
      refused.push(event.id);
      return;
    }
    const decoded = decode(event.payload);
    if (decoded === undefined) return;
    const candidate = { time: event.time, deleted: event.kind === lwwDeleteKind, id: event.id, value: decoded.value };
    if (wins(candidate, winners.get(decoded.key))) winners.set(decoded.key, candidate);
  }
  const entries = new Map<string, Uint8Array>();
  for (const [key, winner] of [...winners].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    if (!winner.deleted) entries.set(key, winner.value);
  return { entries, refused };
}
