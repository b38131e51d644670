/**
 * How weft's records look on a NATS KV stream: the headers it reads and
 * writes, versions, cursors and the subjects of a bucket and its companion
 * stream (built here and nowhere else).
 */

import type { MsgHdrs } from '@nats-io/nats-core';
import type { Version } from '@weft/kv';
import { type CursorCodec, describeArgument, KvErrorCode, kvError } from '@weft/kv/backend';
import { backend } from './errors.js';

export const keyHeader = 'KV-Operation';
export const rollupHeader = 'Nats-Rollup';
/** On a put with a TTL: when it expires, in epoch milliseconds. */
export const expiresHeader = 'Weft-Expires';
/** On the delete marker the sweeper writes for a passed TTL: `expire`. */
export const weftOpHeader = 'Weft-Op';
/** The server's per-message TTL (2.11+, on streams with `allow_msg_ttl`): seconds, a Go duration or `never`. */
export const ttlHeader = 'Nats-TTL';
/** On a marker the server writes when it removed a subject's last message (2.11+, with `subject_delete_marker_ttl`). */
export const markerReasonHeader = 'Nats-Marker-Reason';
/** On every put weft writes: an id of that write, which its version names (see {@link versionOf}). */
export const writeIdHeader = 'Weft-Write';

/**
 * Ids for the puts of one handle: a random prefix of its own, then a count.
 * A server that forgot its last messages hands their sequences out again;
 * the id tells the write a version names from a later one at its sequence.
 */
export class WriteIds {
  readonly #prefix: string;
  #count = 0;

  constructor() {
    const random = new Uint32Array(2);
    crypto.getRandomValues(random);
    this.#prefix =
      ((random[0] as number) % 36 ** 6).toString(36).padStart(6, '0') + ((random[1] as number) % 36 ** 4).toString(36).padStart(4, '0');
  }

  next(): string {
    this.#count++;
    return this.#prefix + this.#count.toString(36);
  }
}

/** The write id a message carries, when it is one weft wrote (anything else reads as none). */
export function writeIdOf(headers: MsgHdrs | undefined): string | undefined {
  const id = headers?.get(writeIdHeader);
  return id !== undefined && writeIdPattern.test(id) ? id : undefined;
}

const writeIdPattern = /^[0-9a-z]{1,24}$/;

export function streamName(bucket: string): string {
  return `KV_${bucket}`;
}

/** The companion stream holding weft's own bookkeeping for a bucket (the compaction horizon, the TTL index). */
export function metaStreamName(bucket: string): string {
  return `WEFT_${bucket}`;
}

/** Subjects of a bucket's records and of its companion stream. */
export class BucketSubjects {
  readonly stream: string;
  readonly metaStream: string;
  /** `$KV.<bucket>.`: a record's subject is this followed by its key. */
  readonly recordPrefix: string;
  /** Every subject of the companion stream. */
  readonly metaWildcard: string;
  readonly horizon: string;
  /** `$WEFT.<bucket>.ttl.`: a TTL index entry's subject is this followed by its key. */
  readonly ttlPrefix: string;

  constructor(bucket: string) {
    this.stream = streamName(bucket);
    this.metaStream = metaStreamName(bucket);
    this.recordPrefix = `$KV.${bucket}.`;
    this.metaWildcard = `$WEFT.${bucket}.>`;
    this.horizon = `$WEFT.${bucket}.horizon`;
    this.ttlPrefix = `$WEFT.${bucket}.ttl.`;
  }

  record(key: string): string {
    return this.recordPrefix + key;
  }

  ttl(key: string): string {
    return this.ttlPrefix + key;
  }
}

/** One message of a bucket's stream, decoded. */
export interface StreamedMessage {
  readonly seq: number;
  readonly key: string;
  /** The id weft gave the write ({@link writeIdHeader}), or `undefined` for a message another client wrote. */
  readonly writeId: string | undefined;
  /** `expire` is a delete marker the sweeper wrote for a passed TTL. */
  readonly op: 'put' | 'delete' | 'purge' | 'expire';
  /** A put's TTL, in epoch milliseconds (0 for none). */
  readonly expiresAt: number;
  readonly data: Uint8Array;
  /** Messages still pending on the consumer after this one. */
  readonly pending: number;
  /** When the server stored it, in epoch milliseconds. */
  readonly timeMs: number;
}

/**
 * What a message means: a put, or a tombstone. The server's own markers
 * (2.11+) say why it removed the subject's last message: its TTL or the
 * bucket's age limit passed (`MaxAge`: an expiry), or a purge or removal.
 */
export function operationOf(headers: MsgHdrs | undefined): StreamedMessage['op'] {
  const reason = headers?.get(markerReasonHeader);
  if (reason === 'MaxAge') return 'expire';
  if (reason === 'Purge') return 'purge';
  if (reason === 'Remove') return 'delete';
  const operation = headers?.get(keyHeader);
  if (operation === 'DEL') return headers?.get(weftOpHeader) === 'expire' ? 'expire' : 'delete';
  if (operation === 'PURGE') return 'purge';
  return 'put';
}

/**
 * When a put expires, in epoch milliseconds (0 for never): weft's own
 * header, to the millisecond, or else the server's per-message TTL counted
 * from `storedMs`, as other clients (`@nats-io/kv`, the `nats` CLI) write it.
 */
export function expiryOf(headers: MsgHdrs | undefined, storedMs: number): number {
  const text = headers?.get(expiresHeader);
  if (text !== undefined && text !== '') {
    const value = Number(text);
    return Number.isSafeInteger(value) && value > 0 ? value : 0;
  }
  const ttl = headers?.get(ttlHeader);
  if (ttl === undefined || ttl === '') return 0;
  const ttlMs = parseTtlMs(ttl);
  return ttlMs > 0 ? storedMs + ttlMs : 0;
}

const durationUnitsMs: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A `Nats-TTL` value in milliseconds: bare seconds or a Go duration (`1h30m`, `1500ms`); 0 for `never` or anything unreadable. */
export function parseTtlMs(text: string): number {
  if (/^[0-9]{1,12}$/.test(text)) return Number(text) * 1000;
  if (!/^(?:[0-9]{1,12}(?:\.[0-9]{1,9})?(?:ns|us|µs|ms|s|m|h)){1,7}$/.test(text)) return 0;
  let total = 0;
  for (const [, amount, unit] of text.matchAll(/([0-9.]+)(ns|us|µs|ms|s|m|h)/g))
    total += Number(amount) * (durationUnitsMs[unit as string] ?? 0);
  return Math.ceil(total);
}

/** The `Nats-TTL` the server is given for a TTL of `ttlMs`: whole seconds, at least one (its resolution). */
export function serverTtl(ttlMs: number): string {
  return `${Math.max(1, Math.ceil(ttlMs / 1000))}s`;
}

export function expired(message: StreamedMessage): boolean {
  return message.op === 'put' && message.expiresAt > 0 && message.expiresAt <= Date.now();
}

/**
 * Versions are the stream sequence (what `nats kv` shows as the revision);
 * a put weft wrote adds its write id (`-w<id>`), so a version names that
 * write and not only its sequence, and a put with a TTL its expiry
 * (`-t<expiry>`), so CAS against it fails once it passed. Tombstones carry
 * a suffix so CAS against a deleted key can never match.
 */
export function versionOf(seq: number, op: 'put' | 'delete' | 'purge', expiresAt = 0, writeId?: string): Version {
  if (op !== 'put') return `${seq}-${op === 'delete' ? 'd' : 'p'}` as Version;
  const named = writeId === undefined ? String(seq) : `${seq}-w${writeId}`;
  return (expiresAt > 0 ? `${named}-t${expiresAt.toString(36)}` : named) as Version;
}

/** A version taken apart: a version without a write id names the sequence alone, as a nats.js revision does. */
export interface ParsedVersion {
  readonly seq: number;
  readonly op: 'put' | 'delete' | 'purge';
  readonly expiresAt: number;
  readonly writeId: string | undefined;
}

export function parseVersion(version: unknown, key: string): ParsedVersion {
  if (typeof version === 'string') {
    const match = /^([1-9][0-9]{0,15})(?:(-d|-p)|(?:-w([0-9a-z]{1,24}))?(?:-t([0-9a-z]{1,11}))?)$/.exec(version);
    if (match !== null) {
      const op = match[2] === '-d' ? 'delete' : match[2] === '-p' ? 'purge' : 'put';
      return {
        seq: Number(match[1]),
        op,
        expiresAt: match[4] === undefined ? 0 : Number.parseInt(match[4], 36),
        writeId: match[3],
      };
    }
  }
  throw kvError(KvErrorCode.InvalidArgument, backend, `${describeArgument(version)} is not a version of the nats backend`, { key });
}

/**
 * A position in a bucket's stream: the sequence, and the time (epoch ms,
 * 0 when unknown) the server stored the message there. A server that
 * forgot its last messages gives their sequences to later ones; the time
 * tells them apart, so a watch can see that the change it read after is
 * gone.
 */
export interface NatsPosition {
  readonly seq: number;
  readonly stamp: number;
}

export const startOfStream: NatsPosition = { seq: 0, stamp: 0 };

/** Cursors are `<stream sequence>[.<stamp>]@<epoch>`; the epoch ties them to one incarnation of the bucket's stream. */
export const natsCursors: CursorCodec<NatsPosition> = {
  parse(cursor) {
    if (typeof cursor === 'string') {
      const match = /^(0|[1-9][0-9]{0,15})(?:\.([0-9a-z]{1,11}))?@([0-9a-z]{1,16})$/.exec(cursor);
      if (match !== null) {
        const position = { seq: Number(match[1]), stamp: match[2] === undefined ? 0 : Number.parseInt(match[2], 36) };
        return { position, epoch: match[3] as string };
      }
    }
    throw kvError(KvErrorCode.InvalidArgument, backend, `${describeArgument(cursor)} is not a cursor of the nats backend`);
  },
  format: ({ seq, stamp }, epoch) => (stamp > 0 ? `${seq}.${stamp.toString(36)}@${epoch}` : `${seq}@${epoch}`) as never,
  compare: (a, b) => a.seq - b.seq,
};

/** A stamp from the server's RFC 3339 time (0 for the zero time of an empty stream). */
export function stampOf(time: string | undefined): number {
  const ms = time === undefined ? Number.NaN : Date.parse(time);
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
}

/** Whether two stamps name the same message's time: nanoseconds read as doubles may round across a millisecond. */
export function sameStamp(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1;
}

/** The epoch of a stream: its creation time, so a deleted and recreated bucket gets a new one. */
export function epochOf(created: string): string {
  return Date.parse(created).toString(36);
}
