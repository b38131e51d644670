/**
 * `heads.<device>`: where a device says its chain ends and what it applied of
 * the others. Heads are unsigned hints, moved with compare-and-swap; every
 * changeset they point at is verified on its own.
 */
import { type KvEntry, KvError, KvErrorCode, type KvStore } from '@weft/kv';
import { SyncError, SyncErrorCode } from './errors.js';
import { headKey } from './store-layout.js';

export interface HeadValue {
  readonly seq: number;
  readonly time: number;
  /** Per other device, the last changeset this device applied: what garbage collection may not go past. */
  readonly applied?: Readonly<Record<string, number>>;
  /** Set by an owner removing the device: the head never moves again, and `seq` is its last accepted changeset. */
  readonly frozen?: boolean;
}

const encoder = new TextEncoder();

/** A head's value, or `undefined` when it is malformed (heads are hints: changesets are verified). */
export function parseHead(value: Uint8Array): HeadValue | undefined {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(value)) as Partial<HeadValue>;
    if (typeof parsed.seq === 'number' && Number.isSafeInteger(parsed.seq) && parsed.seq >= 0)
      return {
        seq: parsed.seq,
        time: Number(parsed.time) || 0,
        ...(typeof parsed.applied === 'object' && parsed.applied !== null ? { applied: parsed.applied } : {}),
        ...(parsed.frozen === true ? { frozen: true } : {}),
      };
  } catch {
    // a malformed head is ignored: heads are hints, changesets are verified
  }
  return undefined;
}

/** True for the errors after which a compare-and-swap loop reads again and decides. */
export function isCasRetry(error: unknown): boolean {
  return (
    KvError.is(error, KvErrorCode.AlreadyExists) ||
    KvError.is(error, KvErrorCode.RevisionMismatch) ||
    KvError.is(error, KvErrorCode.Indeterminate)
  );
}

/**
 * Moves `heads.<device>` forward to `seq` with compare-and-swap, never
 * backwards, merging `applied` into what the head already says.
 *
 * @throws {SyncError} `NotAllowed` when the head is frozen below `seq`; `StateFailed`
 */
export async function publishHead(
  kv: KvStore,
  device: string,
  seq: number,
  applied: Readonly<Record<string, number>>,
  clock: () => number,
): Promise<void> {
  const key = headKey(device);
  for (let attempt = 0; attempt < 50; attempt++) {
    const current = await kv.get(key);
    const value = nextHead(current, device, seq, applied, clock);
    if (value === undefined) return;
    try {
      if (current === undefined) await kv.create(key, value);
      else await kv.update(key, value, current.version);
      return;
    } catch (error) {
      // Lost a race, or the outcome is unknown: read again and decide.
      if (isCasRetry(error)) continue;
      throw error;
    }
  }
  throw new SyncError(SyncErrorCode.StateFailed, `could not move ${key} to ${seq}`);
}

/**
 * The value `heads.<device>` (now `current`) moves to for `seq`, merging
 * `applied` into what it says; `undefined` when it already says as much.
 *
 * @throws {SyncError} `NotAllowed` when the head is frozen below `seq`
 */
export function nextHead(
  current: KvEntry | undefined,
  device: string,
  seq: number,
  applied: Readonly<Record<string, number>>,
  clock: () => number,
): Uint8Array | undefined {
  const head = current === undefined ? undefined : parseHead(current.value);
  const behind = Object.entries(applied).some(([other, value]) => (head?.applied?.[other] ?? 0) < value);
  if (head?.frozen === true) {
    if (head.seq >= seq) return undefined;
    throw new SyncError(SyncErrorCode.NotAllowed, `${device} was removed from the library: its head is frozen at changeset ${head.seq}`);
  }
  if (head !== undefined && head.seq >= seq && !behind) return undefined;
  return encoder.encode(
    JSON.stringify({
      seq: Math.max(seq, head?.seq ?? 0),
      time: clock(),
      applied: Object.fromEntries(
        [...new Set([...Object.keys(applied), ...Object.keys(head?.applied ?? {})])].map((other) => [
          other,
          Math.max(applied[other] ?? 0, head?.applied?.[other] ?? 0),
        ]),
      ),
    } satisfies HeadValue),
  );
}

/** Marks `heads.<device>` frozen at its current seq with compare-and-swap; returns that seq. */
export async function freezeHead(kv: KvStore, device: string, clock: () => number): Promise<number> {
  const key = headKey(device);
  for (let attempt = 0; attempt < 50; attempt++) {
    const current = await kv.get(key);
    const head = current === undefined ? undefined : parseHead(current.value);
    if (head?.frozen === true) return head.seq;
    const frozen = encoder.encode(JSON.stringify({ ...(head ?? { seq: 0 }), time: clock(), frozen: true } satisfies HeadValue));
    try {
      if (current === undefined) await kv.create(key, frozen);
      else await kv.update(key, frozen, current.version);
      return head?.seq ?? 0;
    } catch (error) {
      if (!isCasRetry(error)) throw error;
    }
  }
  throw new SyncError(SyncErrorCode.StateFailed, `could not freeze ${key}`);
}
