/**
 * A lease built only on the KV contract: at most one holder at a time for a
 * key, taken with `create`, kept with compare-and-swap `update`, given back
 * with `deleteWithVersion`, and taken over once it has expired.
 */
import { randomBytes, toHex } from '@weft/common';
import { KvError, KvErrorCode, kvError } from './errors.js';
import { assertValidKey } from './keys.js';
import type { KvStore, Version } from './types.js';
import { describe } from './validate.js';

/** Options of {@link acquireLease}. */
export interface LeaseOptions {
  /** The key that holds the lease. */
  readonly key: string;
  /** Who is asking, for diagnostics (e.g. a device id). */
  readonly holder: string;
  /** How long the lease lasts unless renewed. */
  readonly ttlMs: number;
  /** Time source; holders' clocks must agree to well within `ttlMs`. @default Date.now */
  readonly clock?: (() => number) | undefined;
}

interface LeaseValue {
  readonly holder: string;
  readonly token: string;
  readonly expiresAt: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function encode(value: LeaseValue): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

function decode(bytes: Uint8Array): LeaseValue | undefined {
  try {
    const value = JSON.parse(decoder.decode(bytes)) as Partial<LeaseValue>;
    if (typeof value.holder === 'string' && typeof value.token === 'string' && typeof value.expiresAt === 'number')
      return value as LeaseValue;
  } catch {
    // not a lease: treated as expired so it can be reclaimed
  }
  return undefined;
}

/** A held lease. */
export class Lease {
  readonly #kv: KvStore;
  readonly #options: LeaseOptions;
  readonly #token: string;
  #version: Version;
  #expiresAt: number;
  #held = true;

  /** @internal use {@link acquireLease} */
  constructor(kv: KvStore, options: LeaseOptions, token: string, version: Version, expiresAt: number) {
    this.#kv = kv;
    this.#options = options;
    this.#token = token;
    this.#version = version;
    this.#expiresAt = expiresAt;
  }

  get key(): string {
    return this.#options.key;
  }

  get holder(): string {
    return this.#options.holder;
  }

  /** When the lease ends unless renewed, on the lease's clock. */
  get expiresAt(): number {
    return this.#expiresAt;
  }

  /** False once released, lost, or past its expiry. */
  get held(): boolean {
    return this.#held && (this.#options.clock ?? Date.now)() < this.#expiresAt;
  }

  /**
   * Extends the lease by `ttlMs` from now.
   *
   * @throws {KvError} `RevisionMismatch` when the lease was lost (taken over after expiring, or released)
   */
  async renew(): Promise<void> {
    if (!this.#held) throw kvError(KvErrorCode.RevisionMismatch, this.#kv.backend, 'the lease is no longer held', { key: this.key });
    const expiresAt = (this.#options.clock ?? Date.now)() + this.#options.ttlMs;
    try {
      this.#version = await this.#kv.update(this.key, encode({ holder: this.holder, token: this.#token, expiresAt }), this.#version);
      this.#expiresAt = expiresAt;
    } catch (error) {
      if (KvError.is(error, KvErrorCode.RevisionMismatch)) this.#held = false;
      throw error;
    }
  }

  /** Gives the lease back; a lease already lost is left to its new holder. Returns whether it was still held. */
  async release(): Promise<boolean> {
    if (!this.#held) return false;
    this.#held = false;
    try {
      await this.#kv.deleteWithVersion(this.key, this.#version);
      return true;
    } catch (error) {
      if (KvError.is(error, KvErrorCode.RevisionMismatch)) return false;
      throw error;
    }
  }
}

/**
 * Takes the lease at `options.key` if nobody holds it (or the holder's lease
 * expired); returns `undefined` when someone else holds it. Exactly one of
 * several concurrent callers wins.
 *
 * @throws {KvError} `InvalidKey`, `InvalidArgument` for a bad TTL, and the store's errors
 */
export async function acquireLease(kv: KvStore, options: LeaseOptions): Promise<Lease | undefined> {
  assertValidKey(options.key, kv.backend);
  if (!(Number.isFinite(options.ttlMs) && options.ttlMs > 0)) {
    throw kvError(KvErrorCode.InvalidArgument, kv.backend, `a lease TTL must be positive, got ${describe(options.ttlMs)}`, {
      key: options.key,
    });
  }
  const clock = options.clock ?? Date.now;
  const token = toHex(randomBytes(12));
  for (let attempt = 0; attempt < 5; attempt++) {
    const expiresAt = clock() + options.ttlMs;
    const value = encode({ holder: options.holder, token, expiresAt });
    try {
      return new Lease(kv, options, token, await kv.create(options.key, value), expiresAt);
    } catch (error) {
      if (!KvError.is(error, KvErrorCode.AlreadyExists)) throw error;
    }
    const current = await kv.get(options.key);
    if (current === undefined) continue; // released meanwhile: try to create again
    const lease = decode(current.value);
    if (lease !== undefined && clock() < lease.expiresAt) return undefined;
    try {
      return new Lease(kv, options, token, await kv.update(options.key, value, current.version), expiresAt);
    } catch (error) {
      if (KvError.is(error, KvErrorCode.RevisionMismatch)) return undefined; // another caller took it over first
      throw error;
    }
  }
  return undefined;
}
