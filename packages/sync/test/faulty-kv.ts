/**
 * The sync fault simulation's KV: a handle on an in-memory bucket that a
 * test can make misbehave like a real network and store: writes that land
 * but report `Indeterminate`, partitions, dropped / duplicated / reordered
 * watch events, and a fast-check scheduler that decides in which order
 * concurrent requests complete. It is a simulation for tests.
 */
import {
  type KvCapabilities,
  type KvCommitOp,
  type KvEntry,
  KvError,
  KvErrorCode,
  type KvRecord,
  type KvStore,
  type Version,
  type WatchCursor,
  type WatchEvent,
  type WatchOptions,
} from '@weft/kv';
import type fc from 'fast-check';

export interface FaultKnobs {
  /** Probability that a write lands and then reports `Indeterminate`. */
  ambiguousWrites: number;
  dropWatchEvents: number;
  duplicateWatchEvents: number;
  reorderWatchEvents: number;
  partitioned: boolean;
}

export const calm: FaultKnobs = {
  ambiguousWrites: 0,
  dropWatchEvents: 0,
  duplicateWatchEvents: 0,
  reorderWatchEvents: 0,
  partitioned: false,
};

export class FaultyKv implements KvStore {
  readonly stats = { ambiguous: 0, dropped: 0, duplicated: 0, reordered: 0 };
  knobs: FaultKnobs = { ...calm };
  scheduler: fc.Scheduler | undefined;

  constructor(
    readonly inner: KvStore,
    private readonly random: () => number,
  ) {}

  get backend() {
    return this.inner.backend;
  }
  get bucket() {
    return this.inner.bucket;
  }
  get capabilities(): KvCapabilities {
    return this.inner.capabilities;
  }

  #reachable(): void {
    if (this.knobs.partitioned)
      throw new KvError(KvErrorCode.NotConnected, '[simulated] partitioned from the store', { backend: 'simulation' });
  }

  async #io<T>(call: () => Promise<T>): Promise<T> {
    this.#reachable();
    const result = call();
    return this.scheduler === undefined ? result : this.scheduler.schedule(result);
  }

  async #write<T>(key: string, call: () => Promise<T>): Promise<T> {
    const version = await this.#io(call);
    if (this.random() < this.knobs.ambiguousWrites) {
      this.stats.ambiguous++;
      throw new KvError(KvErrorCode.Indeterminate, '[simulated] the write landed but its answer was lost', { backend: 'simulation', key });
    }
    return version;
  }

  get(key: string): Promise<KvEntry | undefined> {
    return this.#io(() => this.inner.get(key));
  }
  getMany(keys: readonly string[]): Promise<(KvEntry | undefined)[]> {
    // Each key as its own read, so every fault applies to each.
    return Promise.all(keys.map((key) => this.get(key)));
  }
  entry(key: string): Promise<KvRecord | undefined> {
    return this.#io(() => this.inner.entry(key));
  }
  keys(prefix?: string): AsyncIterable<string> {
    this.#reachable();
    return this.inner.keys(prefix);
  }
  scan(prefix?: string): AsyncIterable<KvEntry> {
    this.#reachable();
    return this.inner.scan(prefix);
  }
  put(key: string, value: Uint8Array): Promise<Version> {
    return this.#write(key, () => this.inner.put(key, value));
  }
  create(key: string, value: Uint8Array): Promise<Version> {
    return this.#write(key, () => this.inner.create(key, value));
  }
  update(key: string, value: Uint8Array, expected: Version): Promise<Version> {
    return this.#write(key, () => this.inner.update(key, value, expected));
  }
  delete(key: string): Promise<Version> {
    return this.#write(key, () => this.inner.delete(key));
  }
  deleteWithVersion(key: string, expected: Version): Promise<Version> {
    return this.#write(key, () => this.inner.deleteWithVersion(key, expected));
  }
  /** A commit meets the faults a write meets: unreachable, or landed with its answer lost. */
  commit(ops: readonly KvCommitOp[]): Promise<Version[]> {
    return this.#write(ops[0]?.key ?? '', () => this.inner.commit(ops));
  }
  putWithTtl(key: string, value: Uint8Array, ttlMs: number): Promise<Version> {
    return this.#write(key, () => this.inner.putWithTtl(key, value, ttlMs));
  }
  purge(key: string): Promise<Version> {
    return this.#write(key, () => this.inner.purge(key));
  }
  compareCursors(a: WatchCursor, b: WatchCursor): number {
    return this.inner.compareCursors(a, b);
  }

  watch(options?: WatchOptions): AsyncIterable<WatchEvent> {
    this.#reachable();
    const source = this.inner.watch(options);
    const faulty = this;
    return {
      async *[Symbol.asyncIterator]() {
        let held: WatchEvent | undefined;
        for await (const event of source) {
          faulty.#reachable();
          if (event.type === 'synced') {
            if (held !== undefined) yield held;
            held = undefined;
            yield event;
            continue;
          }
          if (faulty.random() < faulty.knobs.dropWatchEvents) {
            faulty.stats.dropped++;
            continue;
          }
          if (held === undefined && faulty.random() < faulty.knobs.reorderWatchEvents) {
            faulty.stats.reordered++;
            held = event;
            continue;
          }
          yield event;
          if (held !== undefined) {
            yield held;
            held = undefined;
          }
          if (faulty.random() < faulty.knobs.duplicateWatchEvents) {
            faulty.stats.duplicated++;
            yield event;
          }
        }
      },
    };
  }

  close(): Promise<void> {
    return this.inner.close();
  }
  [Symbol.asyncDispose](): Promise<void> {
    return this.inner.close();
  }
}

// The seeded random source (mulberry32) of the conformance suite's workloads: fault decisions replay from the run's seed.
export { seededRandom } from '@weft/kv-testkit';
