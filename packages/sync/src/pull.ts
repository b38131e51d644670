/**
 * Pull: for every device whose head is ahead of what this device applied,
 * fetch its next changesets in order, verify each, fetch the blobs it
 * references, apply its events idempotently (events whose causal parents are
 * missing wait for them) and move the device's cursor.
 */
import { type EventId, EventLogError } from '@weft/eventlog';
import type { Blobs } from './blobs.js';
import type { SyncContext } from './context.js';
import { decodeChangeset, encodeChangeset, type SyncedEvent } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { hexOf } from './sleep.js';
import { addRange, zeroHashHex } from './state.js';
import { changesetKey, floorKey } from './store-layout.js';
import { type VerifiedChangeset, verifyChangeset } from './verify.js';

export class Puller {
  readonly #context: SyncContext;
  readonly #blobs: Blobs;

  constructor(context: SyncContext, blobs: Blobs) {
    this.#context = context;
    this.#blobs = blobs;
  }

  /** The garbage-collection floor of a device: its changesets up to it may be gone. */
  async floorOf(device: string): Promise<number> {
    const floor = await this.#context.kv.get(floorKey(device));
    return floor === undefined ? 0 : Number(new TextDecoder().decode(floor.value)) || 0;
  }

  /** Pulls every changeset the known heads announce; returns how many were applied. */
  async pullAll(): Promise<number> {
    const { board, state, device: self } = this.#context;
    // A device held back by bad data is tried again each round: the store may have been repaired.
    board.stuck.clear();
    let pulled = 0;
    for (const [device, head] of [...board.known]) {
      if (device === self) continue;
      while ((state.remote[device]?.seq ?? 0) < head && !board.stuck.has(device)) {
        if (!(await this.#pullNext(device))) break;
        pulled++;
      }
    }
    return pulled;
  }

  /** Fetches, verifies and applies the next changeset of `device`; `false` when it cannot (stuck or missing). */
  async #pullNext(device: string): Promise<boolean> {
    const context = this.#context;
    const { board, state, library } = context;
    const applied = state.remote[device] ?? { seq: 0, hash: zeroHashHex };
    const seq = applied.seq + 1;
    const keyPath = changesetKey(device, seq);
    const entry = await context.kv.get(keyPath);
    if (entry === undefined) {
      // Garbage-collected below this device's cursor: never skip forward, ask for a bootstrap.
      const floor = await this.floorOf(device);
      if (seq <= floor) {
        board.rebootstrap = true;
        board.stuck.set(device, `${keyPath} was garbage-collected`);
        board.alarm(
          new SyncError(
            SyncErrorCode.RebootstrapRequired,
            `${keyPath} was garbage-collected before this device applied it; bootstrap from the snapshot again`,
            { device, seq },
          ),
        );
        return false;
      }
      board.lastError = `${keyPath} is announced by its head but not in the store yet`;
      return false;
    }
    let verified: VerifiedChangeset;
    try {
      verified = verifyChangeset(entry.value, {
        device,
        seq,
        keyPath,
        previousHash: applied.hash,
        member: library.member(device),
        keys: library.keys,
        libraryId: library.id,
        schemaVersion: context.schemaVersion,
        cipher: context.cipher,
      });
    } catch (error) {
      if (!SyncError.is(error)) throw error;
      board.alarm(error);
      if (error.code === SyncErrorCode.SchemaTooNew) board.stuck.set(device, error.message);
      else board.stuck.set(device, `${error.code}: ${error.message}`);
      context.notify();
      return false;
    }
    // The cursor moves past a changeset only once its blobs are stored here.
    for (const blob of verified.blobs) {
      if (!(await this.#blobs.fetch(blob))) {
        board.lastError = `blob ${blob} of ${keyPath} is not in the store yet`;
        return false;
      }
    }
    await this.apply(device, verified.events);
    state.remote[device] = { seq, hash: hexOf(context.hashers.blake3(entry.value)) };
    await context.stateFile.save(state);
    return true;
  }

  /** Appends what is new; events whose causal parents are missing wait for them. */
  async apply(device: string, events: readonly SyncedEvent[]): Promise<void> {
    const { state, log, board } = this.#context;
    const parked = state.parked.flatMap((item) =>
      decodeChangeset(new Uint8Array(Buffer.from(item.event, 'base64'))).map((event) => ({ device: item.device, event })),
    );
    let waiting = [...parked, ...events.map((event) => ({ device, event }))];
    for (;;) {
      const ready: SyncedEvent[] = [];
      const seen = new Set<string>();
      const still: typeof waiting = [];
      for (const item of waiting) {
        const { event } = item;
        if (log.has(event.id) || seen.has(event.id)) {
          board.duplicates.events++;
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
      event: Buffer.from(encodeChangeset([item.event])).toString('base64'),
    }));
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
    return this.#context.state.parked.flatMap((item) =>
      decodeChangeset(new Uint8Array(Buffer.from(item.event, 'base64'))).map((event) => event.id),
    );
  }
}
