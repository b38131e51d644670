import { setImmediate as nextTurn } from 'node:timers/promises';
import {
  type FdbDatabase,
  FdbError,
  FdbErrorCode,
  type FdbRangeOptions,
  type FdbTransaction,
  type FdbWatch,
  fdbErrorNames,
  isRetryable,
} from './transactor.js';

/**
 * Options of the in-process FoundationDB simulation. The defaults are
 * FoundationDB's own limits.
 */
export interface FdbSimulationOptions {
  /** A transaction older than this fails with `transaction_too_old` (1007). @default 5000 */
  readonly transactionLifetimeMs?: number;
  /** Bytes of keys and values one commit may write, else `transaction_too_large` (2101). @default 10000000 */
  readonly maxTransactionBytes?: number;
  /** Largest value, else `value_too_large` (2103). @default 100000 */
  readonly maxValueBytes?: number;
  /** Largest key, else `key_too_large` (2102). @default 10000 */
  readonly maxKeyBytes?: number;
}

/** How an injected fault makes the next commit end. */
export type FdbSimulatedFault =
  /** `commit_unknown_result` (1021) after the writes were applied. */
  | 'unknown-applied'
  /** `commit_unknown_result` (1021) without applying anything. */
  | 'unknown-not-applied'
  /** `not_committed` (1020), as if another transaction had conflicted. */
  | 'conflict';

interface Revision {
  readonly version: number;
  value: Buffer | undefined;
}

interface WatchEntry {
  readonly key: string;
  readonly baseline: string | undefined;
  readonly resolve: (changed: boolean) => void;
}

interface CommitRecord {
  readonly version: number;
  readonly points: ReadonlySet<string>;
  readonly ranges: ReadonlyArray<readonly [string, string]>;
}

type Operation =
  | { readonly kind: 'set'; readonly key: string; readonly value: Buffer }
  | { readonly kind: 'clear'; readonly key: string }
  | { readonly kind: 'clearRange'; readonly start: string; readonly end: string }
  | { readonly kind: 'stampKey'; readonly prefix: string; readonly suffix: string; readonly value: Buffer }
  | { readonly kind: 'stampValue'; readonly key: string; readonly suffix: Buffer };

const stampBytes = 10;

/**
 * An in-process **simulation** of the FoundationDB transaction interface the
 * `@weft/kv-fdb` backend uses. It is not FoundationDB and proves nothing about
 * a live cluster; it lets the backend's own logic run where `libfdb_c` cannot
 * be installed.
 *
 * What it implements, because the backend relies on it: multi-version reads
 * (every read of a transaction sees one snapshot), serializable commits with
 * read-conflict detection (`not_committed`, retried through `onError`),
 * read-your-writes, versionstamps that increase with commit order (versions
 * advance about 1,000,000 per second, like FoundationDB's), watches that fire
 * after a committed change, the 5 s / 10 MB / 100 KB / 10 KB limits as
 * FoundationDB's errors, transaction timeouts, and injectable faults
 * (`commit_unknown_result` with or without the commit applied).
 */
export class FdbSimulation implements FdbDatabase {
  readonly transactionLifetimeMs: number;
  readonly maxTransactionBytes: number;
  readonly maxValueBytes: number;
  readonly maxKeyBytes: number;
  /** Commits applied, and commits refused for a read conflict. */
  readonly stats = { commits: 0, conflicts: 0 };
  readonly #revisions = new Map<string, Revision[]>();
  /** Every key that has revisions, sorted (latin1 strings order like the bytes). */
  #sorted: string[] = [];
  #version = 0;
  #history: CommitRecord[] = [];
  readonly #watches = new Set<WatchEntry>();
  readonly #faults: FdbSimulatedFault[] = [];
  #closed = false;

  constructor(options: FdbSimulationOptions = {}) {
    this.transactionLifetimeMs = options.transactionLifetimeMs ?? 5000;
    this.maxTransactionBytes = options.maxTransactionBytes ?? 10_000_000;
    this.maxValueBytes = options.maxValueBytes ?? 100_000;
    this.maxKeyBytes = options.maxKeyBytes ?? 10_000;
  }

  createTransaction(options: { readonly timeoutMs?: number } = {}): FdbTransaction {
    if (this.#closed) throw new FdbError('the simulated database is closed', 2000);
    return new SimulatedTransaction(this, options.timeoutMs);
  }

  close(): void {
    this.#closed = true;
    for (const watch of this.#watches) watch.resolve(false);
    this.#watches.clear();
  }

  /** Queues faults: each of the next commits that would write ends with the next fault instead. */
  injectFaults(...faults: FdbSimulatedFault[]): void {
    this.#faults.push(...faults);
  }

  /** Watches registered and not yet fired or cancelled, on keys starting with `prefix`. */
  activeWatches(prefix: Uint8Array = Buffer.alloc(0)): number {
    const start = latin1(prefix);
    let count = 0;
    for (const watch of this.#watches) if (watch.key.startsWith(start)) count++;
    return count;
  }

  /** The latest committed version. */
  get version(): number {
    return this.#version;
  }

  /** @internal */
  get closed(): boolean {
    return this.#closed;
  }

  /** @internal the value of `key` as of `version` */
  readAt(key: string, version: number): Buffer | undefined {
    const revisions = this.#revisions.get(key);
    if (revisions === undefined) return undefined;
    for (let index = revisions.length - 1; index >= 0; index--) {
      const revision = revisions[index] as Revision;
      if (revision.version <= version) return revision.value;
    }
    return undefined;
  }

  /** @internal the index in the sorted key list of the first key `>= key` */
  lowerBound(key: string): number {
    let low = 0;
    let high = this.#sorted.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((this.#sorted[middle] as string) < key) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** @internal */
  keyAt(index: number): string | undefined {
    return this.#sorted[index];
  }

  /** @internal */
  addWatch(watch: WatchEntry): void {
    const current = this.readAt(watch.key, this.#version);
    if (this.#closed) watch.resolve(false);
    else if ((current === undefined ? undefined : latin1(current)) !== watch.baseline) watch.resolve(true);
    else this.#watches.add(watch);
  }

  /** @internal */
  removeWatch(watch: WatchEntry): void {
    this.#watches.delete(watch);
  }

  /** @internal a version that is older than every transaction still allowed to read */
  oldestReadable(): number {
    return (Date.now() - this.transactionLifetimeMs - 1000) * 1000;
  }

  /** @internal the current version, for a new read snapshot */
  readVersion(): number {
    return this.#version;
  }

  /** @internal */
  takeFault(): FdbSimulatedFault | undefined {
    return this.#faults.shift();
  }

  /** @internal true when a commit after `readVersion` wrote into one of `reads` */
  conflicts(readVersion: number, reads: ReadonlyArray<readonly [string, string]>): boolean {
    for (let index = this.#history.length - 1; index >= 0; index--) {
      const commit = this.#history[index] as CommitRecord;
      if (commit.version <= readVersion) break;
      for (const [start, end] of reads) {
        for (const point of commit.points) if (point >= start && point < end) return true;
        for (const [rangeStart, rangeEnd] of commit.ranges) if (rangeStart < end && start < rangeEnd) return true;
      }
    }
    return false;
  }

  /** @internal applies `operations` as one commit and returns its versionstamp */
  apply(operations: readonly Operation[]): Buffer {
    const version = Math.max(this.#version + 1, Date.now() * 1000);
    const stamp = Buffer.alloc(stampBytes);
    stamp.writeBigUInt64BE(BigInt(version), 0);
    const points = new Set<string>();
    const ranges: Array<readonly [string, string]> = [];
    const changed = new Set<string>();
    const write = (key: string, value: Buffer | undefined) => {
      let revisions = this.#revisions.get(key);
      if (revisions === undefined) {
        if (value === undefined) return;
        revisions = [];
        this.#revisions.set(key, revisions);
        this.#sorted.splice(this.lowerBound(key), 0, key);
      }
      const last = revisions[revisions.length - 1];
      if (last === undefined || last.version !== version) {
        if (value === undefined && (last === undefined || last.value === undefined)) return;
        revisions.push({ version, value });
      } else last.value = value;
      changed.add(key);
    };
    for (const operation of operations) {
      switch (operation.kind) {
        case 'set':
          write(operation.key, operation.value);
          points.add(operation.key);
          break;
        case 'clear':
          write(operation.key, undefined);
          points.add(operation.key);
          break;
        case 'clearRange': {
          ranges.push([operation.start, operation.end]);
          const keys: string[] = [];
          for (let index = this.lowerBound(operation.start); index < this.#sorted.length; index++) {
            const key = this.#sorted[index] as string;
            if (key >= operation.end) break;
            keys.push(key);
          }
          for (const key of keys) write(key, undefined);
          break;
        }
        case 'stampKey': {
          const key = operation.prefix + latin1(stamp) + operation.suffix;
          write(key, operation.value);
          points.add(key);
          break;
        }
        case 'stampValue':
          write(operation.key, Buffer.concat([stamp, operation.suffix]));
          points.add(operation.key);
          break;
      }
    }
    this.#version = version;
    this.#history.push({ version, points, ranges });
    this.stats.commits++;
    if (this.stats.commits % 256 === 0) this.#prune();
    for (const watch of [...this.#watches]) {
      if (!changed.has(watch.key)) continue;
      const current = this.readAt(watch.key, version);
      if ((current === undefined ? undefined : latin1(current)) === watch.baseline) continue;
      this.#watches.delete(watch);
      watch.resolve(true);
    }
    return stamp;
  }

  /** Drops revisions and commit records no transaction can still read. */
  #prune(): void {
    const oldest = this.oldestReadable();
    this.#history = this.#history.filter((commit) => commit.version > oldest);
    let removed = false;
    for (const [key, revisions] of this.#revisions) {
      let keepFrom = 0;
      for (let index = revisions.length - 1; index >= 0; index--) {
        if ((revisions[index] as Revision).version <= oldest) {
          keepFrom = index;
          break;
        }
      }
      if (keepFrom > 0) revisions.splice(0, keepFrom);
      const only = revisions[0];
      if (revisions.length === 1 && only !== undefined && only.value === undefined && only.version <= oldest) {
        this.#revisions.delete(key);
        removed = true;
      }
    }
    if (removed) this.#sorted = this.#sorted.filter((key) => this.#revisions.has(key));
  }
}

/** One simulated transaction. */
class SimulatedTransaction implements FdbTransaction {
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

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}
