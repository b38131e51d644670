import { fillRandom } from '@weft/common';

/**
 * Cryptographically random bytes drawn from a buffer refilled 4 KiB at a
 * time. One `getRandomValues` call per event id or nonce cost a third of an
 * append; every byte handed out is still used once only.
 */
export class RandomPool {
  readonly #pool: Uint8Array;
  #offset: number;

  constructor(size = 4096) {
    this.#pool = new Uint8Array(size);
    this.#offset = size;
  }

  /** Copies `count` fresh random bytes into `target` at `offset`. */
  fill(target: Uint8Array, count = target.length, offset = 0): void {
    if (this.#offset + count > this.#pool.length) {
      fillRandom(this.#pool);
      this.#offset = 0;
    }
    // A loop, not `set(subarray(...))`: ids and nonces are short, and a view per call was garbage on every append.
    const pool = this.#pool;
    const from = this.#offset;
    for (let index = 0; index < count; index++) target[offset + index] = pool[from + index] as number;
    this.#offset += count;
  }

  /** `count` fresh random bytes in a new array. */
  take(count: number): Uint8Array {
    const bytes = new Uint8Array(count);
    this.fill(bytes);
    return bytes;
  }
}
