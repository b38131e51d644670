/** The in-memory structures of an open log: segments, entity state, pending batches and the location index. */
import type { LogFile } from './fs/types.js';

export interface Segment {
  readonly name: string;
  readonly firstPosition: number;
  readonly file: LogFile;
  /** Bytes written to the OS. */
  size: number;
  /** Bytes known durable. */
  durableSize: number;
}

export interface EntityState {
  sequence: number;
  lastHash: Uint8Array;
  readonly positions: number[];
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

const unsettled = 0;
const fulfilled = 1;
const rejected = 2;

/**
 * A deferred whose promise is made only when someone asks for it: most
 * appends never await their write or durability, and two promises per
 * append were a large share of its cost. A rejection nobody awaits does not
 * crash the process; whoever asks for the promise sees it.
 */
export class LazyDeferred implements Deferred<void> {
  #state = unsettled;
  #error: unknown;
  #promise: Promise<void> | undefined;
  #resolve: (() => void) | undefined;
  #reject: ((error: unknown) => void) | undefined;

  get promise(): Promise<void> {
    if (this.#promise === undefined) {
      if (this.#state === fulfilled) this.#promise = Promise.resolve();
      else if (this.#state === rejected) this.#promise = Promise.reject(this.#error);
      else {
        this.#promise = new Promise<void>((ok, fail) => {
          this.#resolve = ok;
          this.#reject = fail;
        });
      }
      this.#promise.catch(() => undefined);
    }
    return this.#promise;
  }

  resolve(): void {
    if (this.#state !== unsettled) return;
    this.#state = fulfilled;
    this.#resolve?.();
  }

  reject(error: unknown): void {
    if (this.#state !== unsettled) return;
    this.#state = rejected;
    this.#error = error;
    this.#reject?.(error);
  }
}

/**
 * Frames are encoded into large shared buffers instead of one allocation
 * each, and frames that follow each other in a buffer are written with one
 * call, without copying them together first. A buffer is never reused: it
 * is dropped when the last view of it is.
 */
export class FrameArena {
  #buffer = new Uint8Array(0);
  #used = 0;
  readonly #chunkBytes: number;

  constructor(chunkBytes = 1024 * 1024) {
    this.#chunkBytes = chunkBytes;
  }

  /** A fresh, zero-filled view of `size` bytes. */
  take(size: number): Uint8Array {
    if (this.#buffer.length - this.#used < size) {
      this.#buffer = new Uint8Array(Math.max(this.#chunkBytes, size));
      this.#used = 0;
    }
    const view = this.#buffer.subarray(this.#used, this.#used + size);
    this.#used += size;
    return view;
  }
}

export interface PendingBatch {
  readonly frames: Uint8Array[];
  readonly firstPosition: number;
  readonly lastPosition: number;
  readonly bytes: number;
  /** Undoes everything accepting the batch changed (the writer calls it when the batch cannot be written). */
  readonly undo: () => void;
  readonly written: Deferred<void>;
  /** Set by the writer when the batch is queued: the batch's place in the durability order. */
  serial: number;
}

/** Growable typed arrays: where each position lives, without an object per event. */
export class LocationIndex {
  segment = new Uint32Array(1024);
  offset = new Float64Array(1024);
  size = new Uint32Array(1024);

  set(position: number, segment: number, offset: number, size: number): void {
    const index = position - 1;
    if (index >= this.segment.length) {
      const capacity = Math.max(index + 1, this.segment.length * 2);
      this.segment = grow(this.segment, capacity, Uint32Array);
      this.offset = grow(this.offset, capacity, Float64Array);
      this.size = grow(this.size, capacity, Uint32Array);
    }
    this.segment[index] = segment;
    this.offset[index] = offset;
    this.size[index] = size;
  }
}

function grow<T extends Uint32Array | Float64Array>(array: T, capacity: number, Kind: new (length: number) => T): T {
  const grown = new Kind(capacity);
  grown.set(array);
  return grown;
}

/**
 * The bytes of consecutive batches as few buffers as possible: frames that
 * follow each other in one arena buffer are one view of it, written with one
 * call; a frame elsewhere starts the next view. Nothing is copied.
 */
export function contiguousRuns(batches: readonly PendingBatch[]): Uint8Array[] {
  const runs: Uint8Array[] = [];
  let buffer: ArrayBufferLike | undefined;
  let start = 0;
  let end = 0;
  for (const batch of batches) {
    for (const frame of batch.frames) {
      if (buffer === frame.buffer && end === frame.byteOffset) {
        end += frame.length;
        continue;
      }
      if (buffer !== undefined) runs.push(new Uint8Array(buffer, start, end - start));
      buffer = frame.buffer;
      start = frame.byteOffset;
      end = start + frame.length;
    }
  }
  if (buffer !== undefined) runs.push(new Uint8Array(buffer, start, end - start));
  return runs;
}

/**
 * The items of an async stream of arrays, one at a time, without an async
 * generator step per item: an item of the array in hand is handed out as a
 * resolved promise (a third of a generator step), and the stream is asked
 * for its next array only once this one is used up. Calls to `next` are
 * answered in order, as a generator's are; after an error or `return()` the
 * iterator is done, and `return()` also ends the stream.
 */
export class ItemsOf<T> implements AsyncIterableIterator<T> {
  readonly #batches: AsyncGenerator<readonly T[]>;
  #batch: readonly T[] = [];
  #at = 0;
  #done = false;
  /** The read of the next array, while one is in flight. */
  #reading: Promise<IteratorResult<T>> | undefined;

  constructor(batches: AsyncGenerator<readonly T[]>) {
    this.#batches = batches;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#reading !== undefined) {
      const after = () => this.next();
      return this.#reading.then(after, after);
    }
    if (this.#at < this.#batch.length) return Promise.resolve({ value: this.#batch[this.#at++] as T, done: false });
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    this.#reading = this.#read();
    return this.#reading;
  }

  async #read(): Promise<IteratorResult<T>> {
    try {
      for (;;) {
        const result = await this.#batches.next();
        if (result.done === true || this.#done) {
          this.#done = true;
          return { value: undefined, done: true };
        }
        if (result.value.length > 0) {
          this.#batch = result.value;
          this.#at = 1;
          return { value: result.value[0] as T, done: false };
        }
      }
    } catch (error) {
      this.#done = true;
      throw error;
    } finally {
      this.#reading = undefined;
    }
  }

  async return(): Promise<IteratorResult<T>> {
    this.#done = true;
    this.#batch = [];
    await this.#batches.return(undefined);
    return { value: undefined, done: true };
  }
}
