import { createHmac, randomBytes } from 'node:crypto';
import {
  defaultXChaCha,
  type EventId,
  type EventLog,
  EventLogError,
  type Hashers,
  type LogEvent,
  type LogFileSystem,
  loadHashers,
  nobleXChaCha,
  nodeXChaCha,
  type XChaCha,
} from '@weft/eventlog';
import { acquireLease, KvError, KvErrorCode, type KvStore, type Version, type WatchCursor } from '@weft/kv';
import { LocalBlobStore } from './blob-store.js';
import {
  decodeChangeset,
  decodeChangesetBody,
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
import { decodeKeyWrap, unwrapKey, wrapKey, x25519Of } from './keys.js';
import {
  decodeMembershipEntry,
  deriveMembership,
  encodeMembershipEntry,
  type Member,
  type MembershipEntry,
  type MembershipFields,
  type MembershipState,
  type Role,
} from './membership.js';
import { type ChunkStore, getSealedChunks, putSealedChunks } from './sealed-chunks.js';
import { decodeManifest, decodeSnapshotBody, encodeManifest, encodeSnapshotBody, type SnapshotCursors } from './snapshot.js';
import { addRange, inRanges, StateFile, type SyncStateData, zeroHashHex } from './state.js';
import {
  blobChunkKey,
  blobKey,
  changesetKey,
  currentSnapshotKey,
  deviceOfHeadKey,
  headKey,
  headsPrefix,
  keyWrapKey,
  membershipKey,
  membershipPrefix,
  minSchemaVersionKey,
  snapshotChunkKey,
} from './store-layout.js';

/**
 * A library: a store id, and either a founder (membership, roles and keys
 * come from the signed membership chain and key wraps in the store) or a key
 * and member list provisioned out of band.
 */
export interface LibraryConfig {
  /** The store id, bound into every ciphertext's AAD: `[A-Za-z0-9_-]+`. */
  readonly id: string;
  /** The device that created the library: the trust anchor of the membership chain. */
  readonly founder?: DevicePublic;
  /** Out-of-band mode: the library key, 32 bytes. */
  readonly key?: Uint8Array;
  /** Out-of-band mode: the key's generation. @default 0 */
  readonly keyGeneration?: number;
  /** Out-of-band mode: the devices allowed to write. */
  readonly members?: readonly DevicePublic[];
}

/** What a device hands an owner to be invited: its ids and public keys. */
export interface Invitation extends DevicePublic {
  readonly x25519PublicKey: Uint8Array;
}

/** The invitation of an identity (share it with an owner; it holds no secret). */
export function invitationOf(identity: DeviceIdentity): Invitation {
  return { deviceId: identity.deviceId, publicKey: identity.publicKey, x25519PublicKey: x25519Of(identity).publicKey };
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
  /**
   * How a device with an empty log starts: from the current snapshot (then
   * the changesets after it), or by replaying every changeset.
   * @default 'snapshot'
   */
  readonly bootstrap?: 'snapshot' | 'replay';
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
  /** A key rotation was announced and this device does not hold the new key yet: uploads wait, pulls go on. */
  readonly rotationPending: boolean;
  /** This device's role (`undefined` when not, or no longer, a member). */
  readonly role: Role | undefined;
  /** The key generation in force. */
  readonly keyGeneration: number;
  /** Devices whose changesets this device needs were garbage-collected: bootstrap from the snapshot again. */
  readonly rebootstrapRequired: boolean;
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
  /** Per other device, the last changeset this device applied: what garbage collection may not go past. */
  readonly applied?: Readonly<Record<string, number>>;
  /** Set by an owner removing the device: the head never moves again, and `seq` is its last accepted changeset. */
  readonly frozen?: boolean;
}

function parseHead(value: Uint8Array): HeadValue | undefined {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(value)) as Partial<HeadValue>;
    if (typeof parsed.seq === 'number' && Number.isSafeInteger(parsed.seq) && parsed.seq >= 0)
      return {
        seq: parsed.seq,
        time: Number(parsed.time) || 0,
        ...(typeof parsed.applied === 'object' && parsed.applied !== null ? { applied: parsed.applied } : {}),
        ...(parsed.frozen === true ? { frozen: true } : {}),
      };
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
  if (library.founder === undefined) {
    if (!(library.key instanceof Uint8Array) || library.key.length !== 32) {
      throw new SyncError(
        SyncErrorCode.InvalidArgument,
        'give library.founder (membership chain), or library.key (32 bytes) and library.members',
      );
    }
    if (!(library.members ?? []).some((member) => member.deviceId === options.identity.deviceId)) {
      throw new SyncError(SyncErrorCode.InvalidArgument, `device ${options.identity.deviceId} is not a member of library ${library.id}`);
    }
  } else if (library.key !== undefined || library.members !== undefined) {
    throw new SyncError(
      SyncErrorCode.InvalidArgument,
      'a library with a founder takes its members and keys from the store; do not pass key or members',
    );
  }
  const fs = options.fs ?? options.log.fileSystem;
  const stateFile = new StateFile(fs, options.stateDir ?? options.log.dir);
  const state = await stateFile.load(options.identity.deviceId);
  const cipher = options.cipher === 'noble' ? nobleXChaCha : options.cipher === 'node' ? nodeXChaCha : defaultXChaCha();
  const sync = new Sync(
    options,
    stateFile,
    state,
    await loadHashers(),
    cipher,
    new LocalBlobStore(fs, options.stateDir ?? options.log.dir),
  );
  sync.start();
  return sync;
}

/**
 * Creates a library in `kv` with `identity` as its founder and first owner:
 * writes the genesis membership entry and the first key generation, wrapped
 * for the founder. Other devices open sync with the returned config and are
 * added with `addMember`.
 *
 * @throws {SyncError} `InvalidArgument`, `Fork` when the library exists with another founder
 */
export async function createLibrary(options: {
  kv: KvStore;
  identity: DeviceIdentity;
  id: string;
  cipher?: 'node' | 'noble';
}): Promise<LibraryConfig> {
  const { kv, identity, id } = options;
  if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(id))
    throw new SyncError(SyncErrorCode.InvalidArgument, 'library id must match [A-Za-z0-9_-]{1,128}');
  const cipher = options.cipher === 'noble' ? nobleXChaCha : options.cipher === 'node' ? nodeXChaCha : defaultXChaCha();
  const self = invitationOf(identity);
  const existing = await kv.get(membershipKey(identity.deviceId, 1));
  if (existing === undefined) {
    const wrap = await kv.get(keyWrapKey(identity.deviceId, 0));
    if (wrap === undefined) await kv.create(keyWrapKey(identity.deviceId, 0), wrapKey(randomBytes(32), 0, self, identity, id, cipher));
    const genesis = encodeMembershipEntry(
      {
        op: 'add',
        author: identity.deviceId,
        seq: 1,
        parents: [],
        subject: identity.deviceId,
        subjectKey: identity.publicKey,
        subjectX25519: self.x25519PublicKey,
        role: 'owner',
        keyGeneration: 0,
        cutoff: 0,
      },
      identity,
    );
    await kv.create(membershipKey(identity.deviceId, 1), genesis);
  }
  return { id, founder: { deviceId: identity.deviceId, publicKey: identity.publicKey } };
}

/** A device's sync engine. See {@link openSync}. */
export class Sync implements AsyncDisposable {
  readonly device: string;
  readonly #log: EventLog;
  readonly #kv: KvStore;
  readonly #identity: DeviceIdentity;
  readonly #library: LibraryConfig;
  /** Out-of-band mode: the static members. */
  readonly #staticMembers: Map<string, Uint8Array>;
  /** Library keys by generation. */
  readonly #keys = new Map<number, Uint8Array>();
  readonly #entries = new Map<string, MembershipEntry>();
  #membership: MembershipState | undefined;
  readonly #blobs: LocalBlobStore;
  #rebootstrap = false;
  readonly #schemaVersion: number;
  readonly #maxEvents: number;
  readonly #live: boolean;
  readonly #pollIntervalMs: number;
  readonly #stateFile: StateFile;
  readonly #state: SyncStateData;
  readonly #hashers: Hashers;
  readonly #cipher: XChaCha;
  /** Where blobs and snapshot bodies are sealed in chunks. */
  readonly #chunkStore: ChunkStore;
  readonly #clock: () => number;
  readonly #faults: SyncFaultHooks;
  readonly #bootstrapMode: 'snapshot' | 'replay';
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
  constructor(options: SyncOptions, stateFile: StateFile, state: SyncStateData, hashers: Hashers, cipher: XChaCha, blobs: LocalBlobStore) {
    this.device = options.identity.deviceId;
    this.#log = options.log;
    this.#kv = options.kv;
    this.#identity = options.identity;
    this.#library = options.library;
    this.#staticMembers = new Map((options.library.members ?? []).map((member) => [member.deviceId, member.publicKey]));
    if (options.library.key !== undefined) this.#keys.set(options.library.keyGeneration ?? 0, options.library.key);
    this.#blobs = blobs;
    this.#schemaVersion = options.schemaVersion ?? 1;
    this.#maxEvents = options.maxEventsPerChangeset ?? 256;
    this.#live = options.live ?? true;
    this.#pollIntervalMs = options.pollIntervalMs ?? 5000;
    this.#stateFile = stateFile;
    this.#state = state;
    this.#hashers = hashers;
    this.#cipher = cipher;
    this.#chunkStore = { kv: this.#kv, cipher, libraryId: options.library.id };
    this.#clock = options.clock ?? Date.now;
    this.#faults = options.faults ?? {};
    this.#bootstrapMode = options.bootstrap ?? 'snapshot';
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
      rotationPending: this.#library.founder !== undefined && !this.#keys.has(this.#generation()),
      role: this.#member(this.device)?.removedAfter === undefined ? this.#member(this.device)?.role : undefined,
      keyGeneration: this.#generation(),
      rebootstrapRequired: this.#rebootstrap,
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

  // ----------------------------------------------------------------- library

  /** The key generation new changesets are sealed with. */
  #generation(): number {
    return this.#membership?.generation ?? this.#library.keyGeneration ?? 0;
  }

  #member(device: string): Member | undefined {
    if (this.#library.founder !== undefined) return this.#membership?.members.get(device);
    const publicKey = this.#staticMembers.get(device);
    return publicKey === undefined
      ? undefined
      : { deviceId: device, publicKey, x25519PublicKey: new Uint8Array(32), role: 'member', removedAfter: undefined };
  }

  /** Reads the minimum schema version, the membership chain and the key wraps addressed to this device. */
  async #refreshLibrary(): Promise<void> {
    const minimum = await this.#kv.get(minSchemaVersionKey);
    if (minimum !== undefined) {
      const required = Number(new TextDecoder().decode(minimum.value));
      if (Number.isSafeInteger(required) && required > this.#schemaVersion) {
        throw new SyncError(
          SyncErrorCode.SchemaTooOld,
          `library ${this.#library.id} requires schema version ${required}; this device is at ${this.#schemaVersion}: upgrade it before it syncs`,
        );
      }
    }
    const founder = this.#library.founder;
    if (founder === undefined) return;
    for await (const entry of this.#kv.scan(membershipPrefix)) {
      if (this.#entries.has(entry.key)) continue;
      try {
        const decoded = decodeMembershipEntry(entry.value, this.#hashers);
        if (entry.key !== membershipKey(decoded.author, decoded.seq)) {
          throw new SyncError(SyncErrorCode.ChainBroken, `${entry.key} holds entry ${decoded.author}.${decoded.seq}`, {
            device: decoded.author,
          });
        }
        this.#entries.set(entry.key, decoded);
      } catch (error) {
        if (!SyncError.is(error)) throw error;
        this.#alarm(error);
      }
    }
    const membership = deriveMembership([...this.#entries.values()], founder);
    this.#membership = membership;
    if (!membership.members.has(this.device)) return;
    for (let generation = 0; generation <= membership.generation; generation++) {
      if (this.#keys.has(generation)) continue;
      const stored = await this.#kv.get(keyWrapKey(this.device, generation));
      if (stored === undefined) continue;
      try {
        const wrap = decodeKeyWrap(stored.value);
        const author = membership.members.get(wrap.author);
        const trusted =
          wrap.member === this.device &&
          wrap.generation === generation &&
          author !== undefined &&
          membership.everOwners.has(wrap.author) &&
          Buffer.from(author.publicKey).equals(Buffer.from(wrap.authorKey));
        if (!trusted)
          throw new SyncError(SyncErrorCode.Forged, `${keyWrapKey(this.device, generation)} is not a key wrap from an owner`, {
            device: wrap.author,
          });
        const key = unwrapKey(wrap, this.#identity, this.#library.id, this.#cipher);
        if (key === undefined)
          throw new SyncError(SyncErrorCode.DecryptionFailed, `${keyWrapKey(this.device, generation)} does not open`, {
            device: wrap.author,
          });
        this.#keys.set(generation, key);
      } catch (error) {
        if (!SyncError.is(error)) throw error;
        this.#alarm(error);
      }
    }
  }

  async #floorOf(device: string): Promise<number> {
    const floor = await this.#kv.get(`meta.floor.${device}`);
    return floor === undefined ? 0 : Number(new TextDecoder().decode(floor.value)) || 0;
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
      await this.#refreshLibrary();
      // A device that has nothing yet starts from the snapshot, if there is one it can open.
      if (
        this.#bootstrapMode === 'snapshot' &&
        this.#log.head === 0 &&
        Object.keys(this.#state.remote).length === 0 &&
        this.#keys.size > 0
      ) {
        await this.#bootstrap().catch((error: unknown) => {
          if (!SyncError.is(error)) throw error;
          this.#alarm(error);
          return false;
        });
      }
      let pushed = 0;
      while (await this.#pushOnce()) pushed++;
      const pulled = await this.#pullAll();
      if (pulled > 0) await this.#publishHead(this.#state.lastSeq);
      this.#notify();
      return { pushed, pulled };
    });
  }

  /** Re-reads every head from the store (anti-entropy: heals missed watch events). */
  refreshHeads(): Promise<void> {
    return this.#exclusive(async () => {
      for await (const entry of this.#kv.scan(headsPrefix)) this.#learnHead(entry.key, entry.value);
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
        // A round that hangs (a store that stops answering) must not outlive the deadline.
        const round = (async () => {
          await this.refreshHeads();
          await this.syncOnce();
        })();
        const remaining = Math.max(0, deadline - this.#clock());
        const outcome = await Promise.race([
          round.then(() => 'done' as const),
          sleep(remaining, this.#closing.signal).then(() => 'late' as const),
        ]);
        if (outcome === 'late') round.catch(() => undefined);
        else if (this.#caughtUp()) return;
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
        const watch = this.#kv.watch({ prefixes: [headsPrefix], signal: this.#closing.signal, ...(from === undefined ? {} : { from }) });
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
    const device = deviceOfHeadKey(key);
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
      // Uploads wait while this device may not write, or while a rotation it has not adopted is pending.
      const self = this.#member(this.device);
      const generation = this.#generation();
      const key = this.#keys.get(generation);
      if (self === undefined || self.removedAfter !== undefined || self.role === 'reader' || key === undefined) return false;
      // Only what is durable here is pushed: a crash must never leave the store holding events this log lost.
      await this.#log.flush();
      const events = await this.#collectLocal();
      const blobs = [...this.#state.pendingBlobs];
      if (events.length === 0 && blobs.length === 0) return false;
      for (const blob of blobs) await this.#uploadBlob(blob, generation, key);
      const seq = this.#state.lastSeq + 1;
      const keyPath = changesetKey(this.device, seq);
      const envelope = sealEnvelope(
        {
          device: this.device,
          seq,
          schemaVersion: this.#schemaVersion,
          timestamp: this.#clock(),
          authorKey: this.#identity.publicKey,
          previousHash: Buffer.from(this.#state.lastHash, 'hex'),
          keyGeneration: generation,
        },
        encodeChangeset(
          events.map((item) => item.event),
          blobs,
        ),
        key,
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
        blobs,
      };
      // The exact bytes are kept before they leave, so a retry after any failure sends the same bytes.
      this.#state.pending = pending;
      await this.#stateFile.save(this.#state);
    }
    this.#faults.onPushStage?.('prepared', pending.seq);
    const keyPath = changesetKey(this.device, pending.seq);
    const envelope = new Uint8Array(Buffer.from(pending.envelope, 'base64'));
    await this.#createChangeset(keyPath, envelope, pending.seq);
    this.#faults.onPushStage?.('created', pending.seq);
    await this.#publishHead(pending.seq);
    this.#faults.onPushStage?.('head-published', pending.seq);
    this.#state.lastSeq = pending.seq;
    this.#state.lastHash = pending.hash;
    this.#state.pushedPosition = Math.max(this.#state.pushedPosition, pending.lastPosition);
    const sent = new Set(pending.blobs ?? []);
    this.#state.pendingBlobs = this.#state.pendingBlobs.filter((blob) => !sent.has(blob));
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
    const durable = this.#log.durableHead;
    for await (const event of this.#log.read(this.#state.pushedPosition + 1)) {
      if (event.position > durable) break;
      if (inRanges(this.#state.imported, event.position)) continue;
      const size = event.payload.length + 128 + event.entity.length + event.scope.length + 16 * event.parents.length;
      if (collected.length > 0 && (collected.length >= this.#maxEvents || bytes + size > budget)) break;
      bytes += size;
      collected.push({
        position: event.position,
        event: syncedOf(event),
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
    const key = headKey(this.device);
    const applied = Object.fromEntries(Object.entries(this.#state.remote).map(([device, remote]) => [device, remote.seq]));
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = await this.#kv.get(key);
      const head = current === undefined ? undefined : parseHead(current.value);
      const behind = Object.entries(applied).some(([device, value]) => (head?.applied?.[device] ?? 0) < value);
      if (head?.frozen === true) {
        if (head.seq >= seq) return;
        throw new SyncError(
          SyncErrorCode.NotAllowed,
          `${this.device} was removed from the library: its head is frozen at changeset ${head.seq}`,
        );
      }
      if (head !== undefined && head.seq >= seq && !behind) return;
      const value = encoder.encode(
        JSON.stringify({
          seq: Math.max(seq, head?.seq ?? 0),
          time: this.#clock(),
          applied: Object.fromEntries(
            [...new Set([...Object.keys(applied), ...Object.keys(head?.applied ?? {})])].map((device) => [
              device,
              Math.max(applied[device] ?? 0, head?.applied?.[device] ?? 0),
            ]),
          ),
        } satisfies HeadValue),
      );
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
    const head = await this.#kv.get(headKey(this.device));
    const headSeq = head === undefined ? 0 : (parseHead(head.value)?.seq ?? 0);
    let seq = this.#state.lastSeq;
    for (;;) {
      if (this.#state.pending !== undefined && this.#state.pending.seq === seq + 1) break;
      const next = await this.#kv.get(changesetKey(this.device, seq + 1));
      if (next === undefined) {
        if (seq + 1 <= headSeq)
          throw new SyncError(SyncErrorCode.MissingChangeset, `own changeset ${seq + 1} is missing from the store`, {
            device: this.device,
            seq: seq + 1,
          });
        break;
      }
      const envelope = decodeEnvelope(next.value);
      const ownKey = this.#keys.get(envelope.keyGeneration);
      const body =
        ownKey === undefined
          ? undefined
          : openEnvelope(envelope, ownKey, this.#library.id, changesetKey(this.device, seq + 1), this.#cipher);
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
    const keyPath = changesetKey(device, seq);
    const entry = await this.#kv.get(keyPath);
    if (entry === undefined) {
      // Garbage-collected below this device's cursor: never skip forward, ask for a bootstrap.
      const floor = await this.#floorOf(device);
      if (seq <= floor) {
        this.#rebootstrap = true;
        this.#stuck.set(device, `${keyPath} was garbage-collected`);
        this.#alarm(
          new SyncError(
            SyncErrorCode.RebootstrapRequired,
            `${keyPath} was garbage-collected before this device applied it; bootstrap from the snapshot again`,
            {
              device,
              seq,
            },
          ),
        );
        return false;
      }
      this.#lastError = `${keyPath} is announced by its head but not in the store yet`;
      return false;
    }
    let verified: { events: SyncedEvent[]; blobs: string[] };
    try {
      verified = this.#verify(device, seq, keyPath, entry.value, applied.hash);
    } catch (error) {
      if (!SyncError.is(error)) throw error;
      this.#alarm(error);
      if (error.code === SyncErrorCode.SchemaTooNew) this.#stuck.set(device, error.message);
      else this.#stuck.set(device, `${error.code}: ${error.message}`);
      this.#notify();
      return false;
    }
    // The cursor moves past a changeset only once its blobs are stored here.
    for (const blob of verified.blobs) {
      if (!(await this.#fetchBlob(blob))) {
        this.#lastError = `blob ${blob} of ${keyPath} is not in the store yet`;
        return false;
      }
    }
    await this.#apply(device, verified.events);
    this.#state.remote[device] = { seq, hash: hexOf(this.#hashers.blake3(entry.value)) };
    await this.#stateFile.save(this.#state);
    return true;
  }

  #verify(
    device: string,
    seq: number,
    keyPath: string,
    bytes: Uint8Array,
    previousHash: string,
  ): { events: SyncedEvent[]; blobs: string[] } {
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
    const member = this.#member(device);
    if (member === undefined) throw fail(SyncErrorCode.Forged, `device ${device} is not a member of the library`);
    if (deviceIdOf(envelope.authorKey) !== device || !Buffer.from(member.publicKey).equals(Buffer.from(envelope.authorKey))) {
      throw fail(SyncErrorCode.Forged, 'the author key is not the device member key');
    }
    if (member.role === 'reader') throw fail(SyncErrorCode.Revoked, `${device} is a reader and cannot write`);
    if (member.removedAfter !== undefined && seq > member.removedAfter) {
      throw fail(SyncErrorCode.Revoked, `${device} was removed after its changeset ${member.removedAfter}; later writes are rejected`);
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
    const key = this.#keys.get(envelope.keyGeneration);
    if (key === undefined) {
      throw fail(
        SyncErrorCode.DecryptionFailed,
        `it is sealed with key generation ${envelope.keyGeneration}, which this device does not hold`,
      );
    }
    const body = openEnvelope(envelope, key, this.#library.id, keyPath, this.#cipher);
    if (body === undefined) throw fail(SyncErrorCode.DecryptionFailed, 'the payload fails authentication');
    try {
      return decodeChangesetBody(body);
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
        // The cursor moves only past durable events; a log that syncs lazily ('none', 'interval') is flushed now.
        await this.#log.flush();
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

  // ------------------------------------------------------------------- blobs

  /** The key blob ids are derived with: from the oldest generation, so ids stay stable across rotations. */
  #blobIdKey(): Uint8Array {
    const generation = Math.min(...this.#keys.keys());
    const key = this.#keys.get(generation);
    if (key === undefined) throw new SyncError(SyncErrorCode.NotAllowed, 'this device holds no library key yet');
    return new Uint8Array(createHmac('sha256', key).update('weft-blob-id-v1').digest());
  }

  #blobId(bytes: Uint8Array): string {
    return createHmac('sha256', this.#blobIdKey()).update(bytes).digest('hex');
  }

  /**
   * Stores a blob on this device and queues it: it is uploaded (encrypted, in
   * chunks) before the next changeset, which references it. Ids are
   * content-addressed with a key of the library, so the store cannot test a
   * guess of the content.
   *
   * @returns the blob id, to reference from events
   */
  putBlob(bytes: Uint8Array): Promise<string> {
    return this.#exclusive(async () => {
      if (!(bytes instanceof Uint8Array)) throw new SyncError(SyncErrorCode.InvalidArgument, 'a blob is a Uint8Array');
      await this.#refreshLibrary();
      const id = this.#blobId(bytes);
      await this.#blobs.write(id, bytes);
      if (!this.#state.pendingBlobs.includes(id)) this.#state.pendingBlobs.push(id);
      await this.#stateFile.save(this.#state);
      return id;
    });
  }

  /** A blob stored on this device (added here, or fetched with the changeset that referenced it). */
  getBlob(id: string): Promise<Uint8Array | undefined> {
    if (!/^[0-9a-f]{64}$/.test(id)) return Promise.reject(new SyncError(SyncErrorCode.InvalidArgument, `${id} is not a blob id`));
    return this.#blobs.read(id);
  }

  async #uploadBlob(id: string, generation: number, key: Uint8Array): Promise<void> {
    const base = blobKey(id);
    if ((await this.#kv.get(base)) !== undefined) return;
    const bytes = await this.#blobs.read(id);
    if (bytes === undefined) throw new SyncError(SyncErrorCode.BlobMissing, `blob ${id} is queued but not stored on this device`);
    const chunks = await putSealedChunks(this.#chunkStore, key, generation, bytes, (index) => blobChunkKey(id, index));
    // The header goes last: its presence means every chunk is there.
    try {
      await this.#kv.create(base, encoder.encode(JSON.stringify({ chunks, size: bytes.length, generation })));
    } catch (error) {
      if (!KvError.is(error, KvErrorCode.AlreadyExists)) throw error;
    }
  }

  /** Fetches a referenced blob into local storage; `false` when it is not (yet) fully in the store. */
  async #fetchBlob(id: string): Promise<boolean> {
    if (!/^[0-9a-f]{64}$/.test(id)) return false;
    if (await this.#blobs.has(id)) return true;
    const base = blobKey(id);
    const header = await this.#kv.get(base);
    if (header === undefined) return false;
    let described: { chunks: number; size: number; generation: number };
    try {
      described = JSON.parse(new TextDecoder().decode(header.value)) as typeof described;
    } catch {
      return false;
    }
    const key = this.#keys.get(described.generation);
    if (key === undefined || !(described.chunks >= 1 && described.chunks < 1_000_000)) return false;
    const opened = await getSealedChunks(this.#chunkStore, key, described.generation, described.chunks, (index) => blobChunkKey(id, index));
    if ('failed' in opened) {
      if (opened.reason === 'unauthenticated')
        this.#alarm(new SyncError(SyncErrorCode.BlobMissing, `blob chunk ${opened.failed} fails authentication`));
      return false;
    }
    const bytes = opened.bytes;
    if (this.#blobId(bytes) !== id) {
      this.#alarm(new SyncError(SyncErrorCode.BlobMissing, `blob ${id} does not match its id`));
      return false;
    }
    await this.#blobs.write(id, bytes);
    return true;
  }

  // ------------------------------------------------------------- membership

  #assertOwner(membership: MembershipState | undefined): MembershipState {
    const self = membership?.members.get(this.device);
    if (membership === undefined || self === undefined || self.role !== 'owner' || self.removedAfter !== undefined) {
      throw new SyncError(SyncErrorCode.NotAllowed, 'only an owner of a library with a founder can change its membership');
    }
    return membership;
  }

  /** Writes a membership entry as the next of this device's, parented on every tip it knows. */
  async #writeEntry(fields: Omit<MembershipFields, 'author' | 'seq' | 'parents'>): Promise<void> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const membership = this.#assertOwner(this.#membership);
      const seq = (membership.authorSeqs.get(this.device) ?? 0) + 1;
      const bytes = encodeMembershipEntry({ ...fields, author: this.device, seq, parents: membership.tips }, this.#identity);
      try {
        await this.#kv.create(membershipKey(this.device, seq), bytes);
        await this.#refreshLibrary();
        return;
      } catch (error) {
        if (!KvError.is(error, KvErrorCode.AlreadyExists) && !KvError.is(error, KvErrorCode.Indeterminate)) throw error;
        const existing = await this.#kv.get(membershipKey(this.device, seq));
        await this.#refreshLibrary();
        if (existing !== undefined && Buffer.from(existing.value).equals(Buffer.from(bytes))) return;
      }
    }
    throw new SyncError(SyncErrorCode.StateFailed, 'could not write the membership entry');
  }

  async #writeWrap(member: { deviceId: string; x25519PublicKey: Uint8Array }, generation: number, key: Uint8Array): Promise<void> {
    const keyPath = keyWrapKey(member.deviceId, generation);
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await this.#kv.create(keyPath, wrapKey(key, generation, member, this.#identity, this.#library.id, this.#cipher));
        return;
      } catch (error) {
        if (KvError.is(error, KvErrorCode.AlreadyExists)) return;
        // The create may have landed: a wrap that is there is as good as ours.
        if (!KvError.is(error, KvErrorCode.Indeterminate)) throw error;
        if ((await this.#kv.get(keyPath)) !== undefined) return;
      }
    }
  }

  /**
   * Adds a device (owner only): wraps every key generation for it, then
   * writes the membership entry. The new device bootstraps from the
   * snapshot, or replays the changesets, with what it is given. Safe to
   * retry: adding a current member only makes sure its key wraps are there.
   *
   * @throws {SyncError} `NotAllowed`
   */
  addMember(invitation: Invitation, role: Role = 'member'): Promise<void> {
    return this.#exclusive(async () => {
      await this.#refreshLibrary();
      const membership = this.#assertOwner(this.#membership);
      if (deviceIdOf(invitation.publicKey) !== invitation.deviceId)
        throw new SyncError(SyncErrorCode.InvalidArgument, 'the invitation keys do not match its device id');
      for (let generation = 0; generation <= membership.generation; generation++) {
        const key = this.#keys.get(generation);
        if (key !== undefined) await this.#writeWrap(invitation, generation, key);
      }
      const existing = membership.members.get(invitation.deviceId);
      if (existing !== undefined && existing.removedAfter === undefined) return;
      await this.#writeEntry({
        op: 'add',
        subject: invitation.deviceId,
        subjectKey: invitation.publicKey,
        subjectX25519: invitation.x25519PublicKey,
        role,
        keyGeneration: membership.generation,
        cutoff: 0,
      });
      this.#notify();
    });
  }

  /**
   * Removes a device (owner only) and rotates the library key: first pulls
   * everything the device wrote, wraps a new key generation for the
   * remaining members, then writes the removal, which rejects the device's
   * later changesets everywhere. Nothing sealed afterwards opens with the keys
   * the removed device holds.
   *
   * @throws {SyncError} `NotAllowed`, `InvalidArgument`
   */
  removeMember(deviceId: string): Promise<{ generation: number; cutoff: number }> {
    return this.#exclusive(async () => {
      await this.#refreshLibrary();
      const membership = this.#assertOwner(this.#membership);
      const subject = membership.members.get(deviceId);
      if (subject === undefined || subject.removedAfter !== undefined)
        throw new SyncError(SyncErrorCode.InvalidArgument, `${deviceId} is not a member`);
      if (deviceId !== this.device) await this.#pullAll();
      // Freeze the device's head first (compare-and-swap, so it cannot race the device's own head update):
      // every changeset it published before is accepted everywhere, nothing it publishes after is.
      const cutoff = await this.#freezeHead(deviceId);
      const generation = membership.generation + 1;
      const key = new Uint8Array(randomBytes(32));
      for (const member of membership.members.values()) {
        if (member.removedAfter === undefined && member.deviceId !== deviceId) await this.#writeWrap(member, generation, key);
      }
      this.#keys.set(generation, key);
      await this.#writeEntry({
        op: 'remove',
        subject: deviceId,
        subjectKey: subject.publicKey,
        subjectX25519: subject.x25519PublicKey,
        role: subject.role,
        keyGeneration: generation,
        cutoff,
      });
      this.#notify();
      return { generation, cutoff };
    });
  }

  /** Marks `heads.<device>` frozen at its current seq with compare-and-swap; returns that seq. */
  async #freezeHead(deviceId: string): Promise<number> {
    const key = headKey(deviceId);
    for (let attempt = 0; attempt < 50; attempt++) {
      const current = await this.#kv.get(key);
      const head = current === undefined ? undefined : parseHead(current.value);
      if (head?.frozen === true) return head.seq;
      const frozen = encoder.encode(JSON.stringify({ ...(head ?? { seq: 0 }), time: this.#clock(), frozen: true } satisfies HeadValue));
      try {
        if (current === undefined) await this.#kv.create(key, frozen);
        else await this.#kv.update(key, frozen, current.version);
        return head?.seq ?? 0;
      } catch (error) {
        if (
          !KvError.is(error, KvErrorCode.AlreadyExists) &&
          !KvError.is(error, KvErrorCode.RevisionMismatch) &&
          !KvError.is(error, KvErrorCode.Indeterminate)
        )
          throw error;
      }
    }
    throw new SyncError(SyncErrorCode.StateFailed, `could not freeze ${key}`);
  }

  /** Changes a member's role (owner only). */
  setRole(deviceId: string, role: Role): Promise<void> {
    return this.#exclusive(async () => {
      await this.#refreshLibrary();
      const membership = this.#assertOwner(this.#membership);
      const subject = membership.members.get(deviceId);
      if (subject === undefined || subject.removedAfter !== undefined)
        throw new SyncError(SyncErrorCode.InvalidArgument, `${deviceId} is not a member`);
      await this.#writeEntry({
        op: 'role',
        subject: deviceId,
        subjectKey: subject.publicKey,
        subjectX25519: subject.x25519PublicKey,
        role,
        keyGeneration: membership.generation,
        cutoff: 0,
      });
    });
  }

  /** The membership this device derives from the chain (members, roles, generation, rejected entries). */
  membership(): MembershipState | undefined {
    return this.#membership;
  }

  /**
   * Raises `meta.min_schema_version` (compare-and-swap, never lowers it):
   * devices below it refuse to sync until upgraded.
   */
  setMinSchemaVersion(version: number): Promise<void> {
    return this.#exclusive(async () => {
      if (!Number.isSafeInteger(version) || version < 1)
        throw new SyncError(SyncErrorCode.InvalidArgument, 'a schema version is a positive integer');
      for (let attempt = 0; attempt < 20; attempt++) {
        const current = await this.#kv.get(minSchemaVersionKey);
        const value = current === undefined ? 0 : Number(new TextDecoder().decode(current.value)) || 0;
        if (value >= version) return;
        try {
          if (current === undefined) await this.#kv.create(minSchemaVersionKey, encoder.encode(String(version)));
          else await this.#kv.update(minSchemaVersionKey, encoder.encode(String(version)), current.version);
          return;
        } catch (error) {
          if (
            !KvError.is(error, KvErrorCode.AlreadyExists) &&
            !KvError.is(error, KvErrorCode.RevisionMismatch) &&
            !KvError.is(error, KvErrorCode.Indeterminate)
          )
            throw error;
        }
      }
    });
  }

  // -------------------------------------------------------------- snapshots

  /**
   * Publishes a snapshot (owner only, under the `leases.snapshot` lease):
   * every event of this device's log plus the per-device cursors they cover,
   * sealed under the current key generation in chunks, then `snapshot.current`
   * is moved to it with compare-and-swap.
   *
   * @returns the snapshot id, or `undefined` when another owner holds the lease
   */
  publishSnapshot(options: { leaseMs?: number } = {}): Promise<string | undefined> {
    return this.#exclusive(async () => {
      await this.#refreshLibrary();
      this.#assertOwner(this.#membership);
      const lease = await acquireLease(this.#kv, {
        key: 'leases.snapshot',
        holder: this.device,
        ttlMs: options.leaseMs ?? 60_000,
        clock: this.#clock,
      });
      if (lease === undefined) return undefined;
      try {
        await this.#pullAll();
        const generation = this.#generation();
        const key = this.#keys.get(generation);
        if (key === undefined) throw new SyncError(SyncErrorCode.NotAllowed, `this device does not hold key generation ${generation} yet`);
        const cursors: SnapshotCursors = Object.fromEntries(
          Object.entries(this.#state.remote).map(([device, remote]) => [device, { ...remote }]),
        );
        cursors[this.device] = { seq: this.#state.lastSeq, hash: this.#state.lastHash };
        const events: SyncedEvent[] = [];
        for await (const event of this.#log.read()) {
          // Own events not pushed yet are not covered by the cursors; they travel as changesets.
          if (event.position > this.#state.pushedPosition && !inRanges(this.#state.imported, event.position)) continue;
          events.push(syncedOf(event));
        }
        // Blobs referenced so far travel with the snapshot (those still queued here travel with the next changeset).
        const queued = new Set(this.#state.pendingBlobs);
        const blobs = (await this.#blobs.list()).filter((blob) => !queued.has(blob));
        const body = encodeSnapshotBody(cursors, encodeChangeset(events, blobs));
        const id = randomBytes(12).toString('hex');
        const chunks = await putSealedChunks(this.#chunkStore, key, generation, body, (index) => snapshotChunkKey(id, index));
        const createdAt = this.#clock();
        const manifest = { id, chunks, generation, author: this.device, createdAt, bodyHash: hexOf(this.#hashers.blake3(body)), cursors };
        await this.#kv.put(snapshotChunkKey(id, 0), encodeManifest(manifest, this.#identity));
        for (let attempt = 0; attempt < 20; attempt++) {
          const current = await this.#kv.get(currentSnapshotKey);
          const value = encoder.encode(JSON.stringify({ id, generation, createdAt }));
          try {
            if (current === undefined) await this.#kv.create(currentSnapshotKey, value);
            else await this.#kv.update(currentSnapshotKey, value, current.version);
            return id;
          } catch (error) {
            if (
              !KvError.is(error, KvErrorCode.AlreadyExists) &&
              !KvError.is(error, KvErrorCode.RevisionMismatch) &&
              !KvError.is(error, KvErrorCode.Indeterminate)
            )
              throw error;
          }
        }
        throw new SyncError(SyncErrorCode.StateFailed, 'could not move snapshot.current');
      } finally {
        await lease.release().catch(() => undefined);
      }
    });
  }

  /** Reads and checks the current snapshot; `undefined` when there is none. */
  async #readSnapshot(): Promise<
    | {
        manifest: { id: string; createdAt: number; cursors: SnapshotCursors };
        cursors: SnapshotCursors;
        events: SyncedEvent[];
        blobs: string[];
      }
    | undefined
  > {
    const pointer = await this.#kv.get(currentSnapshotKey);
    if (pointer === undefined) return undefined;
    const { id } = JSON.parse(new TextDecoder().decode(pointer.value)) as { id: string };
    const manifestEntry = await this.#kv.get(snapshotChunkKey(id, 0));
    if (manifestEntry === undefined) throw new SyncError(SyncErrorCode.MissingChangeset, `snapshot ${id} has no manifest`);
    const { manifest, authorKey } = decodeManifest(manifestEntry.value);
    const author = this.#member(manifest.author);
    const ownerAuthored = this.#library.founder === undefined || this.#membership?.everOwners.has(manifest.author) === true;
    if (author === undefined || !ownerAuthored || !Buffer.from(author.publicKey).equals(Buffer.from(authorKey)) || manifest.id !== id) {
      throw new SyncError(SyncErrorCode.Forged, `snapshot ${id} was not published by an owner`);
    }
    const key = this.#keys.get(manifest.generation);
    if (key === undefined)
      throw new SyncError(
        SyncErrorCode.DecryptionFailed,
        `snapshot ${id} is sealed with generation ${manifest.generation}, which this device does not hold`,
      );
    const opened = await getSealedChunks(this.#chunkStore, key, manifest.generation, manifest.chunks, (index) =>
      snapshotChunkKey(id, index),
    );
    if ('failed' in opened)
      throw new SyncError(SyncErrorCode.DecryptionFailed, `snapshot chunk ${opened.failed} is missing or fails authentication`);
    const body = opened.bytes;
    if (hexOf(this.#hashers.blake3(body)) !== manifest.bodyHash)
      throw new SyncError(SyncErrorCode.DecryptionFailed, `snapshot ${id} does not match its manifest`);
    const { cursors, changeset } = decodeSnapshotBody(body);
    const { events, blobs } = decodeChangesetBody(changeset);
    return { manifest, cursors, events, blobs };
  }

  /**
   * Bootstraps this device from the current snapshot: imports its events
   * (idempotently), moves the cursors of the devices it covers forward to
   * the snapshot's, then the usual pull continues from there. Also the way
   * back for a device told `rebootstrapRequired`.
   *
   * @returns whether a snapshot was applied
   */
  bootstrapFromSnapshot(): Promise<boolean> {
    return this.#exclusive(async () => {
      await this.#refreshLibrary();
      return this.#bootstrap();
    });
  }

  async #bootstrap(): Promise<boolean> {
    {
      const snapshot = await this.#readSnapshot();
      if (snapshot === undefined) return false;
      // Like a changeset, a snapshot counts only once the blobs it references are here.
      for (const blob of snapshot.blobs) {
        if (!(await this.#fetchBlob(blob)))
          throw new SyncError(SyncErrorCode.BlobMissing, `blob ${blob} of snapshot ${snapshot.manifest.id} is not in the store`);
      }
      await this.#apply('snapshot', snapshot.events);
      for (const [device, cursor] of Object.entries(snapshot.cursors)) {
        if (device === this.device) continue;
        const current = this.#state.remote[device]?.seq ?? 0;
        if (cursor.seq > current) this.#state.remote[device] = { seq: cursor.seq, hash: cursor.hash };
        this.#known.set(device, Math.max(this.#known.get(device) ?? 0, cursor.seq));
      }
      this.#rebootstrap = false;
      await this.#stateFile.save(this.#state);
      this.#notify();
      return true;
    }
  }

  /**
   * Garbage collection (owner only, under the `leases.gc` lease): purges the
   * changesets that every current member has applied and that the current
   * snapshot covers, once that snapshot is older than `graceMs`. The floor is
   * recorded in `meta.floor.<device>` before anything is purged, so a device
   * that still needed a purged changeset is told to re-bootstrap instead of
   * skipping it.
   *
   * @returns how many changesets were purged per device
   */
  collectGarbage(options: { graceMs?: number; leaseMs?: number } = {}): Promise<Record<string, number>> {
    return this.#exclusive(async () => {
      await this.#refreshLibrary();
      const membership = this.#assertOwner(this.#membership);
      const lease = await acquireLease(this.#kv, {
        key: 'leases.gc',
        holder: this.device,
        ttlMs: options.leaseMs ?? 60_000,
        clock: this.#clock,
      });
      if (lease === undefined) return {};
      try {
        const snapshot = await this.#readSnapshot();
        if (snapshot === undefined || this.#clock() - snapshot.manifest.createdAt < (options.graceMs ?? 24 * 60 * 60 * 1000)) return {};
        const heads = new Map<string, HeadValue>();
        for await (const entry of this.#kv.scan(headsPrefix)) {
          const head = parseHead(entry.value);
          if (head !== undefined) heads.set(deviceOfHeadKey(entry.key), head);
        }
        const active = [...membership.members.values()]
          .filter((member) => member.removedAfter === undefined)
          .map((member) => member.deviceId);
        const purged: Record<string, number> = {};
        for (const [device, cursor] of Object.entries(snapshot.cursors)) {
          let floor = cursor.seq;
          for (const reader of active) {
            if (reader === device) continue;
            floor = Math.min(floor, heads.get(reader)?.applied?.[device] ?? 0);
          }
          const previous = await this.#floorOf(device);
          if (floor <= previous) continue;
          await this.#kv.put(`meta.floor.${device}`, encoder.encode(String(floor)));
          for (let seq = previous + 1; seq <= floor; seq++) {
            const keyPath = changesetKey(device, seq);
            if (this.#kv.capabilities.purge) await this.#kv.purge(keyPath);
            else await this.#kv.delete(keyPath);
          }
          purged[device] = floor - previous;
        }
        return purged;
      } finally {
        await lease.release().catch(() => undefined);
      }
    });
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
    const stop = new AbortController();
    await Promise.race([this.#chain, sleep(options.timeoutMs ?? 5000, stop.signal)]);
    stop.abort();
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

/** What a changeset or a snapshot carries of a local event: a shredded payload travels as shredded, never as bytes. */
function syncedOf(event: LogEvent): SyncedEvent {
  const shredded = event.disposition === 'shredded';
  return {
    id: event.id,
    entity: event.entity,
    scope: event.scope,
    kind: event.kind,
    time: event.time,
    causationId: event.causationId,
    correlationId: event.correlationId,
    parents: event.parents,
    payload: shredded ? new Uint8Array(0) : event.payload,
    shredded,
  };
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
