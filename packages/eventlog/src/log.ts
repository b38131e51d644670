import { Notifier, pause, unrefTimer, weftChannel } from '@weft/common';
import { nodeFileSystem } from '#platform';
import { type AcceptedBatch, AppendPipeline } from './append-pipeline.js';
import { ancestorsOf, descendantsOf } from './causal.js';
import type { FrameHeader } from './codec.js';
import { EncryptedCodec, type EncryptionOptions } from './crypto/encrypted-codec.js';
import { keysetFileName, type ShredTarget } from './crypto/keyset.js';
import type { DurabilityTracker } from './durability.js';
import { EventLogError, EventLogErrorCode } from './errors.js';
import { FrameReader, scanChunkBytes } from './frame-reader.js';
import { joinPath, type LogFileSystem } from './fs/types.js';
import { type Hashers, loadHashers } from './hash.js';
import { type EventId, HybridLogicalClock } from './ids.js';
import { DirectoryLock } from './lock.js';
import { LogIndex } from './log-index.js';
import { type PayloadCodec, plainCodec } from './payload-codec.js';
import { Projections } from './projections.js';
import { type RecoveryTarget, recoverSegments, refreshSegments } from './recovery.js';
import { invalidArgument, segmentPattern } from './rules.js';
import { ItemsOf } from './structures.js';
import type {
  AppendedEvent,
  AppendInput,
  AppendOptions,
  AppendReceipt,
  CausalWalk,
  Gate,
  LogEvent,
  SubscriptionItem,
  SyncMode,
  VerifyResult,
} from './types.js';
import { verifySegments } from './verify.js';
import { SegmentWriter } from './writer.js';

/** Options of {@link openEventLog}. */
export interface EventLogOptions {
  /** The log's directory; created when missing. */
  readonly dir: string;
  /** @default 'group' */
  readonly sync?: SyncMode | undefined;
  /** For `sync: 'interval'`, milliseconds between fsyncs. @default 100 */
  readonly syncIntervalMs?: number | undefined;
  /** The filesystem seam. @default the real filesystem */
  readonly fs?: LogFileSystem | undefined;
  /** A segment file is closed and a new one started once it reaches this size. @default 64 MiB */
  readonly segmentBytes?: number | undefined;
  /** The largest payload accepted. @default 16 MiB */
  readonly maxPayloadBytes?: number | undefined;
  /** Gates run, in order, inside the writer's critical section for every append. */
  readonly gates?: readonly Gate[] | undefined;
  /** Wall-clock source for event ids and timestamps. @default Date.now */
  readonly clock?: (() => number) | undefined;
  /** Encrypt every non-reserved payload (see the README): `{ granularity, masterKey }`. */
  readonly encryption?: EncryptionOptions | undefined;
  /**
   * Open for reading only, next to a writer in another process: no lock is
   * taken and nothing is written or repaired; `refresh()` (and subscriptions,
   * every `pollIntervalMs`) pick up what the writer appended since.
   */
  readonly readOnly?: boolean | undefined;
  /** For read-only logs: how often subscriptions look for new appends. @default 250 */
  readonly pollIntervalMs?: number | undefined;
}

/** Events of one entity read together by `readEntity`. */
const entityStep = 256;

/**
 * Opens (or creates) an event log in `options.dir`, recovering from a crash:
 * a torn tail of the last segment is truncated; damage anywhere else refuses
 * to open with a `Corrupt` error naming the segment and offset.
 *
 * @throws {EventLogError} `Locked` when another writer has the directory, `Corrupt`, `InvalidArgument`, `IoFailed`
 */
export async function openEventLog(options: EventLogOptions): Promise<EventLog> {
  if (options?.encryption === undefined) return EventLog.open(options, () => Promise.resolve(plainCodec));
  if (options.readOnly === true) {
    return EventLog.open(options, async (fs, hashers, hasSegments) =>
      EncryptedCodec.open(fs, options.dir, options.encryption as EncryptionOptions, hashers, hasSegments, true),
    );
  }
  return EventLog.open(options, async (fs, hashers, hasSegments) =>
    EncryptedCodec.open(fs, options.dir, options.encryption as EncryptionOptions, hashers, hasSegments),
  );
}

/** What a traced append publishes (docs/guides/observability.md): never a payload. */
export interface LogAppendContext {
  readonly dir: string;
  readonly events: number;
  readonly sync: SyncMode;
}

/** What a traced flush publishes. */
export interface LogFlushContext {
  readonly dir: string;
  /** The position the flush makes durable. */
  readonly head: number;
}

/** The tracing channels of the event log: `weft:eventlog:append` (appends and batches) and `weft:eventlog:flush`. */
export const logAppendChannel = weftChannel<LogAppendContext>('weft:eventlog:append');
export const logFlushChannel = weftChannel<LogFlushContext>('weft:eventlog:flush');

/** The options of an append given none (shared, not made per call). */
const noOptions: AppendOptions = Object.freeze({});

/** The receipt of a new batch; its durability promise is made only when asked for (most appends never await it). */
class Receipt implements AppendReceipt {
  readonly events: AppendedEvent[];
  readonly position: number;
  readonly duplicate = false;
  readonly #serial: number;
  readonly #durability: DurabilityTracker;
  #durable: Promise<void> | undefined;

  constructor(batch: AcceptedBatch, durability: DurabilityTracker) {
    this.events = batch.events;
    this.position = batch.lastPosition;
    this.#serial = batch.serial;
    this.#durability = durability;
  }

  get durable(): Promise<void> {
    this.#durable ??= this.#durability.whenDurable(this.#serial);
    return this.#durable;
  }
}

/** An open event log. See {@link openEventLog}. */
export class EventLog implements AsyncDisposable {
  readonly dir: string;
  readonly sync: SyncMode;
  readonly #fs: LogFileSystem;
  readonly #lock: DirectoryLock;
  readonly #hashers: Hashers;
  #codec: PayloadCodec = plainCodec;
  readonly #writer: SegmentWriter;
  readonly #index = new LogIndex();
  readonly #pipeline: AppendPipeline;
  readonly #hlc: HybridLogicalClock;
  readonly #syncIntervalMs: number;
  readonly #projections = new Projections();
  readonly #reader: FrameReader;
  #closed = false;
  #intervalTimer: NodeJS.Timeout | undefined;
  readonly #written = new Notifier();
  readonly readOnly: boolean;
  readonly #pollIntervalMs: number;

  private constructor(options: EventLogOptions, fs: LogFileSystem, hashers: Hashers) {
    this.dir = options.dir;
    this.sync = options.sync ?? 'group';
    this.#fs = fs;
    this.#lock = new DirectoryLock(fs, options.dir);
    this.#hashers = hashers;
    this.#writer = new SegmentWriter({
      dir: options.dir,
      fs,
      sync: this.sync,
      segmentBytes: options.segmentBytes ?? 64 * 1024 * 1024,
      beforeWrite: async () => {
        await this.#codec.beforeWrite?.();
      },
      onFrameWritten: (position, segmentIndex, offset, size) => {
        this.#index.locations.set(position, segmentIndex, offset, size);
      },
      wake: () => this.#written.notify(),
    });
    this.#reader = new FrameReader({
      segments: this.#writer.segments,
      locations: this.#index.locations,
      queuedFrame: (position) => this.#writer.queuedFrame(position),
      hashers,
      codec: () => this.#codec,
    });
    const clock = options.clock ?? Date.now;
    this.#hlc = new HybridLogicalClock(clock);
    this.#pipeline = new AppendPipeline({
      index: this.#index,
      writer: this.#writer,
      hashers,
      hlc: this.#hlc,
      clock,
      maxPayloadBytes: options.maxPayloadBytes ?? 16 * 1024 * 1024,
      gates: options.gates ?? [],
      codec: () => this.#codec,
    });
    this.#syncIntervalMs = options.syncIntervalMs ?? 100;
    this.readOnly = options.readOnly === true;
    this.#pollIntervalMs = options.pollIntervalMs ?? 250;
  }

  /** @internal */
  static async open(
    options: EventLogOptions,
    makeCodec: (fs: LogFileSystem, hashers: Hashers, hasSegments: boolean) => Promise<PayloadCodec>,
  ): Promise<EventLog> {
    if (typeof options?.dir !== 'string' || options.dir === '') throw invalidArgument('dir must be a non-empty path');
    const sync = options.sync ?? 'group';
    if (!['always', 'group', 'interval', 'none'].includes(sync))
      throw invalidArgument(`sync must be always, group, interval or none, got ${String(sync)}`);
    for (const [name, value] of [
      ['segmentBytes', options.segmentBytes],
      ['maxPayloadBytes', options.maxPayloadBytes],
      ['syncIntervalMs', options.syncIntervalMs],
    ] as const) {
      if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) throw invalidArgument(`${name} must be a positive integer`);
    }
    const fs = options.fs ?? nodeFileSystem;
    const hashers = await loadHashers();
    const log = new EventLog(options, fs, hashers);
    if (log.readOnly && !(await fs.exists(options.dir))) throw invalidArgument(`${options.dir} holds no log`);
    if (!log.readOnly) await log.#lock.acquire();
    try {
      const names = await fs.readdir(options.dir);
      // A log that has a keyset is encrypted: written to without its keys, it would take plaintext that no shred erases.
      if (options.encryption === undefined && !log.readOnly && names.includes(keysetFileName)) {
        throw invalidArgument(
          `${options.dir} holds an encrypted log (it has a keyset): open it with the encryption option ` +
            '(weft log: --encrypted) to write to it, or read-only without keys (verify reads hashes and chains only)',
        );
      }
      const hasSegments = names.some((name) => segmentPattern.test(name));
      log.#codec = await makeCodec(fs, hashers, hasSegments);
      await log.#recover();
    } catch (error) {
      if (!log.readOnly) await log.#lock.release().catch(() => undefined);
      throw error;
    }
    if (sync === 'interval' && !log.readOnly) {
      log.#intervalTimer = setInterval(() => void log.flush().catch(() => undefined), log.#syncIntervalMs);
      unrefTimer(log.#intervalTimer);
    }
    return log;
  }

  /** The filesystem seam this log uses (a sync layer keeps its state next to the log with it). */
  get fileSystem(): LogFileSystem {
    return this.#fs;
  }

  /** Position of the last accepted event (0 when empty). */
  get head(): number {
    return this.#index.head;
  }

  /** Position of the last durable event. */
  get durableHead(): number {
    return this.#writer.durableHead;
  }

  /** The entity's current sequence (0 when it has no events). */
  sequenceOf(entity: string): number {
    return this.#index.sequenceOf(entity);
  }

  /**
   * Makes the last 6 bytes of every event id this log generates from now on
   * `tag` (the ids of events appended before are left as they are). A sync
   * layer tags its device's events so that an id names its author.
   *
   * @throws {LogError} `InvalidArgument` unless `tag` is 6 bytes
   */
  tagIds(tag: Uint8Array): void {
    if (!(tag instanceof Uint8Array) || tag.length !== 6)
      throw new EventLogError(EventLogErrorCode.InvalidArgument, 'an id tag is 6 bytes');
    this.#pipeline.idTag = new Uint8Array(tag);
  }

  /** Whether an event id is in the log. */
  has(id: string): boolean {
    return this.#index.byId.has(id);
  }

  /** Entities with at least one event. */
  entities(): string[] {
    return [...this.#index.entities.keys()];
  }

  // ------------------------------------------------------------------ appends

  /**
   * Appends one event.
   *
   * @throws {EventLogError} `InvalidArgument`, `SequenceMismatch`, `GateDenied`, `IoFailed`, `Closed`
   */
  append(input: AppendInput, options: AppendOptions = noOptions): Promise<AppendReceipt> {
    return this.appendBatch([input], options);
  }

  /**
   * Appends events atomically: after a crash either all of them are in the
   * log or none is. At most 65535 events.
   *
   * @throws {EventLogError} `InvalidArgument`, `SequenceMismatch`, `GateDenied`, `IoFailed`, `Closed`
   */
  appendBatch(inputs: readonly AppendInput[], options: AppendOptions = noOptions): Promise<AppendReceipt> {
    if (logAppendChannel.hasSubscribers !== false) {
      const events = Array.isArray(inputs) ? inputs.length : 0;
      return logAppendChannel.tracePromise(() => this.#appendBatch(inputs, options), { dir: this.dir, events, sync: this.sync });
    }
    return this.#appendBatch(inputs, options);
  }

  async #appendBatch(inputs: readonly AppendInput[], options: AppendOptions): Promise<AppendReceipt> {
    const batch = this.#accept(inputs, options, false);
    if (!('frames' in batch)) return batch;
    if (this.sync !== 'none') await batch.written.promise;
    else if (this.#writer.backlogged) await this.#writer.waitForRoom();
    return this.#receipt(batch);
  }

  /** @internal appends events of reserved kinds (the log's own mechanism). */
  async appendReserved(inputs: readonly AppendInput[]): Promise<AppendReceipt> {
    const batch = this.#accept(inputs, {}, true);
    if (!('frames' in batch)) return batch;
    await batch.written.promise;
    return this.#receipt(batch);
  }

  #receipt(batch: AcceptedBatch): AppendReceipt {
    return new Receipt(batch, this.#writer.durability);
  }

  #accept(inputs: readonly AppendInput[], options: AppendOptions, reserved: boolean): AcceptedBatch | AppendReceipt {
    this.#assertWritable();
    return this.#pipeline.accept(inputs, options, reserved);
  }

  // -------------------------------------------------------------- durability

  /**
   * Writes everything accepted so far and fsyncs it; resolves once every
   * event accepted before the call is durable.
   *
   * @throws {EventLogError} `IoFailed`, `Closed`
   */
  flush(): Promise<void> {
    const head = this.#index.head;
    if (logFlushChannel.hasSubscribers !== false)
      return logFlushChannel.tracePromise(() => this.#writer.flush(head), { dir: this.dir, head });
    return this.#writer.flush(head);
  }

  // ------------------------------------------------------------------- reads

  /**
   * The event with this id, or `undefined`.
   *
   * @throws {EventLogError} `IoFailed`, `InvalidFrame` for damaged bytes
   */
  async get(id: string): Promise<LogEvent | undefined> {
    this.#assertOpen();
    const position = this.#index.byId.get(id);
    return position === undefined ? undefined : this.#reader.readAt(position);
  }

  /** The event at a position, or `undefined` past the head. */
  async at(position: number): Promise<LogEvent | undefined> {
    this.#assertOpen();
    if (!Number.isSafeInteger(position) || position < 1 || position > this.#index.head) return undefined;
    return this.#reader.readAt(position);
  }

  /**
   * An entity's events from a sequence (default 1), in order: read through
   * the index (positions of each entity, rebuilt at open), in steps of up to
   * 256 events, without scanning the log.
   */
  readEntity(entity: string, fromSequence = 1): AsyncIterableIterator<LogEvent> {
    return new ItemsOf(this.#readEntityArrays(entity, fromSequence));
  }

  async *#readEntityArrays(entity: string, fromSequence: number): AsyncGenerator<LogEvent[]> {
    this.#assertOpen();
    const state = this.#index.entities.get(entity);
    if (state === undefined) return;
    for (let index = Math.max(0, fromSequence - 1); index < state.positions.length; index += entityStep) {
      yield await this.#reader.readMany(state.positions.slice(index, index + entityStep));
    }
  }

  /**
   * The whole log from a position (default 1), in order, streamed from the
   * segment files. With `{ payloads: false }` encrypted payloads are not
   * opened (for counting, listing, stats): they read as empty with
   * disposition `sealed`, or `shredded` when their key is destroyed.
   */
  read(fromPosition = 1, options: { payloads?: boolean } = {}): AsyncIterableIterator<LogEvent> {
    // Events are decoded in arrays and handed out one at a time without a generator step each (ItemsOf).
    return new ItemsOf(this.#readArrays(fromPosition, options.payloads !== false));
  }

  async *#readArrays(fromPosition: number, open: boolean): AsyncGenerator<LogEvent[]> {
    this.#assertOpen();
    await this.#writer.drain();
    const end = this.#writer.writtenHead;
    for await (const frames of this.#reader.scan(Math.max(1, fromPosition), end)) {
      const events: LogEvent[] = [];
      try {
        for (const frame of frames) events.push(this.#reader.toEvent(frame, open));
      } catch (error) {
        // The events before one that cannot be read are still handed out, then the error.
        if (events.length > 0) yield events;
        throw error;
      }
      yield events;
    }
  }

  /**
   * Events from a position (default 1), then `caughtUp`, then live appends as
   * they are written, until `signal` aborts, the loop breaks, or the log closes.
   */
  async *subscribe(options: { from?: number; entity?: string; signal?: AbortSignal } = {}): AsyncGenerator<SubscriptionItem> {
    this.#assertOpen();
    const signal = options.signal;
    let next = Math.max(1, options.from ?? 1);
    const matches = (event: LogEvent) => options.entity === undefined || event.entity === options.entity;
    await this.#writer.drain();
    let caughtUp = false;
    while (!signal?.aborted && !this.#closed) {
      const end = this.#writer.writtenHead;
      if (next <= end) {
        for await (const frames of this.#reader.scan(next, end)) {
          for (const frame of frames) {
            const event = this.#reader.toEvent(frame);
            next = event.position + 1;
            if (matches(event)) yield { type: 'event', event };
            if (signal?.aborted || this.#closed) return;
          }
        }
        next = end + 1;
      }
      if (!caughtUp) {
        caughtUp = true;
        yield { type: 'caughtUp', position: end };
        continue;
      }
      if (this.readOnly) {
        await pause(this.#pollIntervalMs, signal);
        if (!this.#closed) await this.refresh();
      } else if (!this.#closed) await this.#written.wait(signal);
    }
  }

  // ------------------------------------------------------------ causal walks

  /** Every event reachable through causal parents from `id` (itself excluded), and the parents missing from the log. */
  async ancestors(id: EventId): Promise<CausalWalk> {
    this.#assertOpen();
    const start = await this.get(id);
    if (start === undefined) throw new EventLogError(EventLogErrorCode.NotFound, `no event ${id}`);
    return ancestorsOf(start, (parent) => this.get(parent));
  }

  /** Every event that has `id` among its causal ancestors. */
  async descendants(id: EventId): Promise<CausalWalk> {
    this.#assertOpen();
    if (!this.#index.byId.has(id)) throw new EventLogError(EventLogErrorCode.NotFound, `no event ${id}`);
    return descendantsOf(id, this.#index.children, (child) => this.get(child));
  }

  /** Parent ids referenced by events in the log that are not in the log themselves. */
  missingParents(): EventId[] {
    return this.#index.missingParents();
  }

  // -------------------------------------------------------------- projections

  /**
   * Folds events with `reducer`: one entity's (`entity`) or the whole log's,
   * filtered by `filter`. With `cacheKey`, the folded state and the position
   * it covers are cached and the next call folds only newer events; the cache
   * is dropped when the event at its position no longer has the same hash
   * (the log it was computed from is not this one). The reducer must not
   * mutate the state it receives.
   */
  async project<State>(
    options: { entity?: string; filter?: (event: LogEvent) => boolean; cacheKey?: string },
    reducer: (state: State, event: LogEvent) => State,
    initial: State,
  ): Promise<{ state: State; position: number }> {
    this.#assertOpen();
    return this.#projections.project(this, options, reducer, initial);
  }

  /** Drops cached projection states (all, or one key). */
  invalidateProjections(cacheKey?: string): void {
    this.#projections.invalidate(cacheKey);
  }

  // ------------------------------------------------------------------ verify

  /**
   * Reads every frame and checks CRCs, the header fields, positions,
   * sequences and every entity's hash chain. Reports the first bad frame.
   */
  async verify(options: { onProgress?: (bytesDone: number, bytesTotal: number) => void } = {}): Promise<VerifyResult> {
    this.#assertOpen();
    await this.#writer.drain();
    return verifySegments(this.#writer.segments, this.#reader, this.#hashers, options.onProgress);
  }

  // ---------------------------------------------------------------- recovery

  async #recover(): Promise<void> {
    await recoverSegments(this.#recovery());
  }

  /** What recovery and refresh index frames into. */
  #recovery(): RecoveryTarget {
    return {
      fs: this.#fs,
      dir: this.dir,
      readOnly: this.readOnly,
      crc32c: this.#hashers.crc32c,
      writer: this.#writer,
      head: () => this.#index.head,
      index: (header, segmentIndex, offset, size) => this.#indexFrame(header, segmentIndex, offset, size),
    };
  }

  /**
   * Read-only logs: picks up what the writer appended since the last look
   * (new frames, new segments, new keys). Returns how many events arrived.
   * A writable log already knows everything; for it this returns 0.
   */
  async refresh(): Promise<number> {
    this.#assertOpen();
    if (!this.readOnly) return 0;
    const before = this.#index.head;
    await refreshSegments(this.#recovery(), () => this.#codec.reload?.() ?? Promise.resolve());
    this.#writer.recovered(this.#index.head);
    if (this.#index.head > before) this.#written.notify();
    return this.#index.head - before;
  }

  #indexFrame(header: FrameHeader, segmentIndex: number, offset: number, size: number): void {
    this.#codec.checkRecovered?.(header);
    this.#index.indexFrame(header, segmentIndex, offset, size);
    this.#hlc.observe(header.time);
  }

  // ------------------------------------------------------------------- locks

  // ------------------------------------------------------------- encryption

  /**
   * Crypto-shreds: durably destroys every key matching `target` (all fields
   * given must match: `{ scope }`, `{ entity }`, `{ scope, kind }`,
   * `{ eventId }`). Reads of their events return disposition `shredded`;
   * hashes, chains and `verify()` still pass. Cached projection states are
   * dropped, so no plaintext survives in a cache.
   *
   * @returns how many keys were destroyed
   * @throws {EventLogError} `InvalidArgument` when the log is not encrypted, `IoFailed`
   */
  async shred(target: ShredTarget): Promise<number> {
    this.#assertWritable();
    if (this.#codec.shred === undefined) throw invalidArgument('shred needs an encrypted log (open it with encryption)');
    if (typeof target !== 'object' || target === null || Object.keys(target).length === 0) {
      throw invalidArgument('shred needs a target: { scope }, { entity }, { scope, kind } or { eventId }');
    }
    const count = await this.#codec.shred(target);
    this.#projections.invalidate();
    return count;
  }

  /**
   * Copies the log's segment files (and, only with `includeKeyset: true`,
   * its keyset) to another directory. Without the keyset the copy is
   * ciphertext only. The destination must not contain a log.
   */
  async exportTo(
    destination: { dir: string; fs?: LogFileSystem },
    options: { includeKeyset?: boolean } = {},
  ): Promise<{ files: string[] }> {
    this.#assertOpen();
    await this.flush();
    const fs = destination.fs ?? this.#fs;
    await fs.mkdir(destination.dir);
    if ((await fs.readdir(destination.dir)).some((name) => segmentPattern.test(name))) {
      throw invalidArgument(`${destination.dir} already holds a log`);
    }
    const names = this.#writer.segments.map((segment) => segment.name);
    if (options.includeKeyset === true && (await this.#fs.exists(joinPath(this.dir, keysetFileName)))) names.push(keysetFileName);
    for (const name of names) {
      const source = await this.#fs.open(joinPath(this.dir, name));
      const target = await fs.open(joinPath(destination.dir, name), { create: true, exclusive: true });
      try {
        const size = await source.size();
        for (let offset = 0; offset < size; offset += scanChunkBytes) {
          const chunk = await source.read(offset, Math.min(scanChunkBytes, size - offset));
          let written = 0;
          while (written < chunk.length) written += await target.write(chunk.subarray(written), offset + written);
        }
        await target.sync();
      } finally {
        await source.close();
        await target.close();
      }
    }
    await fs.syncDir(destination.dir);
    return { files: names };
  }

  // ------------------------------------------------------------------- close

  /**
   * Writes and fsyncs everything accepted, then closes the files and
   * releases the directory. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#intervalTimer);
    let failure: unknown;
    if (this.#writer.failure === undefined && !this.readOnly) {
      try {
        await this.flush();
      } catch (error) {
        failure = error;
      }
    }
    this.#closed = true;
    this.#written.notify();
    this.#writer.rejectDurable(new EventLogError(EventLogErrorCode.Closed, 'the log was closed'));
    for (const segment of this.#writer.segments) await segment.file.close().catch(() => undefined);
    if (!this.readOnly) await this.#lock.release();
    if (failure !== undefined) throw failure;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new EventLogError(EventLogErrorCode.Closed, 'the log is closed');
  }

  #assertWritable(): void {
    this.#assertOpen();
    if (this.readOnly) throw new EventLogError(EventLogErrorCode.InvalidArgument, 'the log was opened read-only');
    if (this.#writer.failure !== undefined) {
      throw new EventLogError(EventLogErrorCode.Closed, `the log failed earlier and must be reopened: ${this.#writer.failure.message}`, {
        cause: this.#writer.failure,
      });
    }
  }
}
