import {
  defaultXChaCha,
  type EventId,
  type EventLog,
  EventLogError,
  type Hashers,
  type LogFileSystem,
  loadHashers,
  nobleXChaCha,
  nodeXChaCha,
  type XChaCha,
} from '@weft/eventlog';
import { KvError, KvErrorCode, type KvStore, type Version, type WatchCursor } from '@weft/kv';
import {
  decodeChangeset,
  decodeEnvelope,
  type Envelope,
  encodeChangeset,
  envelopeSignatureValid,
  openEnvelope,
  type SyncedEvent,
  sealEnvelope,
} from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { type DeviceIdentity, type DevicePublic, deviceIdOf } from './identity.js';
import { addRange, inRanges, StateFile, type SyncStateData, zeroHashHex } from './state.js';

/** The shared secret and members of a library, provisioned out of band. */
export interface LibraryConfig {
  /** The store id, bound into every ciphertext's AAD: `[A-Za-z0-9_-]+`. */
  readonly id: string;
  /** The library key, 32 bytes. */
  readonly key: Uint8Array;
  /** @default 0 */
  readonly keyGeneration?: number;
  /** Devices allowed to write changesets. */
  readonly members: readonly DevicePublic[];
}

/** The stages of a push, in order; a crash between any two is safe. */
export type PushStage = 'prepared' | 'created' | 'head-published' | 'done';

/** Hooks for fault simulation in tests. */
export interface SyncFaultHooks {
  /** Called at each push stage; throwing stops the push there, as a crash would. */
  readonly onPushStage?: (stage: PushStage, seq: number) => void;
}

/** Options of {@link openSync}. */
export interface SyncOptions {
  readonly log: EventLog;
  readonly kv: KvStore;
  readonly identity: DeviceIdentity;
  readonly library: LibraryConfig;
  /** The highest changeset schema this device understands, and the one it writes. @default 1 */
  readonly schemaVersion?: number;
  /** @default 256 */
  readonly maxEventsPerChangeset?: number;
  /**
   * `true`: watch heads, push on local appends and retry on a timer in the
   * background. `false`: only the heads watch runs; call `syncOnce()`.
   * @default true
   */
  readonly live?: boolean;
  /** Anti-entropy interval of the live mode: re-list heads and retry. @default 5000 */
  readonly pollIntervalMs?: number;
  /** Where the state file lives. @default the log's directory, through the log's filesystem */
  readonly stateDir?: string;
  readonly fs?: LogFileSystem;
  /** @default node:crypto when available */
  readonly cipher?: 'node' | 'noble';
  readonly clock?: () => number;
  readonly faults?: SyncFaultHooks;
}

/** Something that went wrong with another device's data: kept in the status for UIs and operators. */
export interface SyncAlarm {
  readonly code: SyncErrorCode;
  readonly device: string;
  readonly seq: number | undefined;
  readonly message: string;
  readonly at: number;
}

/** What a device knows about sync right now. */
export interface SyncStatus {
  readonly device: string;
  readonly lastPushedSeq: number;
  /** Own local events not yet pushed. */
  readonly pendingUploads: number;
  readonly devices: Readonly<
    Record<string, { readonly head: number; readonly applied: number; readonly lag: number; readonly stuck: string | undefined }>
  >;
  /** Events waiting for causal parents that have not arrived. */
  readonly waitingForParents: number;
  readonly rotationPending: boolean;
  readonly lastError: string | undefined;
  readonly alarms: readonly SyncAlarm[];
  /** Harmless repeats seen so far: events already in the log, and retried creates that found their own bytes. */
  readonly duplicates: { readonly events: number; readonly identicalRetries: number };
}

const maxAlarms = 100;
const hexOf = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const encoder = new TextEncoder();

interface HeadValue {
  readonly seq: number;
  readonly time: number;
}

function parseHead(value: Uint8Array): HeadValue | undefined {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(value)) as Partial<HeadValue>;
    if (typeof parsed.seq === 'number' && Number.isSafeInteger(parsed.seq) && parsed.seq >= 0)
      return { seq: parsed.seq, time: Number(parsed.time) || 0 };
  } catch {
    // a malformed head is ignored: heads are hints, changesets are verified
  }
  return undefined;
}

/**
 * Opens sync for one device: its local log replicated with the other
 * devices of a library through one KV bucket.
 *
 * @throws {SyncError} `InvalidArgument`, `StateFailed`
 */
export async function openSync(options: SyncOptions): Promise<Sync> {
  const library = options.library;
  if (typeof library?.id !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(library.id)) {
    throw new SyncError(SyncErrorCode.InvalidArgument, 'library.id must match [A-Za-z0-9_-]{1,128}');
  }
  if (!(library.key instanceof Uint8Array) || library.key.length !== 32)
    throw new SyncError(SyncErrorCode.InvalidArgument, 'library.key must be 32 bytes');
  if (!options.library.members.some((member) => member.deviceId === options.identity.deviceId)) {
    throw new SyncError(SyncErrorCode.InvalidArgument, `device ${options.identity.deviceId} is not a member of library ${library.id}`);
  }
  const fs = options.fs ?? options.log.fileSystem;
  const stateFile = new StateFile(fs, options.stateDir ?? options.log.dir);
  const state = await stateFile.load(options.identity.deviceId);
  const cipher = options.cipher === 'noble' ? nobleXChaCha : options.cipher === 'node' ? nodeXChaCha : defaultXChaCha();
  const sync = new Sync(options, stateFile, state, await loadHashers(), cipher);
  sync.start();
  return sync;
}

/** A device's sync engine. See {@link openSync}. */
export class Sync implements AsyncDisposable {
  readonly device: string;
  readonly #log: EventLog;
  readonly #kv: KvStore;
  readonly #identity: DeviceIdentity;
  readonly #library: LibraryConfig;
  readonly #members: Map<string, Uint8Array>;
  readonly #schemaVersion: number;
  readonly #maxEvents: number;
  readonly #live: boolean;
  readonly #pollIntervalMs: number;
  readonly #stateFile: StateFile;
  readonly #state: SyncStateData;
  readonly #hashers: Hashers;
  readonly #cipher: XChaCha;
  readonly #clock: () => number;
  readonly #faults: SyncFaultHooks;
  readonly #known = new Map<string, number>();
  readonly #stuck = new Map<string, string>();
  readonly #alarms: SyncAlarm[] = [];
  readonly #listeners = new Set<(status: SyncStatus) => void>();
  readonly #closing = new AbortController();
  #lastError: string | undefined;
  readonly #duplicates = { events: 0, identicalRetries: 0 };
  #chain: Promise<unknown> = Promise.resolve();
  #ownSeqChecked = false;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #watchTask: Promise<void> | undefined;
  #subscriptionTask: Promise<void> | undefined;

  /** @internal use {@link openSync} */
  constructor(options: SyncOptions, stateFile: StateFile, state: SyncStateData, hashers: Hashers, cipher: XChaCha) {
    this.device = options.identity.deviceId;
    this.#log = options.log;
    this.#kv = options.kv;
    this.#identity = options.identity;
    this.#library = options.library;
    this.#members = new Map(options.library.members.map((member) => [member.deviceId, member.publicKey]));
    this.#schemaVersion = options.schemaVersion ?? 1;
    this.#maxEvents = options.maxEventsPerChangeset ?? 256;
    this.#live = options.live ?? true;
    this.#pollIntervalMs = options.pollIntervalMs ?? 5000;
    this.#stateFile = stateFile;
    this.#state = state;
    this.#hashers = hashers;
    this.#cipher = cipher;
    this.#clock = options.clock ?? Date.now;
    this.#faults = options.faults ?? {};
    for (const [device, remote] of Object.entries(state.remote)) this.#known.set(device, remote.seq);
  }

  /** @internal starts the heads watch, and in live mode the local trigger and the retry timer. */
  start(): void {
    this.#watchTask = this.#watchHeads();
    if (!this.#live) return;
    this.#subscriptionTask = this.#followLocalAppends();
    this.#schedule(0);
  }

  // ------------------------------------------------------------------ status

  status(): SyncStatus {
    const devices: Record<string, { head: number; applied: number; lag: number; stuck: string | undefined }> = {};
    for (const [device, head] of this.#known) {
      if (device === this.device) continue;
      const applied = this.#state.remote[device]?.seq ?? 0;
      devices[device] = { head, applied, lag: Math.max(0, head - applied), stuck: this.#stuck.get(device) };
    }
    return {
      device: this.device,
      lastPushedSeq: this.#state.lastSeq,
      pendingUploads: this.#pendingUploads(),
      devices,
      waitingForParents: this.#state.parked.length,
      rotationPending: false,
      lastError: this.#lastError,
      alarms: [...this.#alarms],
      duplicates: { ...this.#duplicates },
    };
  }

  /** Calls `listener` with the status after every change; returns a function that unsubscribes. */
  onStatus(listener: (status: SyncStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(): void {
    if (this.#listeners.size === 0) return;
    const status = this.status();
    for (const listener of this.#listeners) listener(status);
  }

  #pendingUploads(): number {
    let pending = 0;
    for (let position = this.#state.pushedPosition + 1; position <= this.#log.head; position++) {
      if (!inRanges(this.#state.imported, position)) pending++;
    }
    return pending;
  }

  #alarm(error: SyncError): void {
    const last = this.#alarms.findLast(
      (alarm) => alarm.device === (error.device ?? '') && alarm.seq === error.seq && alarm.code === error.code,
    );
    this.#lastError = error.message;
    if (last !== undefined) return;
    this.#alarms.push({ code: error.code, device: error.device ?? '', seq: error.seq, message: error.message, at: this.#clock() });
    if (this.#alarms.length > maxAlarms) this.#alarms.shift();
    this.#lastError = error.message;
  }

  // ------------------------------------------------------------ orchestration

  /** Runs `work` after every earlier sync step, one at a time. */
  #exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(() => {
      this.#assertOpen();
      return work();
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /**
   * One full round: push every pending local event, then pull every
   * changeset the known heads announce.
   *
   * @returns how many changesets were pushed and pulled
   */
  syncOnce(): Promise<{ pushed: number; pulled: number }> {
    return this.#exclusive(async () => {
      let pushed = 0;
      while (await this.#pushOnce()) pushed++;
      const pulled = await this.#pullAll();
      this.#notify();
      return { pushed, pulled };
    });
  }

  /** Re-reads every head from the store (anti-entropy: heals missed watch events). */
  refreshHeads(): Promise<void> {
    return this.#exclusive(async () => {
      for await (const entry of this.#kv.scan('heads')) this.#learnHead(entry.key, entry.value);
    });
  }

  /**
   * Syncs until this device has pushed everything and applied every
   * changeset the store announces (or a device is stuck), or the timeout passes.
   *
   * @throws {SyncError} `Closed`; the last error when the timeout passes
   */
  async waitUntilCaughtUp(options: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = this.#clock() + (options.timeoutMs ?? 30_000);
    for (;;) {
      try {
        await this.refreshHeads();
        await this.syncOnce();
        if (this.#caughtUp()) return;
      } catch (error) {
        if (SyncError.is(error, SyncErrorCode.Closed)) throw error;
        this.#lastError = error instanceof Error ? error.message : String(error);
      }
      if (this.#clock() > deadline) {
        throw new SyncError(
          SyncErrorCode.MissingChangeset,
          `not caught up in time: ${this.#lastError ?? JSON.stringify(this.status().devices)}`,
        );
      }
      await sleep(50, this.#closing.signal);
    }
  }

  #caughtUp(): boolean {
    if (this.#pendingUploads() > 0 || this.#state.pending !== undefined) return false;
    for (const [device, head] of this.#known) {
      if (device === this.device || this.#stuck.has(device)) continue;
      if ((this.#state.remote[device]?.seq ?? 0) < head) return false;
    }
    return true;
  }

  #schedule(delayMs: number): void {
    if (this.#closed || !this.#live) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#tick(), delayMs);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    try {
      await this.refreshHeads();
      await this.syncOnce();
      this.#failures = 0;
      this.#lastError = undefined;
      this.#schedule(this.#pollIntervalMs);
    } catch (error) {
      if (this.#closed) return;
      this.#lastError = error instanceof Error ? error.message : String(error);
      this.#failures++;
      // Exponential backoff with jitter, independent of new writes.
      const base = Math.min(30_000, 100 * 2 ** Math.min(this.#failures, 8));
      this.#schedule(Math.floor(base * (0.5 + Math.random())));
      this.#notify();
    }
  }

  /** Live mode: local appends trigger a push soon. */
  async #followLocalAppends(): Promise<void> {
    try {
      for await (const item of this.#log.subscribe({ from: this.#log.head + 1, signal: this.#closing.signal })) {
        if (item.type === 'event' && !this.#closed) this.#schedule(10);
      }
    } catch {
      // the log closed: nothing more to follow
    }
  }

  /** Watches `heads`, resuming from the persisted cursor; re-lists when the cursor expired. */
  async #watchHeads(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      try {
        const from = this.#state.watchCursor as WatchCursor | undefined;
        const watch = this.#kv.watch({ prefixes: ['heads'], signal: this.#closing.signal, ...(from === undefined ? {} : { from }) });
        for await (const event of watch) {
          failures = 0;
          if (event.type === 'put') this.#learnHead(event.key, event.value);
          this.#advanceCursor(event.cursor);
          if (event.type === 'put' && this.#live) this.#schedule(0);
        }
        return;
      } catch (error) {
        if (this.#closed) return;
        if (KvError.is(error, KvErrorCode.CursorExpired)) {
          this.#state.watchCursor = undefined;
          continue;
        }
        failures++;
        this.#lastError = error instanceof Error ? error.message : String(error);
        await sleep(Math.min(5000, 50 * 2 ** Math.min(failures, 7)) * (0.5 + Math.random()), this.#closing.signal);
      }
    }
  }

  /** Cursors only move forward. */
  #advanceCursor(cursor: WatchCursor): void {
    const current = this.#state.watchCursor as WatchCursor | undefined;
    try {
      if (current === undefined || this.#kv.compareCursors(cursor, current) > 0) this.#state.watchCursor = cursor;
    } catch {
      this.#state.watchCursor = cursor;
    }
  }

  #learnHead(key: string, value: Uint8Array): void {
    const device = key.slice('heads.'.length);
    const head = parseHead(value);
    if (head === undefined || device.includes('.')) return;
    this.#known.set(device, Math.max(this.#known.get(device) ?? 0, head.seq));
  }

  // -------------------------------------------------------------------- push

  /** Pushes one changeset of pending local events; `false` when there was nothing to push. */
  async #pushOnce(): Promise<boolean> {
    await this.#checkOwnSeq();
    let pending = this.#state.pending;
    if (pending === undefined) {
      const events = await this.#collectLocal();
      if (events.length === 0) return false;
      const seq = this.#state.lastSeq + 1;
      const keyPath = `changes.${this.device}.${seq}`;
      const envelope = sealEnvelope(
        {
          device: this.device,
          seq,
          schemaVersion: this.#schemaVersion,
          timestamp: this.#clock(),
          authorKey: this.#identity.publicKey,
          previousHash: Buffer.from(this.#state.lastHash, 'hex'),
          keyGeneration: this.#library.keyGeneration ?? 0,
        },
        encodeChangeset(events.map((item) => item.event)),
        this.#library.key,
        this.#library.id,
        keyPath,
        this.#cipher,
        this.#identity,
      );
      pending = {
        seq,
        envelope: Buffer.from(envelope).toString('base64'),
        hash: hexOf(this.#hashers.blake3(envelope)),
        lastPosition: events.at(-1)?.position ?? this.#state.pushedPosition,
      };
      // The exact bytes are kept before they leave, so a retry after any failure sends the same bytes.
      this.#state.pending = pending;
      await this.#stateFile.save(this.#state);
    }
    this.#faults.onPushStage?.('prepared', pending.seq);
    const keyPath = `changes.${this.device}.${pending.seq}`;
    const envelope = new Uint8Array(Buffer.from(pending.envelope, 'base64'));
    await this.#createChangeset(keyPath, envelope, pending.seq);
    this.#faults.onPushStage?.('created', pending.seq);
    await this.#publishHead(pending.seq);
    this.#faults.onPushStage?.('head-published', pending.seq);
    this.#state.lastSeq = pending.seq;
    this.#state.lastHash = pending.hash;
    this.#state.pushedPosition = Math.max(this.#state.pushedPosition, pending.lastPosition);
    this.#state.pending = undefined;
    await this.#stateFile.save(this.#state);
    this.#faults.onPushStage?.('done', pending.seq);
    this.#known.set(this.device, pending.seq);
    return true;
  }

  async #collectLocal(): Promise<Array<{ position: number; event: SyncedEvent }>> {
    const collected: Array<{ position: number; event: SyncedEvent }> = [];
    const budget = Math.max(1024, this.#kv.capabilities.maxValueBytes - 4096);
    let bytes = 0;
    for await (const event of this.#log.read(this.#state.pushedPosition + 1)) {
      if (inRanges(this.#state.imported, event.position)) continue;
      const size = event.payload.length + 128 + event.entity.length + event.scope.length + 16 * event.parents.length;
      if (collected.length > 0 && (collected.length >= this.#maxEvents || bytes + size > budget)) break;
      bytes += size;
      collected.push({
        position: event.position,
        event: {
          id: event.id,
          entity: event.entity,
          scope: event.scope,
          kind: event.kind,
          time: event.time,
          causationId: event.causationId,
          correlationId: event.correlationId,
          parents: event.parents,
          payload: event.disposition === 'shredded' ? new Uint8Array(0) : event.payload,
          shredded: event.disposition === 'shredded',
        },
      });
    }
    return collected;
  }

  /** `create` the changeset; a retry that finds identical bytes is a no-op, different bytes are a fork. */
  async #createChangeset(keyPath: string, envelope: Uint8Array, seq: number): Promise<void> {
    try {
      await this.#kv.create(keyPath, envelope);
      return;
    } catch (error) {
      if (!KvError.is(error, KvErrorCode.AlreadyExists)) throw error;
    }
    const existing = await this.#kv.get(keyPath);
    if (existing !== undefined && Buffer.from(existing.value).equals(Buffer.from(envelope))) {
      this.#duplicates.identicalRetries++;
      return;
    }
    const fork = new SyncError(SyncErrorCode.Fork, `another changeset already sits at ${keyPath}: this device's history forked`, {
      device: this.device,
      seq,
    });
    this.#alarm(fork);
    throw fork;
  }

  /** Moves `heads.<device>` forward to `seq` with compare-and-swap; never backwards. */
  async #publishHead(seq: number): Promise<void> {
    const key = `heads.${this.device}`;
    const value = encoder.encode(JSON.stringify({ seq, time: this.#clock() } satisfies HeadValue));
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = await this.#kv.get(key);
      const head = current === undefined ? undefined : parseHead(current.value);
      if (head !== undefined && head.seq >= seq) return;
      try {
        if (current === undefined) await this.#kv.create(key, value);
        else await this.#kv.update(key, value, current.version as Version);
        return;
      } catch (error) {
        // Lost a race, or the outcome is unknown: read again and decide.
        if (
          KvError.is(error, KvErrorCode.AlreadyExists) ||
          KvError.is(error, KvErrorCode.RevisionMismatch) ||
          KvError.is(error, KvErrorCode.Indeterminate)
        ) {
          continue;
        }
        throw error;
      }
    }
    throw new SyncError(SyncErrorCode.StateFailed, `could not move ${key} to ${seq}`);
  }

  /**
   * Before the first push: find this device's real highest changeset, in case
   * the state file is older than the store (a lost or restored state file).
   */
  async #checkOwnSeq(): Promise<void> {
    if (this.#ownSeqChecked) return;
    const head = await this.#kv.get(`heads.${this.device}`);
    const headSeq = head === undefined ? 0 : (parseHead(head.value)?.seq ?? 0);
    let seq = this.#state.lastSeq;
    for (;;) {
      if (this.#state.pending !== undefined && this.#state.pending.seq === seq + 1) break;
      const next = await this.#kv.get(`changes.${this.device}.${seq + 1}`);
      if (next === undefined) {
        if (seq + 1 <= headSeq)
          throw new SyncError(SyncErrorCode.MissingChangeset, `own changeset ${seq + 1} is missing from the store`, {
            device: this.device,
            seq: seq + 1,
          });
        break;
      }
      const envelope = decodeEnvelope(next.value);
      const body = openEnvelope(envelope, this.#library.key, this.#library.id, `changes.${this.device}.${seq + 1}`, this.#cipher);
      if (body === undefined || !envelopeSignatureValid(envelope)) {
        throw new SyncError(SyncErrorCode.Forged, `own changeset ${seq + 1} does not verify`, { device: this.device, seq: seq + 1 });
      }
      // Its events are already out: mark them pushed.
      for (const event of decodeChangeset(body)) {
        const local = await this.#log.get(event.id);
        if (local !== undefined) this.#state.pushedPosition = Math.max(this.#state.pushedPosition, local.position);
      }
      seq++;
      this.#state.lastSeq = seq;
      this.#state.lastHash = hexOf(this.#hashers.blake3(next.value));
    }
    if (seq > 0 && headSeq < seq) await this.#publishHead(seq);
    await this.#stateFile.save(this.#state);
    this.#ownSeqChecked = true;
  }

  // -------------------------------------------------------------------- pull

  async #pullAll(): Promise<number> {
    // A device held back by bad data is tried again each round: the store may have been repaired.
    this.#stuck.clear();
    let pulled = 0;
    for (const [device, head] of [...this.#known]) {
      if (device === this.device) continue;
      while ((this.#state.remote[device]?.seq ?? 0) < head && !this.#stuck.has(device)) {
        if (!(await this.#pullNext(device))) break;
        pulled++;
      }
    }
    return pulled;
  }

  /** Fetches, verifies and applies the next changeset of `device`; `false` when it cannot (stuck or missing). */
  async #pullNext(device: string): Promise<boolean> {
    const applied = this.#state.remote[device] ?? { seq: 0, hash: zeroHashHex };
    const seq = applied.seq + 1;
    const keyPath = `changes.${device}.${seq}`;
    const entry = await this.#kv.get(keyPath);
    if (entry === undefined) {
      this.#lastError = `${keyPath} is announced by its head but not in the store yet`;
      return false;
    }
    let events: SyncedEvent[];
    try {
      events = this.#verify(device, seq, keyPath, entry.value, applied.hash);
    } catch (error) {
      if (!SyncError.is(error)) throw error;
      this.#alarm(error);
      if (error.code === SyncErrorCode.SchemaTooNew) this.#stuck.set(device, error.message);
      else this.#stuck.set(device, `${error.code}: ${error.message}`);
      this.#notify();
      return false;
    }
    await this.#apply(device, events);
    this.#state.remote[device] = { seq, hash: hexOf(this.#hashers.blake3(entry.value)) };
    await this.#stateFile.save(this.#state);
    return true;
  }

  #verify(device: string, seq: number, keyPath: string, bytes: Uint8Array, previousHash: string): SyncedEvent[] {
    const fail = (code: SyncErrorCode, message: string) => new SyncError(code, `${keyPath}: ${message}`, { device, seq });
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(bytes);
    } catch (error) {
      throw fail(SyncErrorCode.InvalidEnvelope, error instanceof Error ? error.message : String(error));
    }
    if (envelope.device !== device || envelope.seq !== seq) {
      throw fail(
        SyncErrorCode.ChainBroken,
        `the envelope says device ${envelope.device} seq ${envelope.seq} (moved or replayed by the store)`,
      );
    }
    const member = this.#members.get(device);
    if (member === undefined) throw fail(SyncErrorCode.Forged, `device ${device} is not a member of the library`);
    if (deviceIdOf(envelope.authorKey) !== device || !Buffer.from(member).equals(Buffer.from(envelope.authorKey))) {
      throw fail(SyncErrorCode.Forged, 'the author key is not the device member key');
    }
    if (!envelopeSignatureValid(envelope)) throw fail(SyncErrorCode.Forged, 'the signature does not verify');
    if (hexOf(envelope.previousHash) !== previousHash) {
      throw fail(
        SyncErrorCode.ChainBroken,
        'it does not follow the previous changeset of its device (dropped, reordered or replayed by the store)',
      );
    }
    if (envelope.schemaVersion > this.#schemaVersion) {
      throw fail(
        SyncErrorCode.SchemaTooNew,
        `it needs schema ${envelope.schemaVersion}; this device understands up to ${this.#schemaVersion}`,
      );
    }
    if (envelope.keyGeneration !== (this.#library.keyGeneration ?? 0)) {
      throw fail(
        SyncErrorCode.DecryptionFailed,
        `it is sealed with key generation ${envelope.keyGeneration}, which this device does not hold`,
      );
    }
    const body = openEnvelope(envelope, this.#library.key, this.#library.id, keyPath, this.#cipher);
    if (body === undefined) throw fail(SyncErrorCode.DecryptionFailed, 'the payload fails authentication');
    try {
      return decodeChangeset(body);
    } catch (error) {
      throw fail(SyncErrorCode.InvalidEnvelope, error instanceof Error ? error.message : String(error));
    }
  }

  /** Appends what is new; events whose causal parents are missing wait for them. */
  async #apply(device: string, events: readonly SyncedEvent[]): Promise<void> {
    const parked = this.#state.parked.flatMap((item) =>
      decodeChangeset(new Uint8Array(Buffer.from(item.event, 'base64'))).map((event) => ({ device: item.device, event })),
    );
    let waiting = [...parked, ...events.map((event) => ({ device, event }))];
    for (;;) {
      const ready: SyncedEvent[] = [];
      const seen = new Set<string>();
      const still: typeof waiting = [];
      for (const item of waiting) {
        const { event } = item;
        if (this.#log.has(event.id) || seen.has(event.id)) {
          this.#duplicates.events++;
          continue;
        }
        const parentsPresent = event.parents.every((parent) => this.#log.has(parent) || seen.has(parent));
        if (parentsPresent) {
          ready.push(event);
          seen.add(event.id);
        } else still.push(item);
      }
      if (ready.length > 0) await this.#append(ready);
      waiting = still;
      if (ready.length === 0) break;
    }
    this.#state.parked = waiting.map((item) => ({
      device: item.device,
      event: Buffer.from(encodeChangeset([item.event])).toString('base64'),
    }));
  }

  async #append(events: readonly SyncedEvent[]): Promise<void> {
    for (let start = 0; start < events.length; start += 0xffff) {
      const slice = events.slice(start, start + 0xffff);
      try {
        const receipt = await this.#log.appendBatch(
          slice.map((event) => ({
            id: event.id,
            entity: event.entity,
            scope: event.scope,
            kind: event.kind,
            time: event.time,
            payload: event.payload,
            parents: event.parents,
            ...(event.causationId === undefined ? {} : { causationId: event.causationId }),
            ...(event.correlationId === undefined ? {} : { correlationId: event.correlationId }),
          })),
        );
        const first = receipt.events[0]?.position ?? 0;
        addRange(this.#state.imported, first, receipt.position);
        await receipt.durable;
      } catch (error) {
        if (error instanceof EventLogError) {
          throw new SyncError(SyncErrorCode.StateFailed, `applying remote events to the local log failed: ${error.message}`, {
            cause: error,
          });
        }
        throw error;
      }
    }
  }

  // ------------------------------------------------------------------- close

  /**
   * Stops the background work, lets the current step finish (or abandons it
   * after `timeoutMs`), and saves the state. Idempotent.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#closing.abort();
    await Promise.race([this.#chain, sleep(options.timeoutMs ?? 5000)]);
    await Promise.allSettled([this.#watchTask, this.#subscriptionTask]);
    await this.#stateFile.save(this.#state).catch(() => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new SyncError(SyncErrorCode.Closed, 'sync is closed');
  }

  /** @internal for tests: the ids of events waiting for parents. */
  waitingEventIds(): EventId[] {
    return this.#state.parked.flatMap((item) =>
      decodeChangeset(new Uint8Array(Buffer.from(item.event, 'base64'))).map((event) => event.id),
    );
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    if (signal?.aborted) return done();
    signal?.addEventListener('abort', done, { once: true });
  });
}
