/** A copy of `value` that owns its bytes (never a view into a client's or a shared buffer). */
export function copyBytes(value: Uint8Array): Uint8Array {
  return Uint8Array.prototype.slice.call(value);
}

/** Backoff for retry loops: 50 ms doubling per attempt, at most `capMs`. */
export function backoffMs(attempt: number, capMs = 2000): number {
  return Math.min(capMs, 50 * 2 ** Math.min(attempt, 6));
}

/** True when a TTL of `expiresAt` epoch milliseconds (`0` or undefined for none) has passed at `now`. */
export function ttlLapsed(expiresAt: number | undefined, now: number): boolean {
  return expiresAt !== undefined && expiresAt > 0 && expiresAt <= now;
}

/** The message of a native failure, for error texts. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
