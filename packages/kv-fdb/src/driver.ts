import { randomBytes } from 'node:crypto';
import { type Clock, type KvCapabilities, type KvEntry, type KvError, type KvRecord, keyMatchesPrefix, type Version } from '@weft/kv';
import {
  alreadyExists,
  type ChangeRequest,
  type CursorCodec,
  type KvCommitMutation,
  type KvDriver,
  type KvMutation,
  revisionMismatch,
} from '@weft/kv/backend';
import { changeFeed } from './change-log.js';
import {
  type BucketLayout,
  decodeRecord,
  decodeVersionValue,
  encodeLogEntry,
  encodeRecordSuffix,
  fromHex,
  inlineLimit,
  joinChunks,
  type Op,
  type StoredRecord,
  splitChunks,
  stampBytes,
  toHex,
  versionOf,
} from './layout.js';
import { sweepExpired, trimHistory } from './maintenance.js';
import { backend, done, runRead, runWrite, type TransactionContext, toKvError } from './transactions.js';
import type { FdbDatabase, FdbTransaction } from './transactor.js';

export interface FdbSettings {
  readonly maxValueBytes: number;
  readonly sweepIntervalMs: number;
  readonly historyRetentionMs: number;
  readonly maintenanceIntervalMs: number;
  readonly transactionTimeoutMs: number;
  readonly maxRetries: number;
}

/** Records per listing transaction. */
export const listPage = 200;

/** Cursors and versions are versionstamps in hex; FoundationDB never reuses one, so no epoch is needed. */
const fdbCursors: CursorCodec<Buffer> = {
  parse: (cursor) => ({ position: fromHex(cursor, 'cursor'), epoch: '' }),
  format: (position) => toHex(position),
  compare: (a, b) => Buffer.compare(a, b),
};

/**
 * The FoundationDB driver: each mutation writes the record and a
 * versionstamped change-log entry in one transaction; reads and listings are
 * short transactions; the change feed lives in `change-log.ts`.
 */
export class FdbDriver implements KvDriver<Buffer>, TransactionContext {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  readonly cursors = fdbCursors;
  readonly db: FdbDatabase;
  readonly layout: BucketLayout;
  readonly settings: FdbSettings;
  readonly clock: Clock;
  readonly transactionTimeoutMs: number;
  readonly maxRetries: number;
  readonly #owned: boolean;
  #closed = false;
  #cancelSweep: (() => void) | undefined;
  #maintenance: NodeJS.Timeout | undefined;
  /** The last error of the background sweeper or retention job, if its latest run failed. */
  lastMaintenanceError: KvError | undefined;

  constructor(db: FdbDatabase, owned: boolean, bucket: string, layout: BucketLayout, settings: FdbSettings, clock: Clock) {
    this.db = db;
    this.#owned = owned;
    this.bucket = bucket;
    this.layout = layout;
    this.settings = settings;
    this.clock = clock;
    this.transactionTimeoutMs = settings.transactionTimeoutMs;
    this.maxRetries = settings.maxRetries;
    this.capabilities = Object.freeze({
      ttl: true,
      purge: true,
      multiPrefixWatch: 'emulated',
      maxValueBytes: settings.maxValueBytes,
      readYourWrites: true,
      history: 1,
      // A mutation over a passed, unswept TTL writes its expire first, in the same transaction.
      expireBeforeNextWrite: true,
      // One transaction of at most 10 MB: the values of a commit stay below it.
      commit: { maxOps: maxCommitOps, maxBytes: 9 * 1024 * 1024 },
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  now(): number {
    return this.clock.now();
  }

  /** Creates the bucket's head and horizon on first use, then starts the background jobs. */
  async initialize(): Promise<void> {
    const layout = this.layout;
    await runWrite(this, 'open', undefined, async (tn) => {
      if ((await tn.get(layout.horizon)) !== undefined) return done(undefined);
      // A new (or dropped and recreated) bucket: no cursor from before this point can be resumed.
      tn.setVersionstampedValue(layout.horizon, order(0));
      tn.setVersionstampedValue(layout.head, order(0));
      return done(undefined, true);
    });
    if (this.settings.sweepIntervalMs > 0) this.#scheduleSweep();
    if (this.settings.maintenanceIntervalMs > 0) {
      this.#maintenance = setInterval(() => {
        trimHistory(this, undefined).catch((error: unknown) => {
          if (!this.#closed) this.lastMaintenanceError = toKvError(this, error, 'trimHistory', undefined, false, false);
        });
      }, this.settings.maintenanceIntervalMs);
      this.#maintenance.unref();
    }
  }

  get(key: string): Promise<KvEntry | undefined> {
    return runRead(this, 'get', key, async (tn) => {
      const found = await this.readRecord(tn, key, true);
      if (found === undefined || found.record.op !== 'put' || this.expired(found.record)) return undefined;
      return { key, value: found.value ?? new Uint8Array(0), version: toHex(found.record.version) };
    });
  }

  entry(key: string): Promise<KvRecord | undefined> {
    return runRead(this, 'entry', key, async (tn) => {
      const found = await this.readRecord(tn, key, true);
      if (found === undefined || this.expired(found.record)) return undefined;
      const version = toHex(found.record.version);
      if (found.record.op === 'put') return { key, op: 'put', value: found.value ?? new Uint8Array(0), version };
      return { key, op: found.record.op, version };
    });
  }

  async *list(prefix: string | undefined, { values }: { readonly values: boolean }): AsyncGenerator<KvEntry> {
    const layout = this.layout;
    let [low, high] = layout.recordRange(prefix);
    for (;;) {
      const page = await runRead(this, 'scan', undefined, async (tn) => {
        const rows = await tn.getRange(low, high, { limit: listPage });
        const entries: KvEntry[] = [];
        for (const [recordKey, raw] of rows) {
          const key = layout.recordKey(recordKey);
          if (!keyMatchesPrefix(key, prefix)) continue;
          const record = decodeRecord(raw, key);
          if (record.op !== 'put' || this.expired(record)) continue;
          const value = values ? await this.valueOf(tn, key, record) : new Uint8Array(0);
          entries.push({ key, value, version: toHex(record.version) });
        }
        return { rows: rows.length, last: rows[rows.length - 1]?.[0], entries };
      });
      yield* page.entries;
      if (page.rows < listPage || page.last === undefined) return;
      low = Buffer.concat([page.last, Buffer.from([0])]);
    }
  }

  async mutate(mutation: KvMutation): Promise<Version> {
    const { kind, key } = mutation;
    const layout = this.layout;
    const marker = this.#writeMarker();
    return runWrite(this, kind, key, async (tn, retryingUnknown) => {
      if (retryingUnknown) {
        const landed = decodeVersionValue(await tn.get(marker), 'write id');
        if (landed !== undefined) return done(toHex(landed));
      }
      const found = await this.#checked(tn, mutation);
      // A passed TTL not swept yet: its `expire` goes first, in the same transaction, so watchers see the removal in order.
      const at = found.lapsed ? 1 : 0;
      this.#write(tn, mutation, found, 0, at);
      tn.setVersionstampedValue(layout.head, order(at));
      tn.setVersionstampedValue(marker, order(at));
      return { commit: true, stamp: tn.getVersionstamp(), finish: (stamp) => toHex(versionOf(stamp as Buffer, at)) };
    });
  }

  /**
   * One transaction: every record read and every precondition checked, then
   * every write. Operation i logs its lapsed TTL's `expire` at order i and its
   * change at order n + i, so the expires come first and the commit's
   * changes follow one another; its version is that change's.
   */
  async commit(mutations: readonly KvCommitMutation[]): Promise<Version[]> {
    const layout = this.layout;
    const count = mutations.length;
    const versionsOf = (stamp: Buffer) => mutations.map((_, index) => toHex(versionOf(stamp, count + index)));
    const marker = this.#writeMarker();
    return runWrite(this, 'commit', (mutations[0] as KvCommitMutation).key, async (tn, retryingUnknown) => {
      if (retryingUnknown) {
        const landed = decodeVersionValue(await tn.get(marker), 'write id');
        if (landed !== undefined) return done(versionsOf(landed.subarray(0, stampBytes)));
      }
      const found = await Promise.all(mutations.map((mutation) => this.#checked(tn, mutation)));
      for (const [index, mutation] of mutations.entries())
        this.#write(tn, mutation, found[index] as (typeof found)[number], index, count + index);
      tn.setVersionstampedValue(layout.head, order(2 * count - 1));
      tn.setVersionstampedValue(marker, order(count));
      return { commit: true, stamp: tn.getVersionstamp(), finish: (stamp) => versionsOf(stamp as Buffer) };
    });
  }

  /** A key that records this write's version once it lands: a retry after commit_unknown_result finds it there. */
  #writeMarker(): Buffer {
    const writeId = Buffer.alloc(16);
    writeId.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(this.clock.now()))), 0);
    randomBytes(8).copy(writeId, 8);
    return this.layout.writeMarker(writeId);
  }

  /** Reads the key's record and throws when the mutation's precondition fails. */
  async #checked(tn: FdbTransaction, mutation: KvMutation): Promise<{ record: StoredRecord | undefined; lapsed: boolean }> {
    const { kind, key } = mutation;
    const expected = 'expected' in mutation ? fromHex(mutation.expected, 'version', key) : undefined;
    const record = (await this.readRecord(tn, key, false))?.record;
    const live = record !== undefined && record.op === 'put' && !this.expired(record);
    if (kind === 'create' && live) {
      throw alreadyExists(backend, key, toHex(record.version));
    }
    if ((kind === 'update' || kind === 'deleteWithVersion') && (!live || !record.version.equals(expected as Buffer))) {
      throw revisionMismatch(backend, key, toHex(expected as Buffer), live ? toHex(record.version) : undefined);
    }
    return { record, lapsed: record !== undefined && record.op === 'put' && !live };
  }

  /**
   * Writes a checked mutation: its record, value chunks and expiry, and its
   * change-log entry at the order `at` within the transaction's versionstamp;
   * a lapsed TTL's `expire` entry goes at `expireAt`, before it.
   */
  #write(
    tn: FdbTransaction,
    mutation: KvMutation,
    found: { record: StoredRecord | undefined; lapsed: boolean },
    expireAt: number,
    at: number,
  ): void {
    const { kind, key } = mutation;
    const layout = this.layout;
    const { record } = found;
    const value = 'value' in mutation ? mutation.value : undefined;
    const ttlMs = kind === 'putWithTtl' ? Math.max(1, Math.ceil(mutation.ttlMs)) : undefined;
    if (record !== undefined) {
      if (record.chunks > 0) tn.clearRange(...layout.chunkRange(key));
      if (record.expiresAt > 0) tn.clear(layout.expiry(record.expiresAt, key));
    }
    if (found.lapsed) tn.setVersionstampedKey(layout.log, order(expireAt), encodeLogEntry('expire', key));
    const op: Op = kind === 'delete' || kind === 'deleteWithVersion' ? 'delete' : kind === 'purge' ? 'purge' : 'put';
    const expiresAt = ttlMs === undefined ? 0 : this.clock.now() + ttlMs;
    tn.setVersionstampedValue(layout.record(key), encodeRecordSuffix(at, op as 'put' | 'delete' | 'purge', expiresAt, value));
    if (value !== undefined && value.byteLength > inlineLimit) {
      for (const [index, chunk] of splitChunks(value).entries()) tn.set(layout.chunk(key, index), chunk);
    }
    if (expiresAt > 0) tn.set(layout.expiry(expiresAt, key), Buffer.alloc(0));
    tn.setVersionstampedKey(layout.log, order(at), encodeLogEntry(op, key));
  }

  changes(request: ChangeRequest<Buffer>) {
    return changeFeed(this, request);
  }

  toKvError(error: unknown, operation: string): KvError {
    return toKvError(this, error, operation, undefined, false, false);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#cancelSweep?.();
    clearInterval(this.#maintenance);
    if (this.#owned) this.db.close();
  }

  async readRecord(
    tn: FdbTransaction,
    key: string,
    withValue: boolean,
  ): Promise<{ record: StoredRecord; value: Uint8Array | undefined } | undefined> {
    const raw = await tn.get(this.layout.record(key));
    if (raw === undefined) return undefined;
    const record = decodeRecord(raw, key);
    if (!withValue || record.op !== 'put') return { record, value: undefined };
    return { record, value: await this.valueOf(tn, key, record) };
  }

  async valueOf(tn: FdbTransaction, key: string, record: StoredRecord): Promise<Uint8Array> {
    if (record.chunks === 0) return new Uint8Array(record.inline);
    const rows = await tn.getRange(...this.layout.chunkRange(key), { limit: record.chunks + 1 });
    return joinChunks(record, rows, key);
  }

  expired(record: StoredRecord): boolean {
    return record.expiresAt > 0 && record.expiresAt <= this.clock.now();
  }

  #scheduleSweep(): void {
    if (this.#closed) return;
    this.#cancelSweep = this.clock.setTimer(this.settings.sweepIntervalMs, () => {
      // Sweep on the next turn: a manual clock fires timers while it advances, and the sweep must see where it ends.
      new Promise(setImmediate)
        .then(() => sweepExpired(this, 500))
        .then(
          () => {
            this.lastMaintenanceError = undefined;
            this.#scheduleSweep();
          },
          (error: unknown) => {
            if (this.#closed) return;
            this.lastMaintenanceError = toKvError(this, error, 'sweepExpired', undefined, true, false);
            this.#scheduleSweep();
          },
        );
    });
  }
}

/** The user version within a transaction's versionstamp, so one transaction can log several changes in order. */
/** The most operations of one commit: a commit logs at most twice as many entries (its changes and expires). */
export const maxCommitOps = 1000;

export function order(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value, 0);
  return bytes;
}
