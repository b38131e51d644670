/**
 * The one error type of `@weft/eventlog`. Callers branch on `code`.
 */

import { WeftError } from '@weft/common';

export const EventLogErrorCode = {
  /** An argument is malformed (an entity name, a kind, a payload type, an option). */
  InvalidArgument: 'InvalidArgument',
  /** `expectedSequence` did not match the entity's current sequence; nothing was written. */
  SequenceMismatch: 'SequenceMismatch',
  /** A gate denied the append; nothing was written. See `reason`. */
  GateDenied: 'GateDenied',
  /** Another writer holds the directory's lock. */
  Locked: 'Locked',
  /** Stored bytes are damaged outside the last segment's tail; the log refuses to open. */
  Corrupt: 'Corrupt',
  /** A frame or header failed to decode: bad length, bad CRC, bad field. */
  InvalidFrame: 'InvalidFrame',
  /** No event with that id. */
  NotFound: 'NotFound',
  /** The filesystem failed (EIO, ENOSPC, ...); the append failed closed and wrote nothing visible. */
  IoFailed: 'IoFailed',
  /** The log is closed, or failed earlier and must be reopened. */
  Closed: 'Closed',
  /** Encryption is on and the log has encrypted events, but its keyset file is missing. */
  KeysetMissing: 'KeysetMissing',
  /** The keyset is damaged, was rolled back past a stored ciphertext, or the master key does not open it. */
  KeysetInvalid: 'KeysetInvalid',
  /** A ciphertext failed authentication: the payload, nonce or header was tampered with. */
  DecryptionFailed: 'DecryptionFailed',
} as const;

export type EventLogErrorCode = (typeof EventLogErrorCode)[keyof typeof EventLogErrorCode];

/** Options of {@link EventLogError}. */
export interface EventLogErrorOptions {
  readonly cause?: unknown;
  /** For `GateDenied`: the structured reason the gate returned. */
  readonly reason?: unknown;
  /** For `Corrupt` and `InvalidFrame`: where the damage is. */
  readonly segment?: string;
  readonly offset?: number;
}

/** The error every `@weft/eventlog` operation throws. */
export class EventLogError extends WeftError<EventLogErrorCode> {
  static override readonly brand: symbol = Symbol.for('@weft/eventlog/EventLogError');
  override readonly name = 'EventLogError';
  readonly reason: unknown;
  readonly segment: string | undefined;
  readonly offset: number | undefined;

  constructor(code: EventLogErrorCode, message: string, options: EventLogErrorOptions = {}) {
    super(code, message, { cause: options.cause });
    this.reason = options.reason;
    this.segment = options.segment;
    this.offset = options.offset;
  }
}
