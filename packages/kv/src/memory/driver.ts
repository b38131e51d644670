import type { ChangeFeedItem, ChangeRequest, KvDriver, KvMutation } from '../backend/driver.js';
import { KvErrorCode, kvError } from '../errors.js';
import { keyMatchesAnyPrefix, keyMatchesPrefix } from '../keys.js';
import type { KvEntry, KvRecord, Version } from '../types.js';
import { backend, type Change, type MemoryBucket, type StoredRecord } from './bucket.js';
import { memoryCursors, parseSequence, versionOf } from './cursors.js';

/** The memory backend's driver: every primitive is a synchronous step on the shared bucket state. */
export class MemoryDriver implements KvDriver<number> {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities;
  readonly cursors = memoryCursors;
  readonly #state: MemoryBucket;

  constructor(bucket: string, state: MemoryBucket) {
    this.bucket = bucket;
    this.#state = state;
    this.capabilities = state.capabilities;
  }

  now(): number {
    return this.#state.clock.now();
  }

  /** The latest sequence of the bucket (its head). */
  get head(): number {
    return this.#state.seq;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const record = this.#state.live(key);
    return record === undefined ? undefined : entryOf(key, record);
  }

  async entry(key: string): Promise<KvRecord | undefined> {
    const record = this.#state.current(key);
    if (record === undefined) return undefined;
    if (record.op === 'put') return { key, op: 'put', value: copy(record.value), version: versionOf(record.seq) };
    return { key, op: record.op, version: versionOf(record.seq) };
  }

  async *list(prefix: string | undefined): AsyncGenerator<KvEntry> {
    const state = this.#state;
    // A snapshot of the key names; each value is read when it is reached, as a paged backend would.
    const names = [...state.records.keys()].filter((key) => keyMatchesPrefix(key, prefix)).sort();
    for (const key of names) {
      const record = state.live(key);
      if (record !== undefined) yield entryOf(key, record);
    }
  }

  async mutate(mutation: KvMutation): Promise<Version> {
    const state = this.#state;
    const { key } = mutation;
    switch (mutation.kind) {
      case 'put':
        return versionOf(state.write(key, 'put', copy(mutation.value)));
      case 'putWithTtl':
        return versionOf(state.write(key, 'put', copy(mutation.value), mutation.ttlMs));
      case 'create':
        if (state.live(key) !== undefined) throw kvError(KvErrorCode.AlreadyExists, backend, 'a live value already exists', { key });
        return versionOf(state.write(key, 'put', copy(mutation.value)));
      case 'update':
        this.#assertExpected(key, mutation.expected);
        return versionOf(state.write(key, 'put', copy(mutation.value)));
      case 'delete':
        return versionOf(state.write(key, 'delete', undefined));
      case 'deleteWithVersion':
        this.#assertExpected(key, mutation.expected);
        return versionOf(state.write(key, 'delete', undefined));
      case 'purge':
        return versionOf(state.write(key, 'purge', undefined));
    }
  }

  async *changes({ from, prefixes, signal }: ChangeRequest<number>): AsyncGenerator<ChangeFeedItem<number>> {
    const state = this.#state;
    state.activeWatches++;
    try {
      let position: number;
      if (from === undefined) {
        // The listing is taken in one synchronous step at the head, so every later change has a higher
        // sequence and is delivered live: no scan-to-watch race.
        const head = state.seq;
        const listing: Array<[string, StoredRecord]> = [];
        for (const [key, record] of state.records) {
          if (keyMatchesAnyPrefix(key, prefixes) && state.live(key) === record) listing.push([key, record]);
        }
        listing.sort((a, b) => a[1].seq - b[1].seq);
        yield { type: 'bounds', epoch: '', head };
        for (const [key, record] of listing) {
          yield { type: 'change', position: record.seq, key, op: 'put', value: copy(record.value), version: versionOf(record.seq) };
        }
        position = head;
      } else {
        position = from;
      }
      // Until the feed first caught up it reports its bounds at every wake and `through` once caught up; after
      // that only a slow reader overtaken by compaction needs bounds, and `through` means nothing to the loop.
      let caughtUp = false;
      for (;;) {
        if (state.seq > position) {
          const until = state.seq;
          if (!caughtUp) yield { type: 'bounds', epoch: '', reading: position, head: until, horizon: state.horizon };
          while (position < until) {
            // A slow reader can be overtaken by compaction while it is between changes.
            if (position < state.horizon) yield { type: 'bounds', epoch: '', reading: position, horizon: state.horizon };
            const change = state.history[state.firstAfter(position)];
            if (change === undefined || change.seq > until) {
              position = until;
              break;
            }
            position = change.seq;
            if (!change.removed) yield changeOf(change);
          }
        } else {
          if (!caughtUp) {
            if (from !== undefined && position > state.seq) {
              yield { type: 'bounds', epoch: '', reading: position, head: state.seq };
            }
            yield { type: 'through', position };
            caughtUp = true;
          }
          // Checked again after the yield: a change made while the consumer held the event has already notified.
          if (state.seq <= position) await state.changed.wait(signal);
        }
        if (signal.aborted) return;
      }
    } finally {
      state.activeWatches--;
    }
  }

  async close(): Promise<void> {}

  /** CAS compares against the live version: absent, deleted, purged and expired all count as different. */
  #assertExpected(key: string, expected: Version): void {
    const expectedSeq = parseSequence(expected, 'version', key);
    const record = this.#state.live(key);
    if (record === undefined || record.seq !== expectedSeq) {
      const actual = record === undefined ? 'no live value' : `version ${record.seq}`;
      throw kvError(KvErrorCode.RevisionMismatch, backend, `expected version ${expected}, found ${actual}`, { key });
    }
  }
}

function changeOf(change: Change): ChangeFeedItem<number> {
  // Literals of one shape each, not spreads of a shared base: this runs once per change per watch (5x faster).
  const { seq, key } = change;
  switch (change.type) {
    case 'put':
      return { type: 'change', position: seq, key, op: 'put', value: copy(change.value), version: versionOf(seq) };
    case 'expire':
      return { type: 'change', position: seq, key, op: 'expire' };
    default:
      return { type: 'change', position: seq, key, op: change.type, version: versionOf(seq) };
  }
}

function entryOf(key: string, record: StoredRecord): KvEntry {
  return { key, value: copy(record.value), version: versionOf(record.seq) };
}

function copy(value: Uint8Array | undefined): Uint8Array {
  return value === undefined ? new Uint8Array(0) : new Uint8Array(value);
}
