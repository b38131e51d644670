import { Notifier, pause } from '@weft/common';
import { type AcceptView, checkBatchOptions, checkEvents, checkPreconditions } from './append-checks.js';
import { ancestorsOf, descendantsOf } from './causal.js';
import { decodeSegmentHeader, encodeFrame, type FrameHeader, segmentHeaderSize } from './codec.js';
import { EncryptedCodec, type EncryptionOptions } from './crypto/encrypted-codec.js';
import { keysetFileName, type ShredTarget } from './crypto/keyset.js';
import { EventLogError, EventLogErrorCode } from './errors.js';
import { FrameReader } from './frame-reader.js';
import { nodeFileSystem } from './fs/node-fs.js';
import { joinPath, type LogFile, type LogFileSystem } from './fs/types.js';
import { type Hashers, loadHashers } from './hash.js';
import { type EventId, HybridLogicalClock, UuidV7Generator } from './ids.js';
import { DirectoryLock } from './lock.js';
import { type PayloadCodec, plainCodec } from './payload-codec.js';
import { Projections } from './projections.js';
import { indexFrames, type RecoveryTarget, recoverSegments } from './recovery.js';
import { invalidArgument, isReservedKind, labelPrefix, segmentPattern } from './rules.js';
import { deferred, type EntityState, LocationIndex, type PendingBatch } from './structures.js';
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
import { equalBytes } from './util.js';
import { SegmentWriter } from './writer.js';

/** Options of {@link openEventLog}. */
export interface EventLogOptions {
  /** The log's directory; created when missing. */
  readonly dir: string;
  /** @default 'group' */
  readonly sync?: SyncMode;
  /** For `sync: 'interval'`, milliseconds between fsyncs. @default 100 */
  readonly syncIntervalMs?: number;
  /** The filesystem seam. @default the real filesystem */
  readonly fs?: LogFileSystem;
  /** A segment file is closed and a new one started once it reaches this size. @default 64 MiB */
  readonly segmentBytes?: number;
  /** The largest payload accepted. @default 16 MiB */
  readonly maxPayloadBytes?: number;
  /** Gates run, in order, inside the writer's critical section for every append. */
  readonly gates?: readonly Gate[];
  /** Wall-clock source for event ids and timestamps. @default Date.now */
  readonly clock?: () => number;
  /** Encrypt every non-reserved payload (see the README): `{ granularity, masterKey }`. */
  readonly encryption?: EncryptionOptions;
  /**
   * Open for reading only, next to a writer in another process: no lock is
   * taken and nothing is written or repaired; `refresh()` (and subscriptions,
   * every `pollIntervalMs`) pick up what the writer appended since.
   */
  readonly readOnly?: boolean;
  /** For read-only logs: how often subscriptions look for new appends. @default 250 */
  readonly pollIntervalMs?: number;
}

const zeroHash = new Uint8Array(32);
const scanChunkBytes = 4 * 1024 * 1024;

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

/** An open event log. See {@link openEventLog}. */
export class EventLog implements AsyncDisposable {
  readonly dir: string;
  readonly sync: SyncMode;
  readonly #fs: LogFileSystem;
  readonly #lock: DirectoryLock;
  readonly #hashers: Hashers;
  #codec: PayloadCodec = plainCodec;
  readonly #writer: SegmentWriter;
  readonly #maxPayloadBytes: number;
  readonly #syncIntervalMs: number;
  readonly #gates: readonly Gate[];
  readonly #ids: UuidV7Generator;
  readonly #clockSource: () => number;
  readonly #hlc: HybridLogicalClock;
  readonly #locations = new LocationIndex();
  readonly #byId = new Map<string, number>();
  readonly #entities = new Map<string, EntityState>();
  readonly #idempotency = new Map<string, { events: AppendedEvent[]; durable: Promise<void> }>();
  readonly #children = new Map<string, EventId[]>();
  readonly #unwritten = new Map<number, Uint8Array>();
  readonly #projections = new Projections();
  readonly #reader: FrameReader;
  /** What the append checks read of this log (made once: appends are the hot path). */
  readonly #acceptView: AcceptView;
  /** During recovery: the idempotent batch whose later frames are being read. */
  #recoveringReceipt: { events: AppendedEvent[]; durable: Promise<void> } | undefined;
  #head = 0;
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
        this.#locations.set(position, segmentIndex, offset, size);
        this.#unwritten.delete(position);
      },
      wake: () => this.#written.notify(),
    });
    const log = this;
    this.#acceptView = {
      get maxPayloadBytes() {
        return log.#maxPayloadBytes;
      },
      get gates() {
        return log.#gates;
      },
      get head() {
        return log.#head;
      },
      has: (id) => this.#byId.has(id),
      sequenceOf: (entity) => this.sequenceOf(entity),
    };
    this.#reader = new FrameReader({
      segments: this.#writer.segments,
      locations: this.#locations,
      unwritten: this.#unwritten,
      hashers,
      codec: () => this.#codec,
    });
    this.#maxPayloadBytes = options.maxPayloadBytes ?? 16 * 1024 * 1024;
    this.#syncIntervalMs = options.syncIntervalMs ?? 100;
    this.#gates = options.gates ?? [];
    this.#clockSource = options.clock ?? Date.now;
    this.#ids = new UuidV7Generator();
    this.readOnly = options.readOnly === true;
    this.#pollIntervalMs = options.pollIntervalMs ?? 250;
    this.#hlc = new HybridLogicalClock(this.#clockSource);
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
      const hasSegments = (await fs.readdir(options.dir)).some((name) => segmentPattern.test(name));
      log.#codec = await makeCodec(fs, hashers, hasSegments);
      await log.#recover();
    } catch (error) {
      if (!log.readOnly) await log.#lock.release().catch(() => undefined);
      throw error;
    }
    if (sync === 'interval' && !log.readOnly) {
      log.#intervalTimer = setInterval(() => void log.flush().catch(() => undefined), log.#syncIntervalMs);
      log.#intervalTimer.unref();
    }
    return log;
  }

  /** The filesystem seam this log uses (a sync layer keeps its state next to the log with it). */
  get fileSystem(): LogFileSystem {
    return this.#fs;
  }

  /** Position of the last accepted event (0 when empty). */
  get head(): number {
    return this.#head;
  }

  /** Position of the last durable event. */
  get durableHead(): number {
    return this.#writer.durableHead;
  }

  /** The entity's current sequence (0 when it has no events). */
  sequenceOf(entity: string): number {
    return this.#entities.get(entity)?.sequence ?? 0;
  }

  /** Whether an event id is in the log. */
  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** Entities with at least one event. */
  entities(): string[] {
    return [...this.#entities.keys()];
  }

  // ------------------------------------------------------------------ appends

  /**
   * Appends one event.
   *
   * @throws {EventLogError} `InvalidArgument`, `SequenceMismatch`, `GateDenied`, `IoFailed`, `Closed`
   */
  append(input: AppendInput, options: AppendOptions = {}): Promise<AppendReceipt> {
    return this.appendBatch([input], options);
  }

  /**
   * Appends events atomically: after a crash either all of them are in the
   * log or none is. At most 65535 events.
   *
   * @throws {EventLogError} `InvalidArgument`, `SequenceMismatch`, `GateDenied`, `IoFailed`, `Closed`
   */
  async appendBatch(inputs: readonly AppendInput[], options: AppendOptions = {}): Promise<AppendReceipt> {
    const batch = this.#accept(inputs, options, false);
    if (!('frames' in batch)) return batch;
    if (this.sync !== 'none') await batch.written.promise;
    return this.#receipt(batch);
  }

  /** @internal appends events of reserved kinds (the log's own mechanism). */
  async appendReserved(inputs: readonly AppendInput[]): Promise<AppendReceipt> {
    const batch = this.#accept(inputs, {}, true);
    if (!('frames' in batch)) return batch;
    await batch.written.promise;
    return this.#receipt(batch);
  }

  #receipt(batch: PendingBatch & { events?: AppendedEvent[] }): AppendReceipt {
    const events = (batch as { events: AppendedEvent[] }).events;
    return { events, position: batch.lastPosition, duplicate: false, durable: batch.durable.promise };
  }

  /** Validates, runs gates and checks, assigns positions and queues the frames: the critical section, synchronous. */
  #accept(
    inputs: readonly AppendInput[],
    options: AppendOptions,
    reserved: boolean,
  ): (PendingBatch & { events: AppendedEvent[] }) | AppendReceipt {
    this.#assertWritable();
    const { idempotencyKey, label } = checkBatchOptions(inputs, options);
    if (idempotencyKey !== undefined) {
      const earlier = this.#idempotency.get(idempotencyKey);
      if (earlier !== undefined) {
        return { events: earlier.events, position: earlier.events.at(-1)?.position ?? 0, duplicate: true, durable: earlier.durable };
      }
    }
    const events = checkEvents(inputs, reserved, this.#acceptView);
    checkPreconditions(inputs, events, options, this.#acceptView);

    // Everything below changes state; each change records how to undo it if the write fails.
    const undo: Array<() => void> = [];
    const frames: Uint8Array[] = [];
    const appended: AppendedEvent[] = [];
    const firstPosition = this.#head + 1;
    let bytes = 0;
    for (let index = 0; index < events.length; index++) {
      const { input, entity, scope, parents } = events[index] as (typeof events)[number];
      const position = ++this.#head;
      const id = input.id ?? this.#ids.next(this.#clockSource());
      let time: bigint;
      if (input.time === undefined) time = this.#hlc.tick();
      else {
        time = input.time;
        this.#hlc.observe(time);
      }
      let state = this.#entities.get(entity);
      if (state === undefined) {
        const created: EntityState = { sequence: 0, lastHash: zeroHash, positions: [] };
        state = created;
        this.#entities.set(entity, created);
        undo.push(() => this.#entities.delete(entity));
      }
      const entityState = state;
      const previousHash = entityState.lastHash;
      const sealed = this.#codec.seal({
        id,
        entity,
        scope,
        kind: input.kind,
        payload: input.payload,
        reserved: isReservedKind(input.kind),
      });
      const hash = this.#hashers.blake3(previousHash, sealed.stored);
      const sequence = entityState.sequence + 1;
      const header: FrameHeader = {
        kind: input.kind,
        id,
        time,
        position,
        sequence,
        batchIndex: index,
        batchCount: events.length,
        hash,
        entity,
        scope,
        causationId: input.causationId,
        correlationId: input.correlationId,
        parents,
        idempotencyKey: index === 0 ? (idempotencyKey ?? label) : undefined,
        encryption: sealed.encryption,
      };
      const frame = encodeFrame(header, sealed.stored, this.#hashers.crc32c);
      frames.push(frame);
      bytes += frame.length;
      entityState.sequence = sequence;
      entityState.lastHash = hash;
      entityState.positions.push(position);
      this.#byId.set(id, position);
      this.#unwritten.set(position, frame);
      for (const parent of parents) {
        const children = this.#children.get(parent) ?? [];
        children.push(id);
        this.#children.set(parent, children);
      }
      undo.push(() => {
        entityState.sequence = sequence - 1;
        entityState.lastHash = previousHash;
        entityState.positions.pop();
        this.#byId.delete(id);
        this.#unwritten.delete(position);
        for (const parent of parents) this.#children.get(parent)?.pop();
      });
      appended.push({ id, entity, position, sequence });
    }
    const batch: PendingBatch & { events: AppendedEvent[] } = {
      frames,
      firstPosition,
      lastPosition: this.#head,
      bytes,
      undo,
      written: deferred<void>(),
      durable: deferred<void>(),
      events: appended,
    };
    // A rejection nobody awaits must not crash the process; callers see it through their own await.
    batch.written.promise.catch(() => undefined);
    batch.durable.promise.catch(() => undefined);
    if (idempotencyKey !== undefined) {
      this.#idempotency.set(idempotencyKey, { events: appended, durable: batch.durable.promise });
      undo.push(() => this.#idempotency.delete(idempotencyKey));
    }
    undo.push(() => {
      this.#head = firstPosition - 1;
    });
    this.#writer.enqueue(batch);
    return batch;
  }

  // -------------------------------------------------------------- durability

  /**
   * Writes everything accepted so far and fsyncs it; resolves once every
   * event accepted before the call is durable.
   *
   * @throws {EventLogError} `IoFailed`, `Closed`
   */
  flush(): Promise<void> {
    return this.#writer.flush(this.#head);
  }

  // ------------------------------------------------------------------- reads

  /**
   * The event with this id, or `undefined`.
   *
   * @throws {EventLogError} `IoFailed`, `InvalidFrame` for damaged bytes
   */
  async get(id: string): Promise<LogEvent | undefined> {
    this.#assertOpen();
    const position = this.#byId.get(id);
    return position === undefined ? undefined : this.#reader.readAt(position);
  }

  /** The event at a position, or `undefined` past the head. */
  async at(position: number): Promise<LogEvent | undefined> {
    this.#assertOpen();
    if (!Number.isSafeInteger(position) || position < 1 || position > this.#head) return undefined;
    return this.#reader.readAt(position);
  }

  /** An entity's events from a sequence (default 1), in order. */
  async *readEntity(entity: string, fromSequence = 1): AsyncGenerator<LogEvent> {
    this.#assertOpen();
    const state = this.#entities.get(entity);
    if (state === undefined) return;
    for (let index = Math.max(0, fromSequence - 1); index < state.positions.length; index++) {
      const position = state.positions[index];
      if (position === undefined) return;
      yield await this.#reader.readAt(position);
    }
  }

  /** The whole log from a position (default 1), in order, streamed from the segment files. */
  async *read(fromPosition = 1): AsyncGenerator<LogEvent> {
    this.#assertOpen();
    await this.#writer.drain();
    const end = this.#writer.writtenHead;
    for await (const frame of this.#reader.scan(Math.max(1, fromPosition), end)) yield this.#reader.toEvent(frame);
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
        for await (const frame of this.#reader.scan(next, end)) {
          const event = this.#reader.toEvent(frame);
          next = event.position + 1;
          if (matches(event)) yield { type: 'event', event };
          if (signal?.aborted || this.#closed) return;
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
    if (!this.#byId.has(id)) throw new EventLogError(EventLogErrorCode.NotFound, `no event ${id}`);
    return descendantsOf(id, this.#children, (child) => this.get(child));
  }

  /** Parent ids referenced by events in the log that are not in the log themselves. */
  missingParents(): EventId[] {
    return [...this.#children.keys()].filter((parent) => !this.#byId.has(parent)) as EventId[];
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
    const total = this.#writer.segments.reduce((sum, segment) => sum + segment.size, 0);
    let done = 0;
    let events = 0;
    let expectedPosition = 1;
    const chains = new Map<string, { hash: Uint8Array; sequence: number }>();
    for (const segment of this.#writer.segments) {
      for await (const item of this.#reader.frames(segment, segmentHeaderSize)) {
        const where = { segment: segment.name, offset: item.offset };
        if ('problem' in item) return { ok: false, events, ...where, position: undefined, problem: item.problem };
        const { header, payload, size } = item.frame;
        const fail = (problem: string): VerifyResult => ({ ok: false, events, ...where, position: header.position, problem });
        if (header.position !== expectedPosition) return fail(`position ${header.position}, expected ${expectedPosition}`);
        const chain = chains.get(header.entity) ?? { hash: zeroHash, sequence: 0 };
        if (header.sequence !== chain.sequence + 1) return fail(`sequence ${header.sequence}, expected ${chain.sequence + 1}`);
        const hash = this.#hashers.blake3(chain.hash, payload);
        if (!equalBytes(hash, header.hash)) return fail(`hash chain broken for entity '${header.entity}'`);
        chains.set(header.entity, { hash, sequence: header.sequence });
        expectedPosition++;
        events++;
        done += size;
        if (events % 1024 === 0) options.onProgress?.(done, total);
      }
    }
    options.onProgress?.(total, total);
    return { ok: true, events, segments: this.#writer.segments.length };
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
      head: () => this.#head,
      index: (header, segmentIndex, offset, size) => this.#index(header, segmentIndex, offset, size),
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
    const before = this.#head;
    // Frames are read before the keyset: the writer makes a key durable before any frame under it,
    // so a keyset read afterwards holds every key the frames read here need.
    const last = this.#writer.segments.at(-1);
    let tail: Uint8Array | undefined;
    if (last !== undefined) {
      const size = await last.file.size();
      if (size > last.size) tail = await last.file.read(last.size, size - last.size);
    }
    const known = new Set(this.#writer.segments.map((segment) => segment.name));
    const fresh = (await this.#fs.readdir(this.dir)).filter((name) => segmentPattern.test(name) && !known.has(name)).sort();
    const opened: { name: string; file: LogFile; bytes: Uint8Array }[] = [];
    for (const name of fresh) {
      const file = await this.#fs.open(joinPath(this.dir, name), { readOnly: true });
      const bytes = await file.read(0, await file.size());
      if (bytes.length < segmentHeaderSize) {
        await file.close();
        break;
      }
      opened.push({ name, file, bytes });
    }
    await this.#codec.reload?.();
    if (last !== undefined && tail !== undefined) {
      const padded = new Uint8Array(last.size + tail.length);
      padded.set(tail, last.size);
      const { validEnd } = indexFrames(this.#recovery(), padded, last.size, this.#writer.segments.length - 1);
      last.size = validEnd;
      last.durableSize = validEnd;
    }
    for (const [index, { name, file, bytes }] of opened.entries()) {
      if (Number(segmentPattern.exec(name)?.[1]) !== this.#head + 1) {
        for (const unused of opened.slice(index)) await unused.file.close();
        break;
      }
      const header = decodeSegmentHeader(bytes);
      const { validEnd } = indexFrames(this.#recovery(), bytes, segmentHeaderSize, this.#writer.segments.length);
      this.#writer.segments.push({ name, firstPosition: header.firstPosition, file, size: validEnd, durableSize: validEnd });
    }
    this.#writer.recovered(this.#head);
    if (this.#head > before) this.#written.notify();
    return this.#head - before;
  }

  #index(header: FrameHeader, segmentIndex: number, offset: number, size: number): void {
    this.#codec.checkRecovered?.(header);
    const position = header.position;
    this.#head = position;
    this.#locations.set(position, segmentIndex, offset, size);
    this.#byId.set(header.id, position);
    let state = this.#entities.get(header.entity);
    if (state === undefined) {
      state = { sequence: 0, lastHash: zeroHash, positions: [] };
      this.#entities.set(header.entity, state);
    }
    state.sequence = header.sequence;
    state.lastHash = header.hash;
    state.positions.push(position);
    this.#hlc.observe(header.time);
    for (const parent of header.parents) {
      const children = this.#children.get(parent) ?? [];
      children.push(header.id);
      this.#children.set(parent, children);
    }
    const appended = { id: header.id, entity: header.entity, position, sequence: header.sequence };
    if (header.batchIndex === 0) {
      this.#recoveringReceipt = undefined;
      if (header.idempotencyKey !== undefined && !header.idempotencyKey.startsWith(labelPrefix)) {
        this.#recoveringReceipt = { events: [appended], durable: Promise.resolve() };
        this.#idempotency.set(header.idempotencyKey, this.#recoveringReceipt);
      }
    } else {
      // Later frames of an idempotent batch join the receipt of its first frame.
      this.#recoveringReceipt?.events.push(appended);
    }
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
