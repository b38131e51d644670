import { RandomPool } from './random.js';

/** A 16-byte event id (UUIDv7) as lowercase hex with dashes. */
export type EventId = string & { readonly __eventId: true };

/** The two ASCII hex digits of each byte value. */
const hexDigits = new Uint8Array(512);
for (let value = 0; value < 256; value++) {
  const text = value.toString(16).padStart(2, '0');
  hexDigits[2 * value] = text.charCodeAt(0);
  hexDigits[2 * value + 1] = text.charCodeAt(1);
}
const uuidText = new Uint8Array(36);
const asciiDecoder = new TextDecoder();

/** Formats 16 bytes as a UUID string (ASCII digits written into one buffer, decoded once: no per-byte strings). */
export function formatUuid(bytes: Uint8Array, offset = 0): EventId {
  let at = 0;
  for (let index = 0; index < 16; index++) {
    if (index === 4 || index === 6 || index === 8 || index === 10) uuidText[at++] = 0x2d;
    const digits = (bytes[offset + index] as number) * 2;
    uuidText[at++] = hexDigits[digits] as number;
    uuidText[at++] = hexDigits[digits + 1] as number;
  }
  return asciiDecoder.decode(uuidText) as EventId;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True when `text` is a lowercase UUID string. */
export function isUuid(text: unknown): text is EventId {
  return typeof text === 'string' && uuidPattern.test(text);
}

/** Writes the 16 bytes of a UUID string into `target`. */
export function writeUuid(id: string, target: Uint8Array, offset: number): void {
  let at = 0;
  for (let index = 0; index < 16; index++) {
    if (id.charCodeAt(at) === 0x2d) at++;
    target[offset + index] = (nibble(id.charCodeAt(at)) << 4) | nibble(id.charCodeAt(at + 1));
    at += 2;
  }
}

/** The value of one lowercase hex digit (ids are validated as lowercase UUIDs before they get here). */
function nibble(code: number): number {
  return code <= 0x39 ? code - 0x30 : code - 0x57;
}

/**
 * Generates UUIDv7 ids: 48-bit millisecond time, then random bits, with a
 * counter in the random part so ids from one generator strictly increase
 * even within one millisecond.
 */
export class UuidV7Generator {
  /**
   * When set, the last 6 bytes of every id (the tail of `rand_b`): the ids
   * then name who made them (a sync layer sets its device's tag). Uniqueness
   * within one generator rests on the timestamp and the 12-bit counter.
   */
  tag: Uint8Array | undefined;
  #lastMs = -1;
  #counter = 0;
  readonly #random = new Uint8Array(16);
  readonly #pool = new RandomPool();

  /** The 16 bytes of the id {@link next} returned last (overwritten by the next call). */
  get lastBytes(): Uint8Array {
    return this.#random;
  }

  next(nowMs = Date.now()): EventId {
    const bytes = this.#random;
    this.#pool.fill(bytes);
    if (nowMs <= this.#lastMs) {
      nowMs = this.#lastMs;
      this.#counter++;
      if (this.#counter > 0xfff) {
        nowMs = ++this.#lastMs;
        this.#counter = 0;
      }
    } else {
      this.#lastMs = nowMs;
      this.#counter = (bytes[7] as number) & 0x7f;
    }
    bytes[0] = Math.floor(nowMs / 2 ** 40) & 0xff;
    bytes[1] = Math.floor(nowMs / 2 ** 32) & 0xff;
    bytes[2] = (nowMs >>> 24) & 0xff;
    bytes[3] = (nowMs >>> 16) & 0xff;
    bytes[4] = (nowMs >>> 8) & 0xff;
    bytes[5] = nowMs & 0xff;
    bytes[6] = 0x70 | ((this.#counter >>> 8) & 0x0f);
    bytes[7] = this.#counter & 0xff;
    bytes[8] = 0x80 | ((bytes[8] as number) & 0x3f);
    if (this.tag !== undefined) bytes.set(this.tag, 10);
    return formatUuid(bytes);
  }
}

/**
 * A hybrid logical clock: 48 bits of wall-clock milliseconds and 16 bits of
 * logical counter in one number below 2^64, as a bigint. Timestamps it issues
 * strictly increase, and `observe` keeps it ahead of remote timestamps.
 */
export class HybridLogicalClock {
  #last = 0n;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The next timestamp. */
  tick(): bigint {
    const physical = BigInt(Math.floor(this.#now())) << 16n;
    this.#last = physical > this.#last ? physical : this.#last + 1n;
    return this.#last;
  }

  /** Moves the clock past a timestamp seen elsewhere (an event read from disk or from another device). */
  observe(timestamp: bigint): void {
    if (timestamp > this.#last) this.#last = timestamp;
  }

  /** Splits a timestamp into wall-clock milliseconds and logical counter. */
  static parts(timestamp: bigint): { wallMs: number; logical: number } {
    return { wallMs: Number(timestamp >> 16n), logical: Number(timestamp & 0xffffn) };
  }
}
