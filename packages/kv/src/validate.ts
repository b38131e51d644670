import { KvErrorCode, kvError } from './errors.js';

/**
 * Throws unless `value` is a `Uint8Array` of at most `maxValueBytes` bytes.
 * Backends call it before any I/O, so an oversize value writes nothing.
 *
 * @throws {KvError} `InvalidArgument` for a non-binary value, `ValueTooLarge` past the limit
 */
export function assertValue(value: unknown, maxValueBytes: number, backend: string, key: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `a value must be a Uint8Array, got ${describe(value)}`, { key });
  }
  if (value.byteLength > maxValueBytes) {
    throw kvError(KvErrorCode.ValueTooLarge, backend, `value of ${value.byteLength} bytes exceeds the limit of ${maxValueBytes} bytes`, {
      key,
    });
  }
}

/**
 * Throws unless `ttlMs` is a positive, finite number of milliseconds.
 *
 * @throws {KvError} `InvalidArgument`
 */
export function assertTtl(ttlMs: unknown, backend: string, key: string): asserts ttlMs is number {
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0 || ttlMs > maxTtlMs) {
    throw kvError(
      KvErrorCode.InvalidArgument,
      backend,
      `a TTL must be a positive number of milliseconds of at most ${maxTtlMs} (100 years), got ${describe(ttlMs)}`,
      { key },
    );
  }
}

/**
 * The longest TTL, the same on every backend: 100 years (NATS carries a TTL
 * as a duration the server holds in int64 nanoseconds, about 292 years).
 */
export const maxTtlMs = 100 * 365.25 * 24 * 60 * 60 * 1000;

/** The longest bucket name, the same on every backend (NATS names streams `KV_<bucket>`, at most 255 characters). */
export const maxBucketNameLength = 128;

/**
 * Throws unless `signal` is undefined or an `AbortSignal`.
 *
 * @throws {KvError} `InvalidArgument`
 */
export function assertSignal(signal: unknown, backend: string): asserts signal is AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `a watch signal must be an AbortSignal, got ${describe(signal)}`);
  }
}

/**
 * Throws unless `bucket` is a bucket name: `[A-Za-z0-9_-]+`, which every
 * backend can carry in its keys, subjects and file names unescaped.
 *
 * @throws {KvError} `InvalidArgument`
 */
export function assertBucketName(bucket: unknown, backend: string): asserts bucket is string {
  if (typeof bucket !== 'string' || !/^[A-Za-z0-9_-]+$/.test(bucket) || bucket.length > maxBucketNameLength) {
    throw kvError(
      KvErrorCode.InvalidArgument,
      backend,
      `a bucket name must match [A-Za-z0-9_-]+ and have at most ${maxBucketNameLength} characters, got ${describe(bucket)}`,
    );
  }
}

/**
 * Throws unless every option is a safe integer of at least its minimum.
 *
 * @throws {KvError} `InvalidArgument` naming the first bad option
 */
export function assertIntegerOptions(
  backend: string,
  options: ReadonlyArray<readonly [name: string, value: number, minimum: number]>,
): void {
  for (const [name, value, minimum] of options) {
    if (!Number.isSafeInteger(value) || value < minimum) {
      throw kvError(KvErrorCode.InvalidArgument, backend, `${name} must be an integer of at least ${minimum}, got ${describe(value)}`);
    }
  }
}

/** A short, safe description of an unexpected argument for error messages (never the bytes of a value). */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return value.length > 40 ? `a string of ${value.length} characters` : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'Object'})`;
  return typeof value;
}
