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

/**
 * Why a connection failed, in the same words on every backend: `connection
 * refused`, `unknown host`, `timed out`, `authentication failed`, each with
 * the client's own message after it; else the client's message. Looks at the
 * error's `code`, its cause's, and the message.
 */
export function unreachableReason(error: unknown): string {
  const codes = [
    (error as { code?: unknown } | undefined)?.code,
    ((error as { cause?: unknown } | undefined)?.cause as { code?: unknown } | undefined)?.code,
  ];
  const message = messageOf(error);
  const has = (...names: string[]) =>
    codes.some((code) => typeof code === 'string' && names.includes(code)) || names.some((name) => message.includes(name));
  const reason = (words: string) => (message.toLowerCase() === words ? words : `${words} (${message})`);
  if (has('ECONNREFUSED') || /connection refused/i.test(message)) return reason('connection refused');
  if (has('ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME')) return reason('unknown host');
  if (has('ETIMEDOUT', 'TIMEOUT') || /timed? ?out/i.test(message)) return reason('timed out');
  if (/NOAUTH|WRONGPASS|invalid password|authori[sz]ation violation|authentication/i.test(message)) return reason('authentication failed');
  return message;
}

/**
 * A server address for messages: protocol, host and port of `url`, never the
 * user name or password it may carry. An address without a protocol takes
 * `protocol` (e.g. `nats:`).
 */
export function serverAddress(url: string, protocol: string): string {
  try {
    const parsed = new URL(url.includes('://') ? url : `${protocol}//${url}`);
    return `${parsed.protocol}//${parsed.host}`;
  } catch {
    return 'the given address';
  }
}
