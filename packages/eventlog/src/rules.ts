/** What the log accepts as names, kinds and labels, and the errors it gives for what it refuses. */
import { utf8Length } from '@weft/common';
import { maxNameBytes } from './codec.js';
import { EventLogError, EventLogErrorCode } from './errors.js';

export function invalidArgument(message: string): EventLogError {
  return new EventLogError(EventLogErrorCode.InvalidArgument, message);
}

export function checkName(value: unknown, what: string): string {
  if (typeof value !== 'string') throw invalidArgument(`${what} must be a string, got ${typeof value}`);
  const bytes = utf8Length(value);
  if (bytes === 0 || bytes > maxNameBytes) throw invalidArgument(`${what} must be 1 to ${maxNameBytes} bytes, got ${bytes}`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(value)) throw invalidArgument(`${what} must not contain control characters`);
  if ((value as { isWellFormed?: () => boolean }).isWellFormed?.() === false)
    throw invalidArgument(`${what} must be well-formed UTF-16 (no lone surrogates)`);
  return value;
}

/** A batch label travels in the frame's idempotency key field, behind this prefix (docs/formats/eventlog.md). */
export const labelPrefix = 'label:';

/** True when a kind's category (its top 4 bits) is reserved for the log itself: 0x0 and 0xD. */
export function isReservedKind(kind: number): boolean {
  const category = kind >>> 12;
  return category === 0x0 || category === 0xd;
}

/** Segment file names: `seg-<first position, 16 digits>.log`. */
export const segmentPattern = /^seg-(\d{16})\.log$/;

export function segmentName(firstPosition: number): string {
  return `seg-${String(firstPosition).padStart(16, '0')}.log`;
}

export function ioFailed(action: string, error: unknown): EventLogError {
  return new EventLogError(EventLogErrorCode.IoFailed, `${action} failed: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
  });
}
