/**
 * Pull: for every device whose head is ahead of what this device applied,
 * fetch its next changesets in order, verify each, fetch the blobs it
 * references, apply its events idempotently (events whose causal parents are
 * missing wait for them) and move the device's cursor.
 */
import { bytesEqual, fromBase64, toBase64 } from '@weft/common';
import { type EventId, EventLogError } from '@weft/eventlog';
import { maxGetManyKeys } from '@weft/kv';
import type { Blobs } from './blobs.js';
import type { SyncContext } from './context.js';
import { decodeChangeset, decodeEnvelope, encodeChangeset, envelopeSignatureValid, type SyncedEvent } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { deviceTagHex, idTagHex } from './identity.js';
import { importTag } from './imports.js';
import { addRange, zeroHashHex } from './state.js';
import { countField } from './statements.js';
import { changesetKey, floorKey } from './store-layout.js';
import { hexOf } from './util.js';
import { checkEnvelope, type VerifiedChangeset, verifyChangeset } from './verify.js';

/** What a batch of one device's changesets may take in memory, about: it bounds the window of a pull. */
export const batchBudgetBytes = 16 * 1024 * 1024;

/** What one batch of a device's changesets came to; `bytes` is the size of its largest changeset. */
interface BatchOutcome {
  readonly applied: number;
  readonly stop: 'missing' | 'held' | 'full';
  readonly bytes: number;
}

export class Puller {
  readonly #context: SyncContext;
  readonly #blobs: Blobs;
  /** Per removed device, the hashes of its changesets up to the cutoff, checked to end in the bound hash. */
  readonly #pinned = new Map<string, Map<number, string>>();
  /** The most changesets of one device fetched at once. */
  readonly #window: number;
  /**
   * Per device, how many of its changesets the next batch fetches: one at
   * first, then as many as fit the byte budget at the sizes seen; halved
   * when a batch fails (a store that did not answer in time may have been
   * asked for more than it could send), grown again by the next success.
   */
  readonly #windows = new Map<string, number>();

  constructor(context: SyncContext, blobs: Blobs, options: { window: number }) {
    this.#context = context;
    this.#blobs = blobs;
    this.#window = options.window;
  }

  /**
   * The garbage-collection floor of a device: its changesets up to it may be
   * gone. Only a floor signed by a current owner counts; anything else is
   * reported and read as no floor.
   */
  async floorOf(device: string): Promise<number> {
    const { kv, library, board } = this.#context;
    const keyPath = floorKey(device);
    const stored = await kv.get(keyPath);
    if (stored === undefined) return 0;
    try {
      const statement = library.acceptStatement(stored.value, 'floor', keyPath);
      if (statement.body.device !== device)
        throw new SyncError(SyncErrorCode.Forged, `${keyPath} holds the floor of ${String(statement.body.device)}`);
      return countField(statement, 'floor');
    } catch (error) {
      if (!SyncError.is(error)) throw error;
      board.alarm(new SyncError(error.code, `${keyPath} is ignored: ${error.message}`, { device, seq: 0 }));
      return 0;
    }
  }

  /**
   * Pulls every device's changesets in order. Heads are hints, never limits:
   * every member (and every device with a head) is probed past what this
   * device applied, so a stale head hides nothing that exists.
   *
   * @returns how many changesets were applied
   */
  async pullAll(): Promise<number> {
    const { board, library, device: self } = this.#context;
    // A device held back by bad data is tried again each round: the store may have been repaired.
    board.stuck.clear();
    const devices = new Set(board.known.keys());
    for (const device of library.memberIds()) devices.add(device);
    devices.delete(self);
    let pulled = 0;
    for (const device of devices) pulled += await this.#pullDevice(device);
    return pulled;
  }

  async #pullDevice(device: string): Promise<number> {
    const { board, state, library } = this.#context;
    const member = library.member(device);
    const cutoff = member?.removedAfter;
    if (cutoff !== undefined) {
      const applied = state.remote[device] ?? { seq: 0, hash: zeroHashHex };
      if (applied.seq === cutoff && member?.cutoffHash !== undefined && applied.hash !== member.cutoffHash) {
        this.#hold(
          device,
          new SyncError(
            SyncErrorCode.Equivocation,
            `${device} was removed at its changeset ${cutoff} with another hash than the one applied here: its history was rewritten`,
            { device, seq: cutoff },
          ),
        );
        return 0;
      }
      // Nothing after the cutoff counts (a changeset there is probed only to report it as revoked); what is
      // before it is applied only once the chain is seen to end in the bound hash.
      if (applied.seq >= cutoff) {
        await this.#pullBatch(device, 1);
        return 0;
      }
      if (!(await this.#pinRemovedChain(device, cutoff))) return 0;
    }
    let pulled = 0;
    for (;;) {
      const applied = state.remote[device]?.seq ?? 0;
      if (board.stuck.has(device) || (cutoff !== undefined && applied >= cutoff)) break;
      // Up to the window, and no further than the head announces unless the head is behind (heads are hints:
      // at least one is always asked for). The window is in bytes as much as in changesets: a first batch
      // never asks for more than one changeset whose size is unknown.
      const window = this.#windows.get(device) ?? 1;
      const head = board.known.get(device) ?? 0;
      let want = Math.max(1, Math.min(window, head - applied));
      if (cutoff !== undefined) want = Math.min(want, cutoff - applied);
      let batch: BatchOutcome;
      try {
        batch = await this.#pullBatch(device, want);
      } catch (error) {
        this.#windows.set(device, Math.max(1, Math.floor(want / 2)));
        throw error;
      }
      const { applied: count, stop, bytes } = batch;
      pulled += count;
      // As many next time as fit the budget at this batch's sizes (its largest, so one big changeset counts).
      this.#windows.set(device, Math.max(1, Math.min(this.#window, Math.floor(batchBudgetBytes / Math.max(1, bytes)))));
      if (stop === 'missing') await this.#checkGap(device);
      if (stop !== 'full') break;
    }
    if (pulled > 0 && (state.remote[device]?.seq ?? 0) >= (board.gaps.get(device) ?? Number.POSITIVE_INFINITY)) board.gaps.delete(device);
    return pulled;
  }

  /** A device is held back this round; the error is an alarm. */
  #hold(device: string, error: SyncError): void {
    const { board, library, device: self } = this.#context;
    const removed = library.member(self)?.removedBy;
    if (removed !== undefined && error.code === SyncErrorCode.DecryptionFailed) {
      // A removed device cannot read what was sealed after its removal: that is its removal, not an attack.
      board.stuck.set(device, `this device was removed by ${removed.author}: it cannot read changesets sealed after its removal`);
      this.#context.notify();
      return;
    }
    board.alarm(error);
    board.stuck.set(device, error.code === SyncErrorCode.SchemaTooNew ? error.message : `${error.code}: ${error.message}`);
    this.#context.notify();
  }

  /**
   * The next changeset of `device` is not in the store. That is the end of
   * its chain, unless something says otherwise: its head, another member's
   * applied map, or a later changeset that exists. Then it is a gap: below
   * the garbage-collection floor this device must bootstrap again; above it,
   * it is an alarm until the store is repaired.
   */
  async #checkGap(device: string): Promise<void> {
    const { board, state, kv } = this.#context;
    const seq = (state.remote[device]?.seq ?? 0) + 1;
    const keyPath = changesetKey(device, seq);
    const head = board.known.get(device) ?? 0;
    const claimed = board.claimed.get(device);
    let evidence: string | undefined;
    if (head >= seq) evidence = `its head announces ${head}`;
    else if (claimed !== undefined && claimed.seq >= seq) evidence = `${claimed.by} says it applied ${claimed.seq}`;
    else if ((await kv.get(changesetKey(device, seq + 1))) !== undefined) evidence = `changeset ${seq + 1} exists`;
    if (evidence === undefined) {
      board.gaps.delete(device);
      return;
    }
    const floor = await this.floorOf(device);
    if (seq <= floor) {
      // Garbage-collected below this device's cursor: never skip forward, ask for a bootstrap.
      board.rebootstrap = true;
      board.stuck.set(device, `${keyPath} was garbage-collected`);
      board.alarm(
        new SyncError(
          SyncErrorCode.RebootstrapRequired,
          `${keyPath} was garbage-collected before this device applied it; bootstrap from the snapshot again`,
          {
            device,
            seq,
          },
        ),
      );
      return;
    }
    board.gaps.set(device, seq);
    board.alarm(new SyncError(SyncErrorCode.ChangesetGap, `${keyPath} is missing from the store, but ${evidence}`, { device, seq }));
  }

  /**
   * Before anything of a removed device below its cutoff is applied: walk
   * its chain from this device's cursor to the cutoff (signatures and hashes,
   * no decryption) and check it ends in the hash the removal bound. The
   * hashes are pinned, so the store cannot swap a changeset in afterwards.
   */
  async #pinRemovedChain(device: string, cutoff: number): Promise<boolean> {
    const context = this.#context;
    const { state, library, kv } = context;
    const member = library.member(device);
    const pinned = this.#pinned.get(device);
    if (pinned?.has(cutoff) === true) return true;
    const hashes = new Map<number, string>();
    let previous = state.remote[device] ?? { seq: 0, hash: zeroHashHex };
    for (let seq = previous.seq + 1; seq <= cutoff; seq++) {
      const keyPath = changesetKey(device, seq);
      const entry = await kv.get(keyPath);
      if (entry === undefined) {
        await this.#checkGap(device);
        if (!context.board.gaps.has(device) && !context.board.stuck.has(device))
          this.#hold(
            device,
            new SyncError(SyncErrorCode.ChangesetGap, `${keyPath} is missing below the cutoff ${cutoff} of removed ${device}`, {
              device,
              seq,
            }),
          );
        return false;
      }
      const hash = hexOf(context.hashers.blake3(entry.value));
      try {
        checkEnvelope(entry.value, {
          device,
          seq,
          keyPath,
          hash,
          previousHash: previous.hash,
          member,
          schemaVersion: Number.MAX_SAFE_INTEGER,
        });
      } catch (error) {
        if (!SyncError.is(error)) throw error;
        this.#hold(device, error);
        return false;
      }
      hashes.set(seq, hash);
      previous = { seq, hash };
    }
    this.#pinned.set(device, hashes);
    return true;
  }

  /**
   * Fetches the next `count` changesets of `device` at once (one batch read,
   * or pipelined reads), verifies them in chain order and stops at the first that is
   * missing, unverifiable or waiting for a blob; applies the verified ones
   * with one append, one flush and one state save.
   */
  /**
   * Fetches, verifies and applies up to `count` changesets of `device` after
   * its cursor. `bytes` is the size of the largest changeset fetched.
   */
  async #pullBatch(device: string, count: number): Promise<BatchOutcome> {
    const context = this.#context;
    const { board, state, library } = context;
    const start = state.remote[device] ?? { seq: 0, hash: zeroHashHex };
    const seqs = Array.from({ length: count }, (_, index) => start.seq + 1 + index);
    // One batch read where the store has one (NATS 2.11+: a batch direct get), in pieces of at most maxGetManyKeys.
    const keys = seqs.map((seq) => changesetKey(device, seq));
    const pieces: string[][] = [];
    for (let at = 0; at < keys.length; at += maxGetManyKeys) pieces.push(keys.slice(at, at + maxGetManyKeys));
    const entries = (await Promise.all(pieces.map((piece) => context.kv.getMany(piece)))).flat();
    const bytes = entries.reduce((largest, entry) => Math.max(largest, entry?.value.length ?? 0), 0);
    const verified: Array<{ seq: number; hash: string; events: SyncedEvent[]; bytes: Uint8Array }> = [];
    let previous = start.hash;
    let stop: 'missing' | 'held' | 'full' = 'full';
    for (const [index, seq] of seqs.entries()) {
      const entry = entries[index];
      const keyPath = changesetKey(device, seq);
      if (entry === undefined) {
        stop = 'missing';
        break;
      }
      const hash = hexOf(context.hashers.blake3(entry.value));
      let changeset: VerifiedChangeset;
      try {
        const pinned = this.#pinned.get(device)?.get(seq);
        if (pinned !== undefined && pinned !== hash)
          throw new SyncError(
            SyncErrorCode.Equivocation,
            `${keyPath}: the store served another changeset than the one checked against the cutoff`,
            {
              device,
              seq,
            },
          );
        changeset = verifyChangeset(entry.value, {
          device,
          seq,
          keyPath,
          hash,
          previousHash: previous,
          member: library.member(device),
          keys: library.keys,
          libraryId: library.id,
          schemaVersion: context.schemaVersion,
          cipher: context.cipher,
        });
      } catch (error) {
        if (!SyncError.is(error)) throw error;
        this.#noteGeneration(entry.value, device);
        this.#hold(device, error);
        stop = 'held';
        break;
      }
      board.generationSeen = Math.max(board.generationSeen, changeset.keyGeneration);
      // The cursor moves past a changeset only once its blobs are stored here.
      let blobsHere = true;
      for (const blob of changeset.blobs) {
        if (!(await this.#blobs.fetch(blob))) {
          board.lastError = `blob ${blob} of ${keyPath} is not in the store yet`;
          blobsHere = false;
          break;
        }
      }
      if (!blobsHere) {
        stop = 'held';
        break;
      }
      verified.push({ seq, hash, events: changeset.events, bytes: entry.value });
      previous = hash;
    }
    const last = verified.at(-1);
    if (last === undefined) return { applied: 0, stop, bytes };
    await this.apply(
      device,
      verified.flatMap((changeset) => changeset.events),
    );
    // Kept byte for byte before the cursor moves: what this device writes back if the store forgets them.
    await context.copies.add(device, verified);
    await context.copies.sync();
    state.remote[device] = { seq: last.seq, hash: last.hash };
    state.scannedPosition = Math.max(state.scannedPosition, context.log.durableHead);
    await context.stateFile.save(state);
    return { applied: verified.length, stop, bytes };
  }

  /**
   * A member's signed changeset sealed with a generation this device has not
   * heard of means a rotation it has not learned yet (entries withheld or
   * late): this device stops sealing with the old key until it catches up.
   */
  #noteGeneration(bytes: Uint8Array, device: string): void {
    const { library, board } = this.#context;
    const member = library.member(device);
    if (member === undefined) return;
    try {
      const envelope = decodeEnvelope(bytes);
      if (
        envelope.keyGeneration > board.generationSeen &&
        bytesEqual(envelope.authorKey, member.publicKey) &&
        envelopeSignatureValid(envelope)
      )
        board.generationSeen = envelope.keyGeneration;
    } catch {
      // not an envelope: verification reported it
    }
  }

  /**
   * The events of a member's changeset that it may carry: an event whose id
   * bears another member's tag was written by that member, and is refused
   * (`Forged`). Events of a snapshot (signed by an owner) carry everyone's.
   */
  #authored(device: string, events: readonly SyncedEvent[]): readonly SyncedEvent[] {
    const { library, board } = this.#context;
    if (device === 'snapshot') return events;
    const ownTag = deviceTagHex(device);
    if (events.every((event) => idTagHex(event.id) === ownTag)) return events;
    const tags = new Map(library.memberIds().map((member) => [deviceTagHex(member), member]));
    return events.filter((event) => {
      const author = tags.get(idTagHex(event.id));
      if (author === undefined || author === device) return true;
      board.alarm(
        new SyncError(SyncErrorCode.Forged, `${device} published event ${event.id}, which ${author} wrote: the copy is refused`, {
          device,
        }),
      );
      return false;
    });
  }

  /** A copy of an event this device holds must say what the held one says: another is an alarm, and is not taken. */
  async #compareCopies(device: string, copies: readonly SyncedEvent[]): Promise<void> {
    const { log, board } = this.#context;
    for (const copy of copies) {
      const held = await log.get(copy.id);
      if (held === undefined) continue;
      const payloadsComparable = held.disposition !== 'shredded' && !copy.shredded;
      const same =
        held.entity === copy.entity &&
        held.kind === copy.kind &&
        held.time === copy.time &&
        (!payloadsComparable || bytesEqual(held.payload, copy.payload));
      if (!same)
        board.alarm(
          new SyncError(
            SyncErrorCode.Equivocation,
            `${device} published event ${copy.id} with other contents than the copy this device holds: kept the first`,
            {
              device,
            },
          ),
        );
    }
  }

  /** Appends what is new; events whose causal parents are missing wait for them. */
  async apply(device: string, incoming: readonly SyncedEvent[]): Promise<void> {
    const { state, log, board } = this.#context;
    const events = this.#authored(device, incoming);
    const parked = state.parked.flatMap((item) => decodeChangeset(fromBase64(item.event)).map((event) => ({ device: item.device, event })));
    let waiting = [...parked, ...events.map((event) => ({ device, event }))];
    const copies: SyncedEvent[] = [];
    for (;;) {
      const ready: SyncedEvent[] = [];
      const seen = new Set<string>();
      const still: typeof waiting = [];
      for (const item of waiting) {
        const { event } = item;
        if (log.has(event.id) || seen.has(event.id)) {
          board.duplicates.events++;
          if (item.device === device && device !== 'snapshot') copies.push(event);
          continue;
        }
        const parentsPresent = event.parents.every((parent) => log.has(parent) || seen.has(parent));
        if (parentsPresent) {
          ready.push(event);
          seen.add(event.id);
        } else still.push(item);
      }
      if (ready.length > 0) await this.#append(ready);
      waiting = still;
      if (ready.length === 0) break;
    }
    state.parked = waiting.map((item) => ({
      device: item.device,
      event: toBase64(encodeChangeset([item.event])),
    }));
    if (copies.length > 0) await this.#compareCopies(device, copies);
  }

  async #append(events: readonly SyncedEvent[]): Promise<void> {
    const { log, state } = this.#context;
    for (let start = 0; start < events.length; start += 0xffff) {
      const slice = events.slice(start, start + 0xffff);
      try {
        const receipt = await log.appendBatch(
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
          // Tagged in the log itself, so the import is known even if the state is not saved after it.
          { label: importTag(slice.length, (slice[0] as SyncedEvent).id) },
        );
        const first = receipt.events[0]?.position ?? 0;
        addRange(state.imported, first, receipt.position);
        // The cursor moves only past durable events; a log that syncs lazily ('none', 'interval') is flushed now.
        await log.flush();
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

  /** The ids of events waiting for parents. */
  waitingEventIds(): EventId[] {
    return this.#context.state.parked.flatMap((item) => decodeChangeset(fromBase64(item.event)).map((event) => event.id));
  }
}
