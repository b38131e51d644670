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

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { promise, resolve, reject };
}

export interface PendingBatch {
  readonly frames: Uint8Array[];
  readonly firstPosition: number;
  readonly lastPosition: number;
  readonly bytes: number;
  readonly undo: Array<() => void>;
  readonly written: Deferred<void>;
  readonly durable: Deferred<void>;
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

export function concatFrames(batches: readonly PendingBatch[], total: number): Uint8Array {
  const buffer = new Uint8Array(total);
  let at = 0;
  for (const batch of batches) {
    for (const frame of batch.frames) {
      buffer.set(frame, at);
      at += frame.length;
    }
  }
  return buffer;
}
