import { setImmediate as nextTurn } from 'node:timers/promises';
import type { FdbSimulation } from './simulation.js';
import {
  FdbError,
  FdbErrorCode,
  type FdbRangeOptions,
  type FdbTransaction,
  type FdbWatch,
  fdbErrorNames,
  isRetryable,
} from './transactor.js';

/** Bytes of a versionstamp: an 8-byte commit version and a 2-byte batch order. */
export const stampBytes = 10;

/** A watch armed by a committed transaction of the simulation. */
export interface WatchEntry {
  readonly key: string;
  readonly baseline: string | undefined;
  readonly resolve: (changed: boolean) => void;
}

/** One write of a transaction, applied at commit. */
export type Operation =
  | { readonly kind: 'set'; readonly key: string; readonly value: Buffer }
  | { readonly kind: 'clear'; readonly key: string }
  | { readonly kind: 'clearRange'; readonly start: string; readonly end: string }
  | { readonly kind: 'stampKey'; readonly prefix: string; readonly suffix: string; readonly value: Buffer }
  | { readonly kind: 'stampValue'; readonly key: string; readonly suffix: Buffer };

/** One simulated transaction. */
export class SimulatedTransaction implements FdbTransaction {
  readonly #db: FdbSimulation;
  readonly #timeoutMs: number | undefined;
  readonly #createdAt = Date.now();
  #readVersion: number | undefined;
  #readAt = 0;
  #operations: Operation[] = [];
  #reads: Array<readonly [string, string]> = [];
  #watches: Array<{ key: string; resolve: (changed: boolean) => void; entry?: WatchEntry }> = [];
  #stamp: { promise: Promise<Buffer>; resolve: (stamp: Buffer) => void; reject: (error: unknown) => void } | undefined;
  #state: 'open' | 'committing' | 'committed' | 'cancelled' = 'open';

  constructor(db: FdbSimulation, timeoutMs: number | undefined) {
    this.#db = db;
    this.#timeoutMs = timeoutMs;
  }

  async get(key: Buffer): Promise<Buffer | undefined> {
    const version = await this.#snapshot();
    const text = latin1(key);
    const own = this.#ownValue(text);
    if (own !== null) return own === undefined ? undefined : Buffer.from(own);
    this.#reads.push([text, `${text}\0`]);
    const value = this.#db.readAt(text, version);
    return value === undefined ? undefined : Buffer.from(value);
  }

  async getRange(start: Buffer, end: Buffer, options: FdbRangeOptions = {}): Promise<Array<[Buffer, Buffer]>> {
    const version = await this.#snapshot();
    const from = latin1(start);
    const to = latin1(end);
    const limit = options.limit ?? Number.POSITIVE_INFINITY;
    for (const operation of this.#operations) {
      if (operation.kind !== 'stampKey') continue;
      const low = operation.prefix + '\0'.repeat(stampBytes) + operation.suffix;
      const high = `${operation.prefix}${'\xff'.repeat(stampBytes)}${operation.suffix}\0`;
      if (low < to && from < high) unreadable('a range overlapping a versionstamped key this transaction wrote');
    }
    // Keys this transaction set, merged with the snapshot's keys.
    const ownKeys = new Set<string>();
    for (const operation of this.#operations) {
      if (operation.kind === 'set' && operation.key >= from && operation.key < to) ownKeys.add(operation.key);
    }
    const own = [...ownKeys].sort();
    const results: Array<[Buffer, Buffer]> = [];
    const reverse = options.reverse === true;
    let index = reverse ? this.#db.lowerBound(to) - 1 : this.#db.lowerBound(from);
    let ownIndex = reverse ? own.length - 1 : 0;
    let last: string | undefined;
    while (results.length < limit) {
      const stored = this.#db.keyAt(index);
      const storedKey = stored !== undefined && stored >= from && stored < to && index >= 0 ? stored : undefined;
      const ownKey = own[ownIndex];
      let key: string;
      if (storedKey === undefined && ownKey === undefined) break;
      if (storedKey === undefined || (ownKey !== undefined && (reverse ? ownKey > storedKey : ownKey < storedKey))) {
        key = ownKey as string;
        ownIndex += reverse ? -1 : 1;
      } else {
        key = storedKey;
        index += reverse ? -1 : 1;
        if (ownKey === storedKey) ownIndex += reverse ? -1 : 1;
      }
      const mine = this.#ownValue(key);
      const value = mine === null ? this.#db.readAt(key, version) : mine;
      last = key;
      if (value !== undefined) results.push([Buffer.from(key, 'latin1'), Buffer.from(value)]);
    }
    // The conflict range covers what was read: all of it, or up to the last key returned when the limit stopped the read.
    if (results.length < limit || last === undefined) this.#reads.push([from, to]);
    else if (reverse) this.#reads.push([last, to]);
    else this.#reads.push([from, `${last}\0`]);
    return results;
  }

  set(key: Buffer, value: Buffer): void {
    this.#assertWritable();
    this.#operations.push({ kind: 'set', key: latin1(key), value: Buffer.from(value) });
  }

  clear(key: Buffer): void {
    this.#assertWritable();
    this.#operations.push({ kind: 'clear', key: latin1(key) });
  }

  clearRange(start: Buffer, end: Buffer): void {
    this.#assertWritable();
    this.#operations.push({ kind: 'clearRange', start: latin1(start), end: latin1(end) });
  }

  setVersionstampedKey(prefix: Buffer, suffix: Buffer, value: Buffer): void {
    this.#assertWritable();
    this.#operations.push({ kind: 'stampKey', prefix: latin1(prefix), suffix: latin1(suffix), value: Buffer.from(value) });
  }

  setVersionstampedValue(key: Buffer, suffix: Buffer): void {
    this.#assertWritable();
    this.#operations.push({ kind: 'stampValue', key: latin1(key), suffix: Buffer.from(suffix) });
  }

  watch(key: Buffer): FdbWatch {
    this.#assertWritable();
    const text = latin1(key);
    let settle: (changed: boolean) => void = () => undefined;
    const promise = new Promise<boolean>((resolve) => {
      settle = resolve;
    });
    const pending: { key: string; resolve: (changed: boolean) => void; entry?: WatchEntry } = { key: text, resolve: settle };
    this.#watches.push(pending);
    return {
      promise,
      cancel: () => {
        if (pending.entry !== undefined) this.#db.removeWatch(pending.entry);
        settle(false);
      },
    };
  }

  getVersionstamp(): Promise<Buffer> {
    if (this.#stamp === undefined) {
      let resolve: (stamp: Buffer) => void = () => undefined;
      let reject: (error: unknown) => void = () => undefined;
      const promise = new Promise<Buffer>((yes, no) => {
        resolve = yes;
        reject = no;
      });
      promise.catch(() => undefined);
      this.#stamp = { promise, resolve, reject };
    }
    return this.#stamp.promise;
  }

  async commit(): Promise<void> {
    this.#assertWritable();
    this.#state = 'committing';
    try {
      await nextTurn();
      this.#assertAlive();
      const readVersion = this.#readVersion;
      const writes = this.#operations;
      if (writes.length === 0) {
        this.#state = 'committed';
        this.#stamp?.reject(new FdbError('the transaction wrote nothing, so it has no versionstamp', 2021));
        this.#registerWatches();
        return;
      }
      let bytes = 0;
      for (const operation of writes) {
        const keys =
          operation.kind === 'clearRange'
            ? [operation.start, operation.end]
            : operation.kind === 'stampKey'
              ? [operation.prefix + operation.suffix + '\0'.repeat(stampBytes)]
              : [operation.key];
        for (const key of keys) {
          if (key.length > this.#db.maxKeyBytes) fail(FdbErrorCode.keyTooLarge, `a key of ${key.length} bytes`);
          bytes += key.length;
        }
        const value =
          operation.kind === 'set' || operation.kind === 'stampKey'
            ? operation.value.byteLength
            : operation.kind === 'stampValue'
              ? operation.suffix.byteLength + stampBytes
              : 0;
        if (value > this.#db.maxValueBytes) fail(FdbErrorCode.valueTooLarge, `a value of ${value} bytes`);
        bytes += value;
      }
      if (bytes > this.#db.maxTransactionBytes) fail(FdbErrorCode.transactionTooLarge, `${bytes} bytes written`);
      if (readVersion !== undefined && this.#db.conflicts(readVersion, this.#reads)) {
        this.#db.stats.conflicts++;
        fail(FdbErrorCode.notCommitted, 'a read conflicted with a later commit');
      }
      const fault = this.#db.takeFault();
      if (fault === 'conflict') fail(FdbErrorCode.notCommitted, 'injected conflict');
      if (fault === 'unknown-not-applied') fail(FdbErrorCode.commitUnknownResult, 'injected, not applied');
      const stamp = this.#db.apply(writes);
      if (fault === 'unknown-applied') fail(FdbErrorCode.commitUnknownResult, 'injected, applied');
      this.#state = 'committed';
      this.#stamp?.resolve(stamp);
      this.#registerWatches();
    } catch (error) {
      if (this.#state === 'committing') this.#state = 'open';
      this.#stamp?.reject(error);
      this.#dropWatches();
      throw error;
    }
  }

  async onError(error: unknown): Promise<void> {
    if (!isRetryable(error) || this.#state === 'cancelled') throw error;
    this.#reset();
    this.#assertAlive();
    // FoundationDB backs off before a retry; a short random pause lets the conflicting writer finish.
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
  }

  cancel(): void {
    this.#state = 'cancelled';
    this.#dropWatches();
    this.#stamp?.reject(new FdbError('transaction_cancelled', FdbErrorCode.transactionCancelled));
  }

  #reset(): void {
    this.#readVersion = undefined;
    this.#operations = [];
    this.#reads = [];
    this.#dropWatches();
    this.#stamp = undefined;
    this.#state = 'open';
  }

  #dropWatches(): void {
    for (const watch of this.#watches) {
      if (watch.entry !== undefined) this.#db.removeWatch(watch.entry);
      watch.resolve(false);
    }
    this.#watches = [];
  }

  #registerWatches(): void {
    const version = this.#readVersion ?? this.#db.readVersion();
    for (const watch of this.#watches) {
      const own = this.#ownValue(watch.key);
      const seen = own === null ? this.#db.readAt(watch.key, version) : own;
      const entry: WatchEntry = { key: watch.key, baseline: seen === undefined ? undefined : latin1(seen), resolve: watch.resolve };
      watch.entry = entry;
      this.#db.addWatch(entry);
    }
    this.#watches = [];
  }

  /** The value this transaction's own writes give `key`: `null` when they do not touch it. */
  #ownValue(key: string): Buffer | undefined | null {
    for (let index = this.#operations.length - 1; index >= 0; index--) {
      const operation = this.#operations[index] as Operation;
      switch (operation.kind) {
        case 'set':
          if (operation.key === key) return operation.value;
          break;
        case 'clear':
          if (operation.key === key) return undefined;
          break;
        case 'clearRange':
          if (key >= operation.start && key < operation.end) return undefined;
          break;
        case 'stampValue':
          if (operation.key === key) unreadable('a key whose versionstamped value this transaction wrote');
          break;
        case 'stampKey':
          if (
            key.length === operation.prefix.length + stampBytes + operation.suffix.length &&
            key.startsWith(operation.prefix) &&
            key.endsWith(operation.suffix)
          ) {
            unreadable('a key that may be the versionstamped key this transaction wrote');
          }
          break;
      }
    }
    return null;
  }

  async #snapshot(): Promise<number> {
    this.#assertWritable();
    await nextTurn();
    this.#assertAlive();
    if (this.#readVersion === undefined) {
      this.#readVersion = this.#db.readVersion();
      this.#readAt = Date.now();
    }
    return this.#readVersion;
  }

  #assertWritable(): void {
    if (this.#state === 'cancelled') fail(FdbErrorCode.transactionCancelled, 'the transaction was cancelled');
    if (this.#state !== 'open') fail(2017, 'the transaction is committing or committed');
    this.#assertAlive();
  }

  #assertAlive(): void {
    if (this.#db.closed) fail(2000, 'the simulated database is closed');
    const now = Date.now();
    if (this.#timeoutMs !== undefined && now - this.#createdAt > this.#timeoutMs) {
      fail(FdbErrorCode.transactionTimedOut, `the transaction ran past its ${this.#timeoutMs} ms timeout`);
    }
    if (this.#readVersion !== undefined && now - this.#readAt > this.#db.transactionLifetimeMs) {
      fail(FdbErrorCode.transactionTooOld, `the transaction is older than ${this.#db.transactionLifetimeMs} ms`);
    }
  }
}

function fail(code: number, detail: string): never {
  throw new FdbError(`${fdbErrorNames[code] ?? `error ${code}`}: ${detail} (simulated)`, code);
}

function unreadable(what: string): never {
  fail(FdbErrorCode.accessedUnreadable, `read ${what}`);
}

export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}
