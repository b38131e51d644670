/**
 * The adversarial suite's malicious store: a handle on a real bucket (the
 * memory backend, or a spawned Redis or NATS server) through which the store
 * lies to one device. It can hide keys (drop a changeset, withhold an entry),
 * serve other bytes than it holds (flip bytes, replay or move a changeset,
 * roll a head back, plant a key wrap), leave keys out of listings, and be
 * repaired. Writes go through unchanged: the store keeps what it is given.
 * It is a stand-in for a hostile server, for tests.
 */
import type { KvCapabilities, KvCommitOp, KvEntry, KvRecord, KvStore, Version, WatchCursor, WatchEvent, WatchOptions } from '@weft/kv';

export class MaliciousStore implements KvStore {
  /** Keys this handle says are absent: reads, listings and watches. */
  readonly hidden = new Set<string>();
  /** Keys this handle answers with other bytes than the store holds. */
  readonly lies = new Map<string, Uint8Array>();
  /** Keys left out of listings only (a partial listing); reads still see them. */
  readonly unlisted = new Set<string>();

  constructor(readonly inner: KvStore) {}

  get backend() {
    return this.inner.backend;
  }
  get bucket() {
    return this.inner.bucket;
  }
  get capabilities(): KvCapabilities {
    return this.inner.capabilities;
  }

  /** Stops every lie. */
  repair(): void {
    this.hidden.clear();
    this.lies.clear();
    this.unlisted.clear();
  }

  /** Serves the value a key holds now, forever: a rollback once the key moves on. */
  async freeze(key: string): Promise<void> {
    const current = await this.inner.get(key);
    if (current !== undefined) this.lies.set(key, current.value);
  }

  /** Serves `key` with one bit flipped at `offset` (from the end when negative). */
  async flip(key: string, offset: number): Promise<void> {
    const current = await this.inner.get(key);
    if (current === undefined) throw new Error(`flip: ${key} is not in the store`);
    const value = new Uint8Array(current.value);
    const at = offset < 0 ? value.length + offset : offset;
    value[at] = (value[at] as number) ^ 0x01;
    this.lies.set(key, value);
  }

  #rewrite(entry: KvEntry): KvEntry | undefined {
    if (this.hidden.has(entry.key)) return undefined;
    const lie = this.lies.get(entry.key);
    return lie === undefined ? entry : { ...entry, value: lie };
  }

  async get(key: string): Promise<KvEntry | undefined> {
    if (this.hidden.has(key)) return undefined;
    const entry = await this.inner.get(key);
    const lie = this.lies.get(key);
    if (lie !== undefined) return { key, value: lie, version: entry?.version ?? ('1' as Version) };
    return entry;
  }
  async getMany(keys: readonly string[]): Promise<(KvEntry | undefined)[]> {
    // Through the inner store's batch read, with every lie applied to each key.
    const entries = await this.inner.getMany(keys);
    return entries.map((entry, index) => {
      const key = keys[index] as string;
      if (this.hidden.has(key)) return undefined;
      const lie = this.lies.get(key);
      return lie !== undefined ? { key, value: lie, version: entry?.version ?? ('1' as Version) } : entry;
    });
  }
  async entry(key: string): Promise<KvRecord | undefined> {
    if (this.hidden.has(key)) return undefined;
    return this.inner.entry(key);
  }
  async *keys(prefix?: string): AsyncIterable<string> {
    for await (const entry of this.scan(prefix)) yield entry.key;
  }
  async *scan(prefix?: string): AsyncIterable<KvEntry> {
    for await (const entry of this.inner.scan(prefix)) {
      if (this.unlisted.has(entry.key)) continue;
      const served = this.#rewrite(entry);
      if (served !== undefined) yield served;
    }
  }
  put(key: string, value: Uint8Array): Promise<Version> {
    return this.inner.put(key, value);
  }
  create(key: string, value: Uint8Array): Promise<Version> {
    return this.inner.create(key, value);
  }
  update(key: string, value: Uint8Array, expected: Version): Promise<Version> {
    return this.inner.update(key, value, expected);
  }
  delete(key: string): Promise<Version> {
    return this.inner.delete(key);
  }
  deleteWithVersion(key: string, expected: Version): Promise<Version> {
    return this.inner.deleteWithVersion(key, expected);
  }
  /** Forwarded untouched, like every write: the attacks work on what the store holds and answers. */
  commit(ops: readonly KvCommitOp[]): Promise<Version[]> {
    return this.inner.commit(ops);
  }
  putWithTtl(key: string, value: Uint8Array, ttlMs: number): Promise<Version> {
    return this.inner.putWithTtl(key, value, ttlMs);
  }
  purge(key: string): Promise<Version> {
    return this.inner.purge(key);
  }
  compareCursors(a: WatchCursor, b: WatchCursor): number {
    return this.inner.compareCursors(a, b);
  }
  watch(options?: WatchOptions): AsyncIterable<WatchEvent> {
    const source = this.inner.watch(options);
    const store = this;
    return {
      async *[Symbol.asyncIterator]() {
        for await (const event of source) {
          if (event.type === 'put') {
            if (store.hidden.has(event.key) || store.unlisted.has(event.key)) continue;
            const lie = store.lies.get(event.key);
            yield lie === undefined ? event : { ...event, value: lie };
          } else yield event;
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
