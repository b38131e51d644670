/**
 * Healing a store that forgot (docs/protocols/sync.md, "When the store
 * forgets"): a device writes back, with identical bytes, the changesets it
 * wrote or verified that the store no longer holds, and its own head.
 * Amnesia (a server restarted from an older snapshot, a restored backup, a
 * lazy fsync lost to a power cut) loses the newest writes, so the check is
 * cheap: the newest changeset of this device each round, and of each device
 * whose listed head fell below what this device applied.
 */
import { bytesEqual } from '@weft/common';
import { KvError, KvErrorCode } from '@weft/kv';
import type { SyncContext } from './context.js';
import { decodeEnvelope, envelopeSignatureValid } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { publishHead } from './heads.js';
import { changesetKey } from './store-layout.js';

/** Reads while walking down a lost range, at once. */
const probeBatch = 32;

export class Healer {
  readonly #context: SyncContext;
  readonly #floorOf: (device: string) => Promise<number>;
  readonly #publishHead: (seq: number) => Promise<void>;

  constructor(context: SyncContext, floorOf: (device: string) => Promise<number>, publishHead: (seq: number) => Promise<void>) {
    this.#context = context;
    this.#floorOf = floorOf;
    this.#publishHead = publishHead;
  }

  /** Checks this device's newest changeset and those of the suspected devices; writes back what the store lost. */
  async heal(): Promise<void> {
    const { state, board, device: self } = this.#context;
    const devices = new Set(board.suspects);
    board.suspects.clear();
    if (state.lastSeq > 0 && state.pending.length === 0) devices.add(self);
    for (const device of devices) {
      const top = device === self ? state.lastSeq : (state.remote[device]?.seq ?? 0);
      if (top === 0) continue;
      const restored = await this.#restore(device, top);
      if (device === self) {
        if (restored) await this.#publishHead(state.lastSeq);
      } else if (!board.unrestored.has(device)) {
        // Its changesets are there again: its head (a hint, moved only forward) says so too, so devices that come
        // later see no rollback. The device moves it on itself when it is back.
        await publishHead(this.#context.kv, device, top, {}, this.#context.clock).catch((error: unknown) => {
          if (!SyncError.is(error, SyncErrorCode.NotAllowed)) throw error;
        });
      }
    }
  }

  /** Writes back the lost suffix of `device`'s changesets up to `top`; false when nothing was lost. */
  async #restore(device: string, top: number): Promise<boolean> {
    const { kv, board, copies } = this.#context;
    if ((await kv.get(changesetKey(device, top))) !== undefined) {
      board.unrestored.delete(device);
      return false;
    }
    const floor = await this.#floorOf(device);
    let lowest = top;
    // Walk down to the newest changeset the store still holds (or the device's garbage-collection floor).
    for (let from = top - 1; from > floor; from -= probeBatch) {
      const seqs = Array.from({ length: Math.min(probeBatch, from - floor) }, (_, index) => from - index);
      const found = await Promise.all(seqs.map((seq) => kv.get(changesetKey(device, seq))));
      const present = found.findIndex((entry) => entry !== undefined);
      if (present >= 0) {
        lowest = (seqs[present] as number) + 1;
        break;
      }
      lowest = seqs.at(-1) as number;
    }
    if (lowest > top) return false;
    board.alarm(
      new SyncError(
        SyncErrorCode.StoreForgot,
        `the store lacks changesets ${lowest}..${top} of ${device} that this device ${device === this.#context.device ? 'wrote' : 'applied'}: writing them back`,
        { device, seq: lowest },
      ),
    );
    for (let seq = lowest; seq <= top; seq++) {
      const bytes = await copies.get(device, seq);
      if (bytes === undefined || !envelopeSignatureValid(decodeEnvelope(bytes))) {
        board.unrestored.set(device, seq);
        return true;
      }
      const keyPath = changesetKey(device, seq);
      try {
        await kv.create(keyPath, bytes);
      } catch (error) {
        if (!KvError.is(error, KvErrorCode.AlreadyExists)) throw error;
        const existing = await kv.get(keyPath);
        if (existing === undefined || !bytesEqual(existing.value, bytes)) {
          // Someone wrote another changeset there meanwhile: not ours to overwrite. Pull reports it.
          board.unrestored.set(device, seq);
          return true;
        }
      }
    }
    board.unrestored.delete(device);
    return true;
  }
}
