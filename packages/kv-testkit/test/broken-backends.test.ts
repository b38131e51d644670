/**
 * The conformance suite must fail on a wrong backend. Each variant below is
 * the memory backend with one deliberate defect; running every check against
 * it must fail at least the checks named for that defect.
 */
import {
  createMemoryKvServer,
  type KvCapabilities,
  type KvCommitOp,
  KvError,
  KvErrorCode,
  type KvStore,
  ManualClock,
  type MemoryKvStore,
  openMemoryKv,
  type Version,
  type WatchCursor,
  type WatchEvent,
  type WatchOptions,
} from '@weft/kv';
import { drain, type KvConformanceHarness, kvConformanceChecks, runConformanceCheck } from '@weft/kv-testkit';
import { describe, expect, it } from 'vitest';

/** Forwards every call to a memory store; variants override what they break. */
class ForwardingStore implements KvStore {
  constructor(readonly inner: MemoryKvStore) {}
  get backend() {
    return this.inner.backend;
  }
  get bucket() {
    return this.inner.bucket;
  }
  get capabilities(): KvCapabilities {
    return this.inner.capabilities;
  }
  get(key: string) {
    return this.inner.get(key);
  }
  getMany(keys: readonly string[]) {
    return this.inner.getMany(keys);
  }
  entry(key: string) {
    return this.inner.entry(key);
  }
  keys(prefix?: string) {
    return this.inner.keys(prefix);
  }
  scan(prefix?: string) {
    return this.inner.scan(prefix);
  }
  put(key: string, value: Uint8Array) {
    return this.inner.put(key, value);
  }
  create(key: string, value: Uint8Array) {
    return this.inner.create(key, value);
  }
  update(key: string, value: Uint8Array, expected: Version) {
    return this.inner.update(key, value, expected);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
  commit(ops: readonly KvCommitOp[]) {
    return this.inner.commit(ops);
  }
  deleteWithVersion(key: string, expected: Version) {
    return this.inner.deleteWithVersion(key, expected);
  }
  putWithTtl(key: string, value: Uint8Array, ttlMs: number) {
    return this.inner.putWithTtl(key, value, ttlMs);
  }
  purge(key: string) {
    return this.inner.purge(key);
  }
  watch(options?: WatchOptions) {
    return this.inner.watch(options);
  }
  compareCursors(a: WatchCursor, b: WatchCursor) {
    return this.inner.compareCursors(a, b);
  }
  close() {
    return this.inner.close();
  }
  [Symbol.asyncDispose]() {
    return this.inner.close();
  }
}

interface Variant {
  readonly defect: string;
  /** Checks (by name fragment) that must fail on this defect. */
  readonly caughtBy: readonly string[];
  readonly wrap: (inner: MemoryKvStore, clock: ManualClock) => KvStore;
}

function iterable(generate: () => AsyncGenerator<WatchEvent>): AsyncIterable<WatchEvent> {
  return { [Symbol.asyncIterator]: generate };
}

const variants: Variant[] = [
  {
    defect: 'update ignores the expected version',
    caughtBy: ['update succeeds only on the current version', 'concurrent updates from one version', 'reference model'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override async update(key: string, value: Uint8Array) {
          return this.inner.put(key, value);
        }
      })(inner),
  },
  {
    defect: 'create overwrites a live value',
    caughtBy: ['create fails with AlreadyExists', 'concurrent creates of one key', 'reference model'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override create(key: string, value: Uint8Array) {
          return this.inner.put(key, value);
        }
      })(inner),
  },
  {
    defect: 'create reads, then writes in a second step (check-then-act, not one atomic step)',
    caughtBy: ['are linearizable'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override async create(key: string, value: Uint8Array) {
          if ((await this.inner.get(key)) !== undefined)
            throw new KvError(KvErrorCode.AlreadyExists, 'a live value exists', { backend: 'memory', key });
          await new Promise((resolve) => setImmediate(resolve));
          return this.inner.put(key, value);
        }
      })(inner),
  },
  {
    defect: 'update compares the version, then writes in a second step',
    caughtBy: ['are linearizable'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override async update(key: string, value: Uint8Array, expected: Version) {
          if ((await this.inner.get(key))?.version !== expected) {
            throw new KvError(KvErrorCode.RevisionMismatch, 'not the current version', { backend: 'memory', key });
          }
          await new Promise((resolve) => setImmediate(resolve));
          return this.inner.put(key, value);
        }
      })(inner),
  },
  {
    defect: 'create over a tombstone answers AlreadyExists when a concurrent delete moved the tombstone (the NATS create race)',
    caughtBy: ['are linearizable'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override async create(key: string, value: Uint8Array) {
          const before = await this.inner.entry(key);
          if (before?.op === 'put') throw new KvError(KvErrorCode.AlreadyExists, 'a live value exists', { backend: 'memory', key });
          await new Promise((resolve) => setImmediate(resolve));
          // Compare-and-swap against the tombstone read above; any mismatch is taken for a live value.
          if ((await this.inner.entry(key))?.version !== before?.version) {
            throw new KvError(KvErrorCode.AlreadyExists, 'a live value exists', { backend: 'memory', key });
          }
          return this.inner.put(key, value);
        }
      })(inner),
  },
  {
    defect: 'deleteWithVersion ignores the version',
    caughtBy: ['deleteWithVersion deletes only on a matching version'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override deleteWithVersion(key: string) {
          return this.inner.delete(key);
        }
      })(inner),
  },
  {
    defect: 'get returns tombstones as empty values',
    caughtBy: ['get returns undefined for absent, deleted and purged keys', 'reference model'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override async get(key: string) {
          const record = await this.inner.entry(key);
          if (record === undefined) return undefined;
          return { key, value: record.op === 'put' ? record.value : new Uint8Array(0), version: record.version };
        }
      })(inner),
  },
  {
    defect: 'prefixes match as strings, not whole tokens',
    caughtBy: ['a prefix matches whole tokens'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override keys(prefix?: string) {
          const all = this.inner.keys();
          return {
            async *[Symbol.asyncIterator]() {
              for await (const key of all) if (prefix === undefined || key.startsWith(prefix)) yield key;
            },
          };
        }
      })(inner),
  },
  {
    defect: 'scan pages by offset into a fresh sorted listing, so a delete during the listing shifts a live key out of it',
    caughtBy: ['list every key that stays live through the listing once'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override scan(prefix?: string) {
          const store = this.inner;
          return {
            async *[Symbol.asyncIterator]() {
              for (let offset = 0; ; offset += 10) {
                const page = (await drain(store.scan(prefix))).sort((a, b) => (a.key < b.key ? -1 : 1)).slice(offset, offset + 10);
                if (page.length === 0) return;
                yield* page;
              }
            },
          };
        }
      })(inner),
  },
  {
    defect: 'an oversize value is written before it is refused',
    caughtBy: ['a value over maxValueBytes throws ValueTooLarge and writes nothing'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override async put(key: string, value: Uint8Array) {
          if (value.byteLength > this.capabilities.maxValueBytes) {
            await this.inner.put(key, value.subarray(0, this.capabilities.maxValueBytes));
          }
          return this.inner.put(key, value);
        }
      })(inner),
  },
  {
    defect: 'a plain put keeps the earlier TTL',
    caughtBy: ['a plain put clears the TTL'],
    wrap: (inner, clock) =>
      new (class extends ForwardingStore {
        readonly expiries = new Map<string, number>();
        override put(key: string, value: Uint8Array) {
          const expiresAt = this.expiries.get(key);
          if (expiresAt !== undefined && expiresAt > clock.now()) return this.inner.putWithTtl(key, value, expiresAt - clock.now());
          return this.inner.put(key, value);
        }
        override putWithTtl(key: string, value: Uint8Array, ttlMs: number) {
          this.expiries.set(key, clock.now() + ttlMs);
          return this.inner.putWithTtl(key, value, ttlMs);
        }
      })(inner),
  },
  {
    defect: 'state-sync lists first and subscribes afterwards (the scan-to-watch race)',
    caughtBy: ['state-sync stays complete while other clients write during the listing'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override watch(options: WatchOptions = {}) {
          if (options.from !== undefined) return this.inner.watch(options);
          const store = this.inner;
          return iterable(async function* () {
            let subscribedAt: WatchCursor | undefined;
            for await (const event of store.watch(options)) {
              if (event.type === 'synced') {
                // The live subscription starts only now, after the listing was consumed.
                subscribedAt = store.headCursor();
                yield { type: 'synced', cursor: subscribedAt };
                continue;
              }
              if (subscribedAt !== undefined && store.compareCursors(event.cursor, subscribedAt) <= 0) continue;
              yield event;
            }
          });
        }
      })(inner),
  },
  {
    defect: 'a resumed watch skips the first change after the cursor',
    caughtBy: ['a watch resumed from a cursor delivers every later change'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override watch(options: WatchOptions = {}) {
          if (options.from === undefined) return this.inner.watch(options);
          const events = this.inner.watch(options);
          return iterable(async function* () {
            let skipped = false;
            for await (const event of events) {
              if (!skipped && event.type !== 'synced') {
                skipped = true;
                continue;
              }
              yield event;
            }
          });
        }
      })(inner),
  },
  {
    defect: 'an expired cursor silently resumes from the head',
    caughtBy: ['a cursor whose history is gone fails with CursorExpired'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override watch(options: WatchOptions = {}) {
          if (options.from === undefined) return this.inner.watch(options);
          const store = this.inner;
          return iterable(async function* () {
            try {
              yield* store.watch(options);
            } catch (error) {
              if (!KvError.is(error, KvErrorCode.CursorExpired)) throw error;
              yield* store.watch({ ...options, from: store.headCursor() });
            }
          });
        }
      })(inner),
  },
  {
    defect: 'a multi-prefix watch is one stream per prefix, merged in turn',
    caughtBy: ['several prefixes make one stream in one cursor order'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override watch(options: WatchOptions = {}) {
          const prefixes = options.prefixes;
          if (prefixes === undefined || prefixes.length < 2) return this.inner.watch(options);
          const streams = prefixes.map((prefix) => this.inner.watch({ ...options, prefixes: [prefix] })[Symbol.asyncIterator]());
          return iterable(async function* () {
            let synced = 0;
            // Each stream is drained as far as it goes before the next one is read.
            for (;;) {
              for (const stream of streams) {
                const result = await stream.next();
                if (result.done) return;
                if (result.value.type === 'synced') {
                  if (++synced === streams.length) yield result.value;
                  continue;
                }
                yield result.value;
              }
            }
          });
        }
      })(inner),
  },
  {
    defect: 'breaking out of a watch leaves it running on the server',
    caughtBy: ['breaking out of a watch releases its server-side resources'],
    wrap: (inner) =>
      new (class extends ForwardingStore {
        override watch(options: WatchOptions = {}) {
          const events = this.inner.watch(options)[Symbol.asyncIterator]();
          return {
            [Symbol.asyncIterator]: () => ({ next: () => events.next(), return: async () => ({ done: true as const, value: undefined }) }),
          };
        }
      })(inner),
  },
];

function harnessFor(variant: Variant | undefined): KvConformanceHarness {
  const server = createMemoryKvServer();
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  return {
    open: async (bucket) => {
      const store = await openMemoryKv({ server, bucket, clock });
      return variant === undefined ? new ForwardingStore(store) : variant.wrap(store, clock);
    },
    openUnswept: async (bucket) => {
      const store = await openMemoryKv({ server, bucket, clock });
      return variant === undefined ? new ForwardingStore(store) : variant.wrap(store, clock);
    },
    dropBucket: async (bucket) => server.deleteBucket(bucket),
    recreateBucket: async (bucket) => server.deleteBucket(bucket),
    forgetHistory: async (bucket) => server.forgetHistory(bucket),
    watchResources: async (bucket) => server.activeWatches(bucket),
    clock,
    // Memory delivers at once; a defect that withholds an event shows within a second.
    watchDeadlineMs: 1000,
  };
}

async function failingChecks(harness: KvConformanceHarness): Promise<string[]> {
  const failures: string[] = [];
  for (const check of kvConformanceChecks) {
    // The memory backend keeps its TTLs itself, to the millisecond: no server holds a rounded one.
    if (check.requires?.includes('ttlHeld') === true) continue;
    // Nor does it forget what it acknowledged: there is no older copy of it to put back.
    if (check.requires?.includes('rewind') === true) continue;
    try {
      const outcome = await runConformanceCheck(check, harness, { propertyRuns: 50, seed: 42, log: () => undefined });
      expect(outcome.status, check.name).toBe('passed');
    } catch {
      failures.push(check.name);
    }
  }
  return failures;
}

describe('the conformance suite catches broken backends', () => {
  it('passes an unbroken forwarding wrapper (the control)', async () => {
    expect(await failingChecks(harnessFor(undefined))).toEqual([]);
  });

  for (const variant of variants) {
    it(`catches: ${variant.defect}`, async () => {
      const failures = await failingChecks(harnessFor(variant));
      for (const expected of variant.caughtBy) {
        expect(
          failures.some((name) => name.includes(expected)),
          `"${expected}" should fail; failing: ${failures.join(' | ') || 'none'}`,
        ).toBe(true);
      }
    });
  }
});
