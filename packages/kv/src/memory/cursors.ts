import type { CursorCodec } from '../backend/driver.js';
import { KvErrorCode, kvError } from '../errors.js';
import type { Version, WatchCursor } from '../types.js';
import { describe } from '../validate.js';
import { backend } from './bucket.js';

/** Versions and cursors are the bucket's sequence in decimal; a new incarnation continues past the old one's. */
export function versionOf(seq: number): Version {
  return String(seq) as Version;
}

export function parseSequence(text: unknown, what: 'version' | 'cursor', key?: string): number {
  if (typeof text === 'string' && /^(0|[1-9][0-9]{0,15})$/.test(text)) {
    const value = Number(text);
    if (Number.isSafeInteger(value)) return value;
  }
  throw kvError(KvErrorCode.InvalidArgument, backend, `${describe(text)} is not a ${what} of the memory backend`, { key });
}

export const memoryCursors: CursorCodec<number> = {
  parse: (cursor) => ({ position: parseSequence(cursor, 'cursor'), epoch: '' }),
  format: (position) => String(position) as WatchCursor,
  compare: (a, b) => a - b,
};
