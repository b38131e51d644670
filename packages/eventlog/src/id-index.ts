/**
 * Event id -> position, with ids kept as their 16 bytes: one growable byte
 * array holds the id of every position, and an open-addressing table of
 * positions finds them. A `Map` of UUID strings cost an allocation and a
 * string hash per event on the append path and at open, and about a hundred
 * bytes per event; this costs 16 bytes plus the table.
 *
 * The table's hash mixes all 16 bytes with a per-process random seed, so
 * ids chosen by someone else (imported from another device) cannot be made
 * to collide on purpose.
 */
import { randomBytes } from '@weft/common';
import { isUuid, writeUuid } from './ids.js';

const empty = 0;
/** A slot whose position was removed (a rolled-back append); probing goes past it. */
const removed = -1;
const seed = new DataView(randomBytes(4).buffer).getUint32(0, true);

export class IdIndex {
  /** The id of position p at bytes [(p - 1) * 16, p * 16). */
  #ids = new Uint8Array(16 * 1024);
  /** Positions (1-based), `empty` or `removed`. */
  #table = new Int32Array(2048);
  #used = 0;
  readonly #scratch = new Uint8Array(16);

  /** Records that position `position` holds the id whose bytes are `id[offset..offset+16)`. */
  addBytes(position: number, id: Uint8Array, offset = 0): void {
    const at = (position - 1) * 16;
    if (at + 16 > this.#ids.length) {
      const grown = new Uint8Array(Math.max(at + 16, this.#ids.length * 2));
      grown.set(this.#ids);
      this.#ids = grown;
    }
    const ids = this.#ids;
    for (let index = 0; index < 16; index++) ids[at + index] = id[offset + index] as number;
    if ((this.#used + 1) * 2 > this.#table.length) this.#rehash(this.#table.length * 2);
    this.#insert(position);
    this.#used++;
  }

  /** Records that position `position` holds the id `id` (a UUID string). */
  add(position: number, id: string): void {
    writeUuid(id, this.#scratch, 0);
    this.addBytes(position, this.#scratch);
  }

  /** The position of an id, or `undefined`. */
  get(id: string): number | undefined {
    if (!isUuid(id)) return undefined;
    const bytes = this.#scratch;
    writeUuid(id, bytes, 0);
    const mask = this.#table.length - 1;
    for (let slot = hash(bytes, 0) & mask; ; slot = (slot + 1) & mask) {
      const position = this.#table[slot] as number;
      if (position === empty) return undefined;
      if (position !== removed && this.#equals(position, bytes)) return position;
    }
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  /** Forgets the id of a position (an append that was rolled back). */
  remove(position: number): void {
    const mask = this.#table.length - 1;
    for (let slot = hash(this.#ids, (position - 1) * 16) & mask; ; slot = (slot + 1) & mask) {
      const found = this.#table[slot] as number;
      if (found === empty) return;
      if (found === position) {
        this.#table[slot] = removed;
        return;
      }
    }
  }

  #insert(position: number): void {
    const mask = this.#table.length - 1;
    let slot = hash(this.#ids, (position - 1) * 16) & mask;
    while (this.#table[slot] !== empty) slot = (slot + 1) & mask;
    this.#table[slot] = position;
  }

  #rehash(capacity: number): void {
    const old = this.#table;
    this.#table = new Int32Array(capacity);
    this.#used = 0;
    for (const position of old) {
      if (position > 0) {
        this.#insert(position);
        this.#used++;
      }
    }
  }

  #equals(position: number, bytes: Uint8Array): boolean {
    const ids = this.#ids;
    const at = (position - 1) * 16;
    for (let index = 0; index < 16; index++) if (ids[at + index] !== bytes[index]) return false;
    return true;
  }
}

/** A 32-bit mix of 16 bytes (murmur3's finalizer over four little-endian words and the seed). */
function hash(bytes: Uint8Array, at: number): number {
  let h = seed;
  for (let word = 0; word < 4; word++) {
    const offset = at + word * 4;
    let k =
      ((bytes[offset] as number) |
        ((bytes[offset + 1] as number) << 8) |
        ((bytes[offset + 2] as number) << 16) |
        ((bytes[offset + 3] as number) << 24)) >>>
      0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= 16;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
