import { Notifier } from '@weft/common';
import { copyBytes } from '../backend/util.js';
import { type Clock, systemClock } from '../clock.js';
import { KvErrorCode, kvError } from '../errors.js';
import type { KvCapabilities } from '../types.js';
import { describe } from '../validate.js';

export const backend = 'memory';

/** A value handed in or out of the bucket, as a copy of its own (a tombstone's absent value is empty). */
export function copy(value: Uint8Array | undefined): Uint8Array {
  return value === undefined ? new Uint8Array(0) : copyBytes(value);
}

/** Options of a memory bucket; they take effect when the bucket is first opened on its server. */
export interface MemoryBucketOptions {
  /**
   * Versions retained per key in the change history; older ones are coalesced
   * away (a resumed watch still gets each key's latest change).
   * @default Infinity
   */
  readonly history?: number | undefined;
  /**
   * Change-history entries retained for the whole bucket; dropping the oldest
   * one that is still a key's latest change moves the horizon, and watches
   * resumed from before the horizon fail with `CursorExpired`.
   * @default Infinity
   */
  readonly maxHistoryEntries?: number | undefined;
  /** @default 1048576 (1 MiB) */
  readonly maxValueBytes?: number | undefined;
  /** The clock for TTLs; pass a {@link ManualClock} to move time by hand. @default systemClock */
  readonly clock?: Clock | undefined;
}

export type ChangeType = 'put' | 'delete' | 'purge' | 'expire';

export interface Change {
  readonly seq: number;
  readonly key: string;
  readonly type: ChangeType;
  readonly value: Uint8Array | undefined;
  removed: boolean;
}

export interface StoredRecord {
  readonly op: 'put' | 'delete' | 'purge';
  readonly value: Uint8Array | undefined;
  readonly seq: number;
  readonly expiresAt: number | undefined;
}

/** The shared state of one bucket: what a server process would hold. */
export class MemoryBucket {
  readonly capabilities: KvCapabilities;
  readonly clock: Clock;
  readonly changed = new Notifier();
  /** Watches currently running against this bucket, across all handles. */
  activeWatches = 0;
  seq = 0;
  /** Resuming from a cursor below this is refused: history it would need is gone. */
  horizon = 0;
  readonly records = new Map<string, StoredRecord>();
  /** Change history in sequence order; removed entries are skipped and swept out in bulk. */
  history: Change[] = [];
  removedChanges = 0;
  readonly changesByKey = new Map<string, Change[]>();
  readonly maxHistoryEntries: number;
  readonly #expiryTimers = new Map<string, () => void>();

  constructor(options: MemoryBucketOptions) {
    const history = options.history ?? Number.POSITIVE_INFINITY;
    const maxHistoryEntries = options.maxHistoryEntries ?? Number.POSITIVE_INFINITY;
    const maxValueBytes = options.maxValueBytes ?? 1024 * 1024;
    if (!(history >= 1)) throw kvError(KvErrorCode.InvalidArgument, backend, `history must be at least 1, got ${describe(history)}`);
    if (!(maxHistoryEntries >= 1)) {
      throw kvError(KvErrorCode.InvalidArgument, backend, `maxHistoryEntries must be at least 1, got ${describe(maxHistoryEntries)}`);
    }
    if (!(Number.isInteger(maxValueBytes) && maxValueBytes >= 0)) {
      throw kvError(KvErrorCode.InvalidArgument, backend, `maxValueBytes must be a non-negative integer, got ${describe(maxValueBytes)}`);
    }
    this.maxHistoryEntries = maxHistoryEntries;
    this.clock = options.clock ?? systemClock;
    this.capabilities = Object.freeze({
      ttl: true,
      purge: true,
      multiPrefixWatch: 'native',
      maxValueBytes,
      readYourWrites: true,
      history,
      expireBeforeNextWrite: true,
      commit: { maxOps: 1000, maxBytes: 64 * 1024 * 1024 },
    });
  }

  /** The record when it holds a live value at `now`. */
  live(key: string): StoredRecord | undefined {
    const record = this.records.get(key);
    if (record === undefined || record.op !== 'put') return undefined;
    if (record.expiresAt !== undefined && this.clock.now() >= record.expiresAt) return undefined;
    return record;
  }

  /** The record unless it has expired (an expired record reads as never written). */
  current(key: string): StoredRecord | undefined {
    const record = this.records.get(key);
    if (record?.expiresAt !== undefined && this.clock.now() >= record.expiresAt) return undefined;
    return record;
  }

  write(key: string, op: 'put' | 'delete' | 'purge', value: Uint8Array | undefined, ttlMs?: number): number {
    const previous = this.records.get(key);
    if (previous?.op === 'put' && previous.expiresAt !== undefined && this.clock.now() >= previous.expiresAt) {
      // A passed TTL whose timer has not fired yet: its expire goes first, so watchers see the removal in order.
      this.#append({ seq: ++this.seq, key, type: 'expire', value: undefined, removed: false });
    }
    const seq = ++this.seq;
    const expiresAt = ttlMs === undefined ? undefined : this.clock.now() + ttlMs;
    this.records.set(key, { op, value, seq, expiresAt });
    this.#cancelExpiry(key);
    if (ttlMs !== undefined) this.#scheduleExpiry(key, seq, ttlMs);
    if (op === 'purge') this.#removeKeyHistory(key);
    this.#append({ seq, key, type: op, value, removed: false });
    return seq;
  }

  /** Writes the `expire` of `key` now if its TTL has passed and its timer has not fired yet. */
  settle(key: string): void {
    const record = this.records.get(key);
    if (record?.op === 'put' && record.expiresAt !== undefined && this.clock.now() >= record.expiresAt) this.expire(key, record.seq);
  }

  /** Expires `key` if its TTL'd record `seq` is still current and due. */
  expire(key: string, seq: number): void {
    const record = this.records.get(key);
    if (record === undefined || record.seq !== seq || record.expiresAt === undefined) return;
    const remaining = record.expiresAt - this.clock.now();
    if (remaining > 0) {
      this.#scheduleExpiry(key, seq, remaining);
      return;
    }
    this.#expiryTimers.delete(key);
    this.records.delete(key);
    this.#append({ seq: ++this.seq, key, type: 'expire', value: undefined, removed: false });
  }

  /** Drops every history entry up to `through`; watches resumed from before it fail with `CursorExpired`. */
  forgetHistory(through: number): void {
    for (const change of this.history) {
      if (change.seq > through) break;
      this.#removeChange(change);
    }
    this.horizon = Math.max(this.horizon, Math.min(through, this.seq));
    this.#sweepRemoved();
  }

  /** Index of the first retained change with `seq > after`. */
  firstAfter(after: number): number {
    let low = 0;
    let high = this.history.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((this.history[middle] as Change).seq <= after) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  #append(change: Change): void {
    this.history.push(change);
    let perKey = this.changesByKey.get(change.key);
    if (perKey === undefined) {
      perKey = [];
      this.changesByKey.set(change.key, perKey);
    }
    perKey.push(change);
    // Coalescing a key's older versions loses nothing a resumed watch needs: its latest change stays.
    while (perKey.length > this.capabilities.history) this.#removeChange(perKey[0] as Change);
    const retained = this.history.length - this.removedChanges;
    if (retained > this.maxHistoryEntries) {
      let excess = retained - this.maxHistoryEntries;
      for (const oldest of this.history) {
        if (excess === 0) break;
        if (oldest.removed) continue;
        const latestOfKey = this.changesByKey.get(oldest.key)?.at(-1) === oldest;
        this.#removeChange(oldest);
        if (latestOfKey) this.horizon = Math.max(this.horizon, oldest.seq);
        excess--;
      }
    }
    this.#sweepRemoved();
    this.changed.notify();
  }

  #removeKeyHistory(key: string): void {
    for (const change of [...(this.changesByKey.get(key) ?? [])]) this.#removeChange(change);
  }

  #removeChange(change: Change): void {
    if (change.removed) return;
    change.removed = true;
    this.removedChanges++;
    const perKey = this.changesByKey.get(change.key);
    if (perKey !== undefined) {
      const index = perKey.indexOf(change);
      if (index >= 0) perKey.splice(index, 1);
      if (perKey.length === 0) this.changesByKey.delete(change.key);
    }
  }

  #sweepRemoved(): void {
    if (this.removedChanges > 1024 && this.removedChanges * 2 > this.history.length) {
      this.history = this.history.filter((change) => !change.removed);
      this.removedChanges = 0;
    }
  }

  #scheduleExpiry(key: string, seq: number, delayMs: number): void {
    this.#expiryTimers.set(
      key,
      this.clock.setTimer(delayMs, () => this.expire(key, seq)),
    );
  }

  #cancelExpiry(key: string): void {
    this.#expiryTimers.get(key)?.();
    this.#expiryTimers.delete(key);
  }
}
