/**
 * The `Sync` handle of one device: opens its parts (library view, push,
 * pull, blobs, snapshots), runs them one step at a time, keeps the heads
 * watch and, in live mode, the local trigger and the retry timer.
 */

import { pause, traced, unrefTimer, weftChannel } from '@weft/common';
import type { EventId } from '@weft/eventlog';
import { loadHashers, loadXChaCha } from '@weft/eventlog';
import { LocalBlobStore } from './blob-store.js';
import { Blobs } from './blobs.js';
import { ChangesetCopies } from './changeset-copies.js';
import { assertLibraryConfig, type Invitation, type SyncOptions } from './config.js';
import type { SyncContext } from './context.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { collectGarbage } from './gc.js';
import { HeadsWatch } from './heads-watch.js';
import { Healer } from './heal.js';
import { idTagOf } from './identity.js';
import { recoverImports } from './imports.js';
import { Library } from './library.js';
import type { MembershipState, Role } from './membership.js';
import { addMember, removeMember, restoreWraps, rotateKey, setMinSchemaVersion, setRole } from './membership-admin.js';
import { Puller } from './pull.js';
import { Pusher } from './push.js';
import { Snapshots } from './snapshots.js';
import { StateFile } from './state.js';
import { StatusBoard, type SyncStatus } from './status.js';

/** What a traced sync round publishes (docs/guides/observability.md): the library and this device; `result` is the count. */
export interface SyncRoundContext {
  readonly library: string;
  readonly device: string;
}

/** The tracing channels of sync rounds: `weft:sync:push` (changesets pushed) and `weft:sync:pull` (changesets applied). */
export const syncPushChannel = weftChannel<SyncRoundContext>('weft:sync:push');
export const syncPullChannel = weftChannel<SyncRoundContext>('weft:sync:pull');

/**
 * Opens sync for one device: its local log replicated with the other
 * devices of a library through one KV bucket.
 *
 * @throws {SyncError} `InvalidArgument`, `StateFailed`
 */
export async function openSync(options: SyncOptions): Promise<Sync> {
  assertLibraryConfig(options.library, options.identity);
  // The ids of events this device writes from now on name it (docs/protocols/sync.md, "Authored events").
  options.log.tagIds(idTagOf(options.identity.deviceId));
  const fs = options.fs ?? options.log.fileSystem;
  const dir = options.stateDir ?? options.log.dir;
  const stateFile = new StateFile(fs, dir);
  const state = await stateFile.load(options.identity.deviceId);
  const copies = await ChangesetCopies.open(fs, dir);
  // Imports the state does not know yet (it was not saved after them) are found in the log itself.
  const scanned = state.scannedPosition;
  await recoverImports(options.log, state);
  // Saved whenever the scan moved, so the next open reads only what is new since.
  if (state.scannedPosition > scanned) await stateFile.save(state);
  const hashers = await loadHashers();
  const cipher = await loadXChaCha(options.cipher);
  const clock = options.clock ?? Date.now;
  const board = new StatusBoard(clock);
  const schemaVersion = options.schemaVersion ?? 1;
  const library = new Library({
    config: options.library,
    kv: options.kv,
    identity: options.identity,
    hashers,
    cipher,
    board,
    schemaVersion,
    state,
    stateFile,
  });
  let sync: Sync | undefined;
  const context: SyncContext = {
    device: options.identity.deviceId,
    log: options.log,
    kv: options.kv,
    identity: options.identity,
    library,
    state,
    stateFile,
    copies,
    hashers,
    cipher,
    chunkStore: { kv: options.kv, cipher, libraryId: options.library.id },
    clock,
    schemaVersion,
    board,
    notify: () => sync?.notify(),
  };
  sync = new Sync(context, options, new LocalBlobStore(fs, dir));
  sync.start();
  return sync;
}

/** A device's sync. See {@link openSync}. */
export class Sync implements AsyncDisposable {
  readonly device: string;
  readonly #context: SyncContext;
  readonly #blobs: Blobs;
  readonly #pusher: Pusher;
  readonly #puller: Puller;
  readonly #snapshots: Snapshots;
  readonly #heads: HeadsWatch;
  readonly #healer: Healer;
  readonly #live: boolean;
  readonly #pollIntervalMs: number;
  readonly #bootstrapMode: 'snapshot' | 'replay';
  readonly #listeners = new Set<(status: SyncStatus) => void>();
  readonly #closing = new AbortController();
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #watchTask: Promise<void> | undefined;
  #subscriptionTask: Promise<void> | undefined;

  /** @internal use {@link openSync} */
  constructor(context: SyncContext, options: SyncOptions, localBlobs: LocalBlobStore) {
    this.device = context.device;
    this.#context = context;
    this.#blobs = new Blobs(context, localBlobs);
    const batch = options.batchChangesets ?? 256;
    this.#pusher = new Pusher(context, this.#blobs, {
      faults: options.faults ?? {},
      maxEvents: options.maxEventsPerChangeset ?? 256,
      batch,
    });
    this.#puller = new Puller(context, this.#blobs, { window: batch });
    this.#snapshots = new Snapshots(context, this.#puller, this.#blobs);
    this.#heads = new HeadsWatch(context);
    this.#healer = new Healer(
      context,
      (device) => this.#puller.floorOf(device),
      (seq) => this.#pusher.publishHead(seq),
    );
    this.#live = options.live ?? true;
    this.#pollIntervalMs = options.pollIntervalMs ?? 5000;
    this.#bootstrapMode = options.bootstrap ?? 'snapshot';
    for (const [device, remote] of Object.entries(context.state.remote)) context.board.known.set(device, remote.seq);
  }

  /** @internal starts the heads watch, and in live mode the local trigger and the retry timer. */
  start(): void {
    this.#watchTask = this.#heads.watch(this.#closing.signal, () => {
      if (this.#live) this.#schedule(0);
    });
    if (!this.#live) return;
    this.#subscriptionTask = this.#followLocalAppends();
    this.#schedule(0);
  }

  // ------------------------------------------------------------------ status

  status(): SyncStatus {
    const { board, state, library } = this.#context;
    const devices: Record<string, { head: number; applied: number; lag: number; stuck: string | undefined }> = {};
    // Devices whose head was seen, and those applied without one (heads are hints: pulls probe past them).
    for (const device of new Set([...board.known.keys(), ...Object.keys(state.remote)])) {
      if (device === this.device) continue;
      const applied = state.remote[device]?.seq ?? 0;
      const head = Math.max(board.known.get(device) ?? 0, applied);
      devices[device] = { head, applied, lag: head - applied, stuck: board.stuck.get(device) };
    }
    const self = library.member(this.device);
    return {
      device: this.device,
      lastPushedSeq: state.lastSeq,
      pendingUploads: this.#pusher.pendingUploads(),
      devices,
      waitingForParents: state.parked.length,
      rotationPending: library.rotationPending(),
      role: self?.removedAfter === undefined ? self?.role : undefined,
      removed:
        self?.removedAfter === undefined || self.removedBy === undefined
          ? undefined
          : { by: self.removedBy.author, entry: self.removedBy.entry, cutoff: self.removedAfter },
      keyGeneration: library.generation(),
      rebootstrapRequired: board.rebootstrap,
      lastError: board.lastError,
      alarms: [...board.alarms],
      duplicates: { ...board.duplicates },
    };
  }

  /** Calls `listener` with the status after every change; returns a function that unsubscribes. */
  onStatus(listener: (status: SyncStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** @internal tells the status listeners. */
  notify(): void {
    if (this.#listeners.size === 0) return;
    const status = this.status();
    for (const listener of this.#listeners) listener(status);
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
      const { library, log, state, board } = this.#context;
      await library.refresh();
      // Concurrent rotations left the generation in force without a key: an owner that sees it rotates again.
      if (library.rotationNeeded()) await rotateKey(this.#context);
      // The store forgot membership entries: the wraps written with them may be gone too.
      if (library.takeForgotten() && library.isActiveOwner(this.device)) await restoreWraps(this.#context);
      // A device that has nothing yet starts from the snapshot, if there is one it can open.
      if (this.#bootstrapMode === 'snapshot' && log.head === 0 && Object.keys(state.remote).length === 0 && library.keys.size > 0) {
        await board.alarmOn(this.#snapshots.bootstrap(), false);
      }
      const pushed = await traced(
        syncPushChannel,
        () => this.#roundContext(),
        () => this.#pushAll(),
      );
      const pulled = await traced(
        syncPullChannel,
        () => this.#roundContext(),
        () => this.#puller.pullAll(),
      );
      // What the store forgot of what this device wrote or applied is written back.
      await this.#healer.heal();
      if (this.#heads.takeRepublish() || pulled > 0) await this.#pusher.publishHead(state.lastSeq);
      this.notify();
      return { pushed, pulled };
    });
  }

  async #pushAll(): Promise<number> {
    let pushed = 0;
    for (let count = await this.#pusher.pushBatch(); count > 0; count = await this.#pusher.pushBatch()) pushed += count;
    return pushed;
  }

  #roundContext(): SyncRoundContext {
    return { library: this.#context.library.id, device: this.#context.device };
  }

  /**
   * Re-reads every head from the store (anti-entropy: heals missed watch
   * events). A listing is a fresh read, so a head lower than one seen before,
   * or than what another member says it applied, is an alarm.
   */
  refreshHeads(): Promise<void> {
    return this.#exclusive(() => this.#heads.refresh());
  }

  /**
   * Syncs until this device has pushed everything and applied every
   * changeset the store announces (or a device is stuck), or the timeout passes.
   *
   * @throws {SyncError} `Closed`; the last error when the timeout passes
   */
  async waitUntilCaughtUp(options: { timeoutMs?: number } = {}): Promise<void> {
    const { clock, board } = this.#context;
    const deadline = clock() + (options.timeoutMs ?? 30_000);
    for (;;) {
      try {
        // A round that hangs (a store that stops answering) must not outlive the deadline.
        const round = (async () => {
          await this.refreshHeads();
          await this.syncOnce();
        })();
        const remaining = Math.max(0, deadline - clock());
        const outcome = await Promise.race([
          round.then(() => 'done' as const),
          pause(remaining, this.#closing.signal).then(() => 'late' as const),
        ]);
        if (outcome === 'late') round.catch(() => undefined);
        else if (this.#caughtUp()) return;
        const removedBy = this.#context.library.member(this.device)?.removedBy;
        if (removedBy !== undefined)
          throw new SyncError(
            SyncErrorCode.NotAllowed,
            `this device was removed from library ${this.#context.library.id} by ${removedBy.author}: it uploads nothing more and cannot catch up`,
          );
      } catch (error) {
        if (SyncError.is(error, SyncErrorCode.Closed) || SyncError.is(error, SyncErrorCode.NotAllowed)) throw error;
        board.lastError = error instanceof Error ? error.message : String(error);
      }
      if (clock() > deadline) {
        throw new SyncError(
          SyncErrorCode.MissingChangeset,
          `not caught up in time: ${board.lastError ?? JSON.stringify(this.status().devices)}`,
        );
      }
      await pause(50, this.#closing.signal);
    }
  }

  #caughtUp(): boolean {
    const { state, board } = this.#context;
    if (this.#pusher.pendingUploads() > 0 || state.pending.length > 0 || board.gaps.size > 0 || board.unrestored.size > 0) return false;
    for (const [device, head] of board.known) {
      if (device === this.device || board.stuck.has(device)) continue;
      if ((state.remote[device]?.seq ?? 0) < head) return false;
    }
    return true;
  }

  #schedule(delayMs: number): void {
    if (this.#closed || !this.#live) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#tick(), delayMs);
    unrefTimer(this.#timer);
  }

  async #tick(): Promise<void> {
    const { board } = this.#context;
    try {
      await this.refreshHeads();
      await this.syncOnce();
      this.#failures = 0;
      board.lastError = undefined;
      this.#schedule(this.#pollIntervalMs);
    } catch (error) {
      if (this.#closed) return;
      board.lastError = error instanceof Error ? error.message : String(error);
      this.#failures++;
      // Exponential backoff with jitter, independent of new writes.
      const base = Math.min(30_000, 100 * 2 ** Math.min(this.#failures, 8));
      this.#schedule(Math.floor(base * (0.5 + Math.random())));
      this.notify();
    }
  }

  /** Live mode: local appends trigger a push soon. */
  async #followLocalAppends(): Promise<void> {
    const { log } = this.#context;
    try {
      for await (const item of log.subscribe({ from: log.head + 1, signal: this.#closing.signal })) {
        if (item.type === 'event' && !this.#closed) this.#schedule(10);
      }
    } catch {
      // the log closed: nothing more to follow
    }
  }

  // ------------------------------------------------------------------- blobs

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
      await this.#context.library.refresh();
      return this.#blobs.add(bytes);
    });
  }

  /** A blob stored on this device (added here, or fetched with the changeset that referenced it). */
  getBlob(id: string): Promise<Uint8Array | undefined> {
    if (!/^[0-9a-f]{64}$/.test(id)) return Promise.reject(new SyncError(SyncErrorCode.InvalidArgument, `${id} is not a blob id`));
    return this.#blobs.read(id);
  }

  // ------------------------------------------------------------- membership

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
      await this.#context.library.refresh();
      await addMember(this.#context, invitation, role);
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
      await this.#context.library.refresh();
      return removeMember(this.#context, deviceId, () => this.#puller.pullAll());
    });
  }

  /**
   * Rotates the library key (owner only): wraps a new key generation for
   * every current member and writes the rotation. Owners do this on their own
   * when concurrent rotations leave the generation in force without a key.
   *
   * @throws {SyncError} `NotAllowed`
   */
  rotateKey(): Promise<{ generation: number }> {
    return this.#exclusive(async () => {
      await this.#context.library.refresh();
      return rotateKey(this.#context);
    });
  }

  /** Changes a member's role (owner only). */
  setRole(deviceId: string, role: Role): Promise<void> {
    return this.#exclusive(async () => {
      await this.#context.library.refresh();
      await setRole(this.#context, deviceId, role);
    });
  }

  /** The membership this device derives from the chain (members, roles, generation, rejected entries). */
  membership(): MembershipState | undefined {
    return this.#context.library.membership;
  }

  /**
   * Raises `meta.min_schema_version` (compare-and-swap, never lowers it):
   * devices below it refuse to sync until upgraded.
   */
  setMinSchemaVersion(version: number): Promise<void> {
    return this.#exclusive(() => setMinSchemaVersion(this.#context, version));
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
      await this.#context.library.refresh();
      return this.#snapshots.publish(options);
    });
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
      await this.#context.library.refresh();
      try {
        return await this.#snapshots.bootstrap();
      } catch (error) {
        if (SyncError.is(error)) this.#context.board.alarm(error);
        throw error;
      }
    });
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
      await this.#context.library.refresh();
      return collectGarbage(this.#context, { snapshots: this.#snapshots, puller: this.#puller }, options);
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
    await Promise.race([this.#chain, pause(options.timeoutMs ?? 5000, stop.signal)]);
    stop.abort();
    await Promise.allSettled([this.#watchTask, this.#subscriptionTask]);
    await this.#context.stateFile.save(this.#context.state).catch(() => undefined);
    await this.#context.copies.close().catch(() => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new SyncError(SyncErrorCode.Closed, 'sync is closed');
  }

  /** @internal for tests: the ids of events waiting for parents. */
  waitingEventIds(): EventId[] {
    return this.#puller.waitingEventIds();
  }
}
