/**
 * The one error type every `@weft/kv` backend throws.
 *
 * Callers branch on `code`, never on message text. `retryable` says whether the
 * same call may succeed if simply repeated (a dropped connection, a timeout);
 * `Indeterminate` is deliberately not retryable: the write may have landed, so
 * the caller must read before deciding.
 */

import { WeftError } from '@weft/common';

/** Every failure a backend can report, as a const object (use the values, not literals). */
export const KvErrorCode = {
  /** The key (or prefix) breaks the key rules; nothing was sent. */
  InvalidKey: 'InvalidKey',
  /** An argument other than the key is malformed: a TTL, a value type, a version or cursor string. */
  InvalidArgument: 'InvalidArgument',
  /** The value is larger than `capabilities.maxValueBytes`; nothing was written. */
  ValueTooLarge: 'ValueTooLarge',
  /** `create` found a live value. */
  AlreadyExists: 'AlreadyExists',
  /** The expected version does not match the current one (absent or deleted counts as different). */
  RevisionMismatch: 'RevisionMismatch',
  /** A watch cannot prove it is gap-free from the given cursor; re-list with a state-sync watch. */
  CursorExpired: 'CursorExpired',
  /** The backend cannot honour this operation; thrown up front, before any effect. */
  Unsupported: 'Unsupported',
  /** The client is not connected right now. */
  NotConnected: 'NotConnected',
  /** Connecting to the server failed. */
  ConnectionFailed: 'ConnectionFailed',
  /** The server did not answer in time and nothing was written (reads, or writes known not to have been sent). */
  Timeout: 'Timeout',
  /** A write's outcome is unknown: it may or may not have been applied. */
  Indeterminate: 'Indeterminate',
  /** The store handle was closed. */
  Closed: 'Closed',
  /** Any other failure reported by the backend; see `cause`. */
  OperationFailed: 'OperationFailed',
  /** A stored value does not decode with the codec of a typed view (`withCodec`); the key is named. */
  InvalidValue: 'InvalidValue',
} as const;

export type KvErrorCode = (typeof KvErrorCode)[keyof typeof KvErrorCode];

const retryableByDefault: ReadonlySet<KvErrorCode> = new Set<KvErrorCode>([
  KvErrorCode.NotConnected,
  KvErrorCode.ConnectionFailed,
  KvErrorCode.Timeout,
]);

/** Options accepted by the {@link KvError} constructor. */
export interface KvErrorOptions {
  /** The backend that raised the error, e.g. `memory`, `nats`, `redis`, `fdb`. */
  backend: string;
  /** The key the operation was about, when there is one. */
  key?: string | undefined;
  /** Overrides the code's default retryability. */
  retryable?: boolean | undefined;
  /** The native error, kept for diagnosis. */
  cause?: unknown;
}

/**
 * The error every `@weft/kv` operation throws.
 *
 * `instanceof KvError` also holds for errors created by another copy of
 * `@weft/kv` in the same process (the class checks a global brand), so a
 * duplicated install does not break error handling.
 */
export class KvError extends WeftError<KvErrorCode> {
  static override readonly brand: symbol = Symbol.for('@weft/kv/KvError');
  override readonly name = 'KvError';
  readonly backend: string;
  readonly key: string | undefined;

  constructor(code: KvErrorCode, message: string, options: KvErrorOptions) {
    super(code, message, { cause: options.cause, retryable: options.retryable ?? retryableByDefault.has(code) });
    this.backend = options.backend;
    this.key = options.key;
  }
}

/** Shorthand used by backends: builds a {@link KvError} whose message names the backend and key. */
export function kvError(
  code: KvErrorCode,
  backend: string,
  detail: string,
  extra: { key?: string | undefined; cause?: unknown; retryable?: boolean } = {},
): KvError {
  const where = extra.key === undefined ? `[${backend}]` : `[${backend}] key '${extra.key}':`;
  return new KvError(code, `${where} ${detail}`, { backend, ...extra });
}

/**
 * The error of a compare-and-swap that found another version: the same
 * words on every backend, naming what was expected and what was found
 * (`undefined`: no live value).
 */
export function revisionMismatch(backend: string, key: string, expected: string, found: string | undefined, cause?: unknown): KvError {
  return kvError(
    KvErrorCode.RevisionMismatch,
    backend,
    `expected version ${expected}, found ${found === undefined ? 'no live value' : `version ${found}`}`,
    { key, ...(cause === undefined ? {} : { cause }) },
  );
}

/** The error of a create over a live value, naming its version: the same words on every backend. */
export function alreadyExists(backend: string, key: string, found: string): KvError {
  return kvError(KvErrorCode.AlreadyExists, backend, `a live value already exists (version ${found})`, { key });
}
