/**
 * What a device learns from the `heads` of the store: a watch resumed from
 * the persisted cursor (re-listing when it expired) and listings for
 * anti-entropy. Heads are hints; a listing is a fresh read, so a head that
 * went backwards there is an alarm.
 */

import { pause } from '@weft/common';
import { KvError, KvErrorCode, type WatchCursor } from '@weft/kv';
import type { SyncContext } from './context.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { type HeadValue, parseHead } from './heads.js';
import { deviceOfHeadKey, headsPrefix } from './store-layout.js';

export class HeadsWatch {
  readonly #context: SyncContext;
  /** A listing found this device's own head behind what it published. */
  #republish = false;

  constructor(context: SyncContext) {
    this.#context = context;
  }

  /** Whether this device's head must be published again; asking clears it. */
  takeRepublish(): boolean {
    const republish = this.#republish;
    this.#republish = false;
    return republish;
  }

  /**
   * Lists every head, then checks them against the applied maps they carry.
   * What heads and applied maps say is re-derived from this listing alone
   * (never below what this device verified), so a lie that the store has
   * since repaired stops mattering at once.
   */
  async refresh(): Promise<void> {
    const { board, state, device: self } = this.#context;
    const heads: Array<[string, HeadValue]> = [];
    const listed = new Map<string, number>();
    board.claimed.clear();
    for await (const entry of this.#context.kv.scan(headsPrefix)) {
      const learned = this.#learn(entry.key, entry.value, true);
      if (learned === undefined) continue;
      heads.push(learned);
      listed.set(learned[0], learned[1].seq);
    }
    // A device whose head vanished while this device applied its changesets: the store may have forgotten them.
    for (const [device, remote] of Object.entries(state.remote)) if (remote.seq > 0 && !listed.has(device)) board.suspects.add(device);
    if (state.lastSeq > 0 && !listed.has(self)) this.#republish = true;
    for (const device of [...board.known.keys()]) {
      if (device === self) continue;
      board.known.set(device, Math.max(listed.get(device) ?? 0, state.remote[device]?.seq ?? 0));
    }
    for (const [device, seq] of listed) if (device !== self) board.known.set(device, Math.max(seq, state.remote[device]?.seq ?? 0));
    this.#checkClaims(heads);
  }

  /** Watches `heads` until `signal` aborts; `onPut` runs after each head that moved. */
  async watch(signal: AbortSignal, onPut: () => void): Promise<void> {
    const { kv, state, board } = this.#context;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const from = state.watchCursor as WatchCursor | undefined;
        const watch = kv.watch({ prefixes: [headsPrefix], signal, ...(from === undefined ? {} : { from }) });
        for await (const event of watch) {
          failures = 0;
          if (event.type === 'put') this.#learn(event.key, event.value, false);
          this.#advanceCursor(event.cursor);
          if (event.type === 'put') onPut();
        }
        return;
      } catch (error) {
        if (signal.aborted) return;
        if (KvError.is(error, KvErrorCode.CursorExpired)) {
          state.watchCursor = undefined;
          continue;
        }
        failures++;
        board.lastError = error instanceof Error ? error.message : String(error);
        await pause(Math.min(5000, 50 * 2 ** Math.min(failures, 7)) * (0.5 + Math.random()), signal);
      }
    }
  }

  /** Cursors only move forward. */
  #advanceCursor(cursor: WatchCursor): void {
    const { kv, state } = this.#context;
    const current = state.watchCursor as WatchCursor | undefined;
    try {
      if (current === undefined || kv.compareCursors(cursor, current) > 0) state.watchCursor = cursor;
    } catch {
      state.watchCursor = cursor;
    }
  }

  /** Takes in a head value; `fresh` for a listing (a watch event may be older than what was listed since). */
  #learn(key: string, value: Uint8Array, fresh: boolean): [string, HeadValue] | undefined {
    const { board, state, device: self } = this.#context;
    const device = deviceOfHeadKey(key);
    const head = parseHead(value);
    if (head === undefined || device.includes('.')) return undefined;
    // Below a changeset of that device this device verified and applied: the head was rolled back. (What heads said
    // before is a hint, not knowledge: a lie the store repaired is no rollback.)
    const verified = state.remote[device]?.seq ?? 0;
    if (fresh && device !== self && head.seq < verified) board.suspects.add(device);
    if (fresh && device !== self && head.seq < verified && !head.frozen) {
      board.alarm(
        new SyncError(SyncErrorCode.HeadRolledBack, `heads.${device} says ${head.seq}, but this device applied its changeset ${verified}`, {
          device,
          seq: head.seq,
        }),
      );
    }
    if (fresh && device === self && head.seq < state.lastSeq) {
      board.alarm(
        new SyncError(
          SyncErrorCode.HeadRolledBack,
          `this device's head says ${head.seq}, but it published ${state.lastSeq}: republishing`,
          {
            device,
            seq: head.seq,
          },
        ),
      );
      this.#republish = true;
    }
    board.known.set(device, Math.max(board.known.get(device) ?? 0, head.seq));
    for (const [other, applied] of Object.entries(head.applied ?? {})) {
      if (typeof applied !== 'number' || !Number.isSafeInteger(applied) || other === device) continue;
      if (applied > (board.claimed.get(other)?.seq ?? 0)) board.claimed.set(other, { seq: applied, by: device });
    }
    return [device, head];
  }

  /** A head below what another member's head says it applied was rolled back (or its device stopped between the two writes). */
  #checkClaims(heads: ReadonlyArray<[string, HeadValue]>): void {
    const { board } = this.#context;
    for (const [device, head] of heads) {
      const claimed = board.claimed.get(device);
      if (claimed !== undefined && claimed.seq > head.seq && !head.frozen)
        board.alarm(
          new SyncError(
            SyncErrorCode.HeadRolledBack,
            `heads.${device} says ${head.seq}, but ${claimed.by} applied its changeset ${claimed.seq}`,
            {
              device,
              seq: head.seq,
            },
          ),
        );
    }
  }
}
