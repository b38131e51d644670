import type { WatchCursor } from '../types.js';
import { MemoryBucket, type MemoryBucketOptions } from './bucket.js';
import { parseSequence } from './cursors.js';

/**
 * An in-process "server" holding named memory buckets. Open several handles on
 * one server to simulate several clients of one bucket.
 */
export class MemoryKvServer {
  readonly #buckets = new Map<string, MemoryBucket>();
  /** The last sequence of each deleted bucket, so that a bucket made again under its name never reuses one. */
  readonly #retired = new Map<string, number>();

  /** @internal */
  bucket(name: string, options: MemoryBucketOptions): MemoryBucket {
    let bucket = this.#buckets.get(name);
    if (bucket === undefined) {
      bucket = new MemoryBucket(options);
      const retired = this.#retired.get(name);
      if (retired !== undefined) {
        // A new incarnation: its sequences continue past the old one's, so old versions never match, and
        // its horizon sits above every old cursor, so resuming from one fails with CursorExpired.
        bucket.seq = retired + 1;
        bucket.horizon = retired + 1;
      }
      this.#buckets.set(name, bucket);
    }
    return bucket;
  }

  /** Names of the buckets that exist on this server. */
  bucketNames(): string[] {
    return [...this.#buckets.keys()];
  }

  /** Watches currently running on `bucket`, across all handles (0 when the bucket does not exist). */
  activeWatches(bucket: string): number {
    return this.#buckets.get(bucket)?.activeWatches ?? 0;
  }

  /**
   * Forgets the change history of `bucket` up to and including `through`
   * (default: all of it), as a server compacting its log would. Watches
   * resumed from an earlier cursor then fail with `CursorExpired`.
   */
  forgetHistory(bucket: string, through?: WatchCursor): void {
    const state = this.#buckets.get(bucket);
    if (state === undefined) return;
    state.forgetHistory(through === undefined ? state.seq : parseSequence(through, 'cursor'));
  }

  /**
   * Deletes a bucket and all its data; open handles on it keep the old state.
   * A bucket opened again under the name is a new incarnation: versions and
   * cursors of the old one never match it (resuming fails with `CursorExpired`).
   */
  deleteBucket(bucket: string): void {
    const state = this.#buckets.get(bucket);
    if (state !== undefined) this.#retired.set(bucket, state.seq);
    this.#buckets.delete(bucket);
  }
}

/** Creates an empty in-memory server. */
export function createMemoryKvServer(): MemoryKvServer {
  return new MemoryKvServer();
}
