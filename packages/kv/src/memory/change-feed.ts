import type { ChangeFeedItem, ChangeRequest } from '../backend/driver.js';
import { keyMatchesAnyPrefix } from '../keys.js';
import { type Change, copy, type MemoryBucket, type StoredRecord } from './bucket.js';
import { versionOf } from './cursors.js';

type Item = ChangeFeedItem<number>;

const pageSize = 16;

/**
 * The change feed of one memory watch: the listing of live values at the
 * head (when not resuming), then every change after it from the bucket's
 * history, waiting on the bucket's notifier when caught up.
 *
 * An iterator written out rather than an async generator: everything it
 * delivers is already in memory, so a step is a synchronous read of the
 * history and one settled promise, where a generator's `yield` costs several
 * turns of the microtask queue per event (it set the pace of watch fan-out).
 */
export class MemoryChangeFeed implements AsyncIterableIterator<Item> {
  readonly #state: MemoryBucket;
  readonly #signal: AbortSignal;
  readonly #resuming: boolean;
  /** Items read from the history and not yet handed out. */
  #queue: Item[] = [];
  #next = 0;
  #position: number;
  /** Until the feed first caught up it reports its bounds at every read and `through` once caught up. */
  #caughtUp = false;
  #done = false;

  constructor(state: MemoryBucket, { from, prefixes, signal }: ChangeRequest<number>) {
    this.#state = state;
    this.#signal = signal;
    this.#resuming = from !== undefined;
    state.activeWatches++;
    if (from !== undefined) {
      this.#position = from;
      return;
    }
    // The listing is taken in one synchronous step at the head, so every later change has a higher
    // sequence and is delivered live: no scan-to-watch race.
    const head = state.seq;
    const listing: Array<[string, StoredRecord]> = [];
    for (const [key, record] of state.records) {
      if (keyMatchesAnyPrefix(key, prefixes) && state.live(key) === record) listing.push([key, record]);
    }
    listing.sort((a, b) => a[1].seq - b[1].seq);
    this.#queue.push({ type: 'bounds', epoch: '', head });
    for (const [key, record] of listing) {
      this.#queue.push({ type: 'change', position: record.seq, key, op: 'put', value: copy(record.value), version: versionOf(record.seq) });
    }
    this.#position = head;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<Item>> {
    for (;;) {
      if (this.#done) return { done: true, value: undefined };
      if (this.#next < this.#queue.length) {
        const value = this.#queue[this.#next++] as Item;
        return { done: false, value };
      }
      this.#queue = [];
      this.#next = 0;
      if (this.#signal.aborted) return this.#finish();
      this.#read();
      if (this.#queue.length > 0) continue;
      const state = this.#state;
      // Read again after waiting: a change made while the consumer held the last item has already notified.
      if (state.seq <= this.#position) await state.changed.wait(this.#signal);
    }
  }

  async return(): Promise<IteratorResult<Item>> {
    return this.#finish();
  }

  #finish(): IteratorResult<Item> {
    if (!this.#done) {
      this.#done = true;
      this.#state.activeWatches--;
    }
    return { done: true, value: undefined };
  }

  /** Queues what the history holds after the position, or `through` (once) when there is nothing. */
  #read(): void {
    const state = this.#state;
    const queue = this.#queue;
    if (state.seq > this.#position) {
      const until = state.seq;
      if (!this.#caughtUp) queue.push({ type: 'bounds', epoch: '', reading: this.#position, head: until, horizon: state.horizon });
      // A few changes per read: items queued long enough to outlive the young generation cost the GC more than
      // the reads they save (pages of 1,024 halved the fan-out), and a resume over a long history copies little at once.
      for (let read = 0; this.#position < until && read < pageSize; read++) {
        // A slow reader can be overtaken by compaction while it is between changes.
        if (this.#position < state.horizon) queue.push({ type: 'bounds', epoch: '', reading: this.#position, horizon: state.horizon });
        const change = state.history[state.firstAfter(this.#position)];
        if (change === undefined || change.seq > until) {
          this.#position = until;
          break;
        }
        this.#position = change.seq;
        if (!change.removed) queue.push(changeOf(change));
      }
    } else if (!this.#caughtUp) {
      if (this.#resuming && this.#position > state.seq) {
        queue.push({ type: 'bounds', epoch: '', reading: this.#position, head: state.seq });
      }
      queue.push({ type: 'through', position: this.#position });
      this.#caughtUp = true;
    }
  }
}

function changeOf(change: Change): Item {
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
