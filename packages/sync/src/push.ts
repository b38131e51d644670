/**
 * Push: this device's new local events become a signed, sealed changeset,
 * `create`d at `changes.<device>.<seq>` (a retry with the same bytes is a
 * no-op, different bytes are a fork), then the head moves forward with
 * compare-and-swap. The exact bytes are saved before they leave, so every
 * step is safe to crash and retry.
 */
import { bytesEqual, fromBase64, fromHex, toBase64 } from '@weft/common';
import { type KvCommitOp, KvError, KvErrorCode } from '@weft/kv';
import type { Blobs } from './blobs.js';
import type { SyncFaultHooks } from './config.js';
import type { SyncContext } from './context.js';
import {
  decodeChangeset,
  decodeEnvelope,
  encodeChangeset,
  envelopeSignatureValid,
  openEnvelope,
  type SyncedEvent,
  sealEnvelope,
  syncedOf,
} from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { nextHead, parseHead, publishHead } from './heads.js';
import { batchBudgetBytes } from './pull.js';
import { inRanges, type PendingPush } from './state.js';
import { changesetKey, headKey } from './store-layout.js';
import { hexOf } from './util.js';

export class Pusher {
  readonly #context: SyncContext;
  readonly #blobs: Blobs;
  readonly #faults: SyncFaultHooks;
  readonly #maxEvents: number;
  /** Changesets sealed and created per push. */
  readonly #batch: number;
  #ownSeqChecked = false;

  constructor(context: SyncContext, blobs: Blobs, options: { faults: SyncFaultHooks; maxEvents: number; batch: number }) {
    this.#context = context;
    this.#blobs = blobs;
    this.#faults = options.faults;
    this.#maxEvents = options.maxEvents;
    this.#batch = options.batch;
  }

  /** Own local events not yet pushed. */
  pendingUploads(): number {
    const { state, log } = this.#context;
    let pending = 0;
    for (let position = state.pushedPosition + 1; position <= log.head; position++) {
      if (!inRanges(state.imported, position)) pending++;
    }
    return pending;
  }

  /** Moves this device's head to `seq`, with what it applied of the others. */
  publishHead(seq: number): Promise<void> {
    const { kv, device, state, clock } = this.#context;
    const applied = Object.fromEntries(Object.entries(state.remote).map(([other, remote]) => [other, remote.seq]));
    return publishHead(kv, device, seq, applied, clock);
  }

  /**
   * Pushes up to a batch of changesets of pending local events: seals and
   * signs them, saves their exact bytes in one state save, creates them all
   * at once (pipelined), and only after every create landed moves the head
   * once. Returns how many changesets it pushed (0 when there was nothing).
   */
  async pushBatch(): Promise<number> {
    const context = this.#context;
    const { state, stateFile, library, device } = context;
    await this.#checkOwnSeq();
    if (state.pending.length === 0) {
      // Uploads wait while this device may not write, or while a rotation it has not adopted is pending.
      const self = library.member(device);
      const generation = library.generation();
      const key = library.keys.get(generation);
      if (self?.removedAfter !== undefined) {
        context.board.lastError = `this device was removed from library ${library.id} by ${self.removedBy?.author ?? 'an owner'}: it uploads nothing more`;
        return 0;
      }
      if (self === undefined || self.role === 'reader' || key === undefined || library.rotationPending()) return 0;
      // Only what is durable here is pushed: a crash must never leave the store holding events this log lost.
      await context.log.flush();
      const groups = await this.#collectLocal();
      const blobs = [...state.pendingBlobs];
      if (groups.length === 0 && blobs.length === 0) return 0;
      if (groups.length === 0) groups.push([]);
      for (const blob of blobs) await this.#blobs.upload(blob, generation, key);
      let previousHash = state.lastHash;
      for (const [index, events] of groups.entries()) {
        const seq = state.lastSeq + 1 + index;
        const carried = index === 0 ? blobs : [];
        const envelope = sealEnvelope(
          {
            device,
            seq,
            schemaVersion: context.schemaVersion,
            timestamp: context.clock(),
            authorKey: context.identity.publicKey,
            previousHash: fromHex(previousHash),
            keyGeneration: generation,
          },
          encodeChangeset(
            events.map((item) => item.event),
            carried,
          ),
          key,
          library.id,
          changesetKey(device, seq),
          context.cipher,
          context.identity,
        );
        const hash = hexOf(context.hashers.blake3(envelope));
        state.pending.push({
          seq,
          envelope: toBase64(envelope),
          hash,
          lastPosition: events.at(-1)?.position ?? state.pushedPosition,
          blobs: carried,
        });
        previousHash = hash;
      }
      // The exact bytes are kept before they leave, so a retry after any failure sends the same bytes.
      await stateFile.save(state);
    }
    const pending = state.pending;
    const last = pending.at(-1) as PendingPush;
    const envelopes = pending.map((changeset) => ({
      seq: changeset.seq,
      bytes: fromBase64(changeset.envelope),
    }));
    this.#faults.onPushStage?.('prepared', last.seq);
    if (!(await this.#commitPush(envelopes, last.seq))) {
      await Promise.all(envelopes.map(({ seq, bytes }) => this.#createChangeset(changesetKey(device, seq), bytes, seq)));
      this.#faults.onPushStage?.('created', last.seq);
      await context.copies.add(device, envelopes);
      await context.copies.sync();
      await this.publishHead(last.seq);
    }
    this.#faults.onPushStage?.('head-published', last.seq);
    state.lastSeq = last.seq;
    state.lastHash = last.hash;
    state.pushedPosition = Math.max(state.pushedPosition, ...pending.map((changeset) => changeset.lastPosition));
    const sent = new Set(pending.flatMap((changeset) => changeset.blobs ?? []));
    state.pendingBlobs = state.pendingBlobs.filter((blob) => !sent.has(blob));
    state.pending = [];
    await stateFile.save(state);
    this.#faults.onPushStage?.('done', last.seq);
    context.board.known.set(device, last.seq);
    return pending.length;
  }

  /**
   * Where the store commits: the changesets and the head move in one commit,
   * so a device stopped in the middle of a push leaves no changeset above
   * its head for others to report as a gap. The copies are kept first (the
   * head moves with the commit). False when the store cannot commit, the
   * batch is over its limits, or a precondition failed (a retry of this
   * device's own, a fork, a head that moved meanwhile): the step-by-step
   * path then decides, as it does on every store without commit.
   */
  async #commitPush(envelopes: ReadonlyArray<{ seq: number; bytes: Uint8Array }>, seq: number): Promise<boolean> {
    const { kv, device, state, clock, copies } = this.#context;
    const limits = kv.capabilities.commit;
    const bytes = envelopes.reduce((sum, envelope) => sum + envelope.bytes.byteLength, 0) + 64 * 1024;
    if (limits === false || envelopes.length + 1 > limits.maxOps || bytes > limits.maxBytes) return false;
    const current = await kv.get(headKey(device));
    const applied = Object.fromEntries(Object.entries(state.remote).map(([other, remote]) => [other, remote.seq]));
    const head = nextHead(current, device, seq, applied, clock);
    const ops: KvCommitOp[] = envelopes.map((envelope) => ({
      op: 'create',
      key: changesetKey(device, envelope.seq),
      value: envelope.bytes,
    }));
    if (head !== undefined) {
      ops.push(
        current === undefined
          ? { op: 'create', key: headKey(device), value: head }
          : { op: 'update', key: headKey(device), value: head, expected: current.version },
      );
    }
    await copies.add(device, envelopes);
    await copies.sync();
    try {
      await kv.commit(ops);
    } catch (error) {
      if (KvError.is(error, KvErrorCode.AlreadyExists) || KvError.is(error, KvErrorCode.RevisionMismatch)) return false;
      throw error;
    }
    this.#faults.onPushStage?.('created', seq);
    return true;
  }

  /** This device's own events not pushed yet, durable here, in changesets of at most `maxEvents` and the store's value limit. */
  async #collectLocal(): Promise<Array<Array<{ position: number; event: SyncedEvent }>>> {
    const { kv, log, state } = this.#context;
    const groups: Array<Array<{ position: number; event: SyncedEvent }>> = [];
    const budget = Math.max(1024, kv.capabilities.maxValueBytes - 4096);
    let group: Array<{ position: number; event: SyncedEvent }> = [];
    let bytes = 0;
    let total = 0;
    const durable = log.durableHead;
    for await (const event of log.read(state.pushedPosition + 1)) {
      if (event.position > durable) break;
      if (inRanges(state.imported, event.position)) continue;
      const size = event.payload.length + 128 + event.entity.length + event.scope.length + 16 * event.parents.length;
      if (group.length > 0 && (group.length >= this.#maxEvents || bytes + size > budget)) {
        groups.push(group);
        if (groups.length >= this.#batch || total > batchBudgetBytes) return groups;
        group = [];
        bytes = 0;
      }
      bytes += size;
      total += size;
      group.push({ position: event.position, event: syncedOf(event) });
    }
    if (group.length > 0) groups.push(group);
    return groups;
  }

  /** `create` the changeset; a retry that finds identical bytes is a no-op, different bytes are a fork. */
  async #createChangeset(keyPath: string, envelope: Uint8Array, seq: number): Promise<void> {
    const { kv, board, device } = this.#context;
    try {
      await kv.create(keyPath, envelope);
      return;
    } catch (error) {
      if (!KvError.is(error, KvErrorCode.AlreadyExists)) throw error;
    }
    const existing = await kv.get(keyPath);
    if (existing !== undefined && bytesEqual(existing.value, envelope)) {
      board.duplicates.identicalRetries++;
      return;
    }
    const fork = new SyncError(SyncErrorCode.Fork, `another changeset already sits at ${keyPath}: this device's history forked`, {
      device,
      seq,
    });
    board.alarm(fork);
    throw fork;
  }

  /**
   * Before the first push: find this device's real highest changeset, in case
   * the state file is older than the store (a lost or restored state file).
   */
  async #checkOwnSeq(): Promise<void> {
    if (this.#ownSeqChecked) return;
    const { kv, device, state, library, log, stateFile } = this.#context;
    const head = await kv.get(headKey(device));
    const headSeq = head === undefined ? 0 : (parseHead(head.value)?.seq ?? 0);
    let seq = state.lastSeq;
    for (;;) {
      if (state.pending[0]?.seq === seq + 1) break;
      const next = await kv.get(changesetKey(device, seq + 1));
      if (next === undefined) {
        if (seq + 1 <= headSeq)
          throw new SyncError(SyncErrorCode.MissingChangeset, `own changeset ${seq + 1} is missing from the store`, {
            device,
            seq: seq + 1,
          });
        break;
      }
      const envelope = decodeEnvelope(next.value);
      const ownKey = library.keys.get(envelope.keyGeneration);
      const body =
        ownKey === undefined ? undefined : openEnvelope(envelope, ownKey, library.id, changesetKey(device, seq + 1), this.#context.cipher);
      if (body === undefined || !envelopeSignatureValid(envelope)) {
        throw new SyncError(SyncErrorCode.Forged, `own changeset ${seq + 1} does not verify`, { device, seq: seq + 1 });
      }
      // Its events are already out: mark them pushed.
      for (const event of decodeChangeset(body)) {
        const local = await log.get(event.id);
        if (local !== undefined) state.pushedPosition = Math.max(state.pushedPosition, local.position);
      }
      seq++;
      state.lastSeq = seq;
      state.lastHash = hexOf(this.#context.hashers.blake3(next.value));
    }
    if (seq > 0 && headSeq < seq) await this.publishHead(seq);
    await stateFile.save(state);
    this.#ownSeqChecked = true;
  }
}
