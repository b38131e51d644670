import type { Version } from '@weft/kv';
import { type CursorCodec, describeArgument, KvErrorCode, kvError } from '@weft/kv/backend';
import { backend } from './errors.js';

const streamIdPattern = /^(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})$/;

/** A version is the id of its change-stream entry. */
export function parseStreamId(text: unknown, what: 'version' | 'cursor', key?: string): string {
  if (typeof text === 'string' && streamIdPattern.test(text)) return text;
  throw kvError(KvErrorCode.InvalidArgument, backend, `${describeArgument(text)} is not a ${what} of the redis backend`, { key });
}

export function compareStreamIds(a: string, b: string): number {
  const [aMs = '0', aSeq = '0'] = a.split('-');
  const [bMs = '0', bSeq = '0'] = b.split('-');
  if (aMs !== bMs) return aMs.length !== bMs.length ? aMs.length - bMs.length : aMs < bMs ? -1 : 1;
  if (aSeq === bSeq) return 0;
  return aSeq.length !== bSeq.length ? aSeq.length - bSeq.length : aSeq < bSeq ? -1 : 1;
}

/** Cursors are `<stream id>@<epoch>`; the epoch ties them to one incarnation of the bucket's data. */
export const redisCursors: CursorCodec<string> = {
  parse(cursor) {
    if (typeof cursor === 'string') {
      const at = cursor.indexOf('@');
      const id = cursor.slice(0, at);
      const epoch = cursor.slice(at + 1);
      if (at > 0 && streamIdPattern.test(id) && /^[0-9a-f]{0,32}$/.test(epoch)) return { position: id, epoch };
    }
    throw kvError(KvErrorCode.InvalidArgument, backend, `${describeArgument(cursor)} is not a cursor of the redis backend`);
  },
  format: (position, epoch) => `${position}@${epoch}` as never,
  compare: compareStreamIds,
};

export function asVersion(id: string): Version {
  return id as Version;
}
