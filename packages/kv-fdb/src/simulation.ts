import { latin1, type Operation, SimulatedTransaction, stampBytes, type WatchEntry } from './simulated-transaction.js';
import { type FdbDatabase, FdbError, type FdbTransaction } from './transactor.js';

/**
 * Options of the in-process FoundationDB simulation. The defaults are
 * FoundationDB's own limits.
 */
export interface FdbSimulationOptions {
  /** A transaction older than this fails with `transaction_too_old` (1007). @default 5000 */
  readonly transactionLifetimeMs?: number | undefined;
  /** Bytes of keys and values one commit may write, else `transaction_too_large` (2101). @default 10000000 */
  readonly maxTransactionBytes?: number | undefined;
  /** Largest value, else `value_too_large` (2103). @default 100000 */
  readonly maxValueBytes?: number | undefined;
  /** Largest key, else `key_too_large` (2102). @default 10000 */
  readonly maxKeyBytes?: number | undefined;
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

interface CommitRecord {
  readonly version: number;
  readonly points: ReadonlySet<string>;
  readonly ranges: ReadonlyArray<readonly [string, string]>;
}

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
