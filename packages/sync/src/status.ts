/**
 * What a device knows about sync right now, for UIs and operators: the heads
 * it has seen, devices held back, alarms about other devices' data, the last
 * error and harmless repeats.
 */

import { SyncError, type SyncErrorCode } from './errors.js';
import type { Role } from './membership.js';

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
  /**
   * Set once this device was removed from the library: who removed it, with
   * which membership entry, and its last changeset that still counts. A
   * removed device uploads nothing more and cannot read what is written
   * under the keys that followed its removal.
   */
  readonly removed: { readonly by: string; readonly entry: string; readonly cutoff: number } | undefined;
  /** The key generation in force. */
  readonly keyGeneration: number;
  /** Devices whose changesets this device needs were garbage-collected: bootstrap from the snapshot again. */
  readonly rebootstrapRequired: boolean;
  readonly lastError: string | undefined;
  readonly alarms: readonly SyncAlarm[];
  /** Harmless repeats seen so far: events already in the log, and retried creates that found their own bytes. */
  readonly duplicates: { readonly events: number; readonly identicalRetries: number };
}

/** Alarms kept per device besides the first of each code, which are always kept. */
const maxRepeatAlarmsPerDevice = 20;

/** The mutable parts of the status that the sync parts report into. */
export class StatusBoard {
  /** The highest head per device: the last listing's, raised by heads watched since and by what was verified. */
  readonly known = new Map<string, number>();
  /** Devices held back by bad data this round, with why. */
  readonly stuck = new Map<string, string>();
  readonly alarms: SyncAlarm[] = [];
  /** The first alarm of each code per device: never dropped, so no flood of other alarms can hide it. */
  readonly #firsts = new WeakSet<SyncAlarm>();
  readonly #firstCodes = new Set<string>();
  readonly duplicates = { events: 0, identicalRetries: 0 };
  /** Per device, the highest seq another member's head (in the last listing, or watched since) says it applied, and who says so. */
  readonly claimed = new Map<string, { seq: number; by: string }>();
  /** Devices with a changeset known to be missing inside their chain, and its seq. */
  readonly gaps = new Map<string, number>();
  /** Devices whose listed head fell below what this device applied (or vanished): the store may have forgotten their changesets. */
  readonly suspects = new Set<string>();
  /** Devices with changesets the store lost that this device could not write back yet, and the first such seq. */
  readonly unrestored = new Map<string, number>();
  /** The highest key generation seen on a member's signed changeset. */
  generationSeen = 0;
  lastError: string | undefined;
  rebootstrap = false;
  readonly #clock: () => number;

  constructor(clock: () => number) {
    this.#clock = clock;
  }

  /**
   * Records an alarm once per (device, seq, code); the message becomes the
   * last error. The first alarm of each code about a device is kept for
   * good; besides those, a device keeps its latest 20, so alarms about
   * invented devices cannot push out a real one.
   */
  alarm(error: SyncError): void {
    const device = error.device ?? '';
    const last = this.alarms.findLast((alarm) => alarm.device === device && alarm.seq === error.seq && alarm.code === error.code);
    this.lastError = error.message;
    if (last !== undefined) return;
    const alarm: SyncAlarm = { code: error.code, device, seq: error.seq, message: error.message, at: this.#clock() };
    this.alarms.push(alarm);
    const firstKey = `${device}\u0000${error.code}`;
    if (!this.#firstCodes.has(firstKey)) {
      this.#firstCodes.add(firstKey);
      this.#firsts.add(alarm);
      return;
    }
    let repeats = 0;
    for (const kept of this.alarms) if (kept.device === device && !this.#firsts.has(kept)) repeats++;
    if (repeats > maxRepeatAlarmsPerDevice) {
      const oldest = this.alarms.findIndex((kept) => kept.device === device && !this.#firsts.has(kept));
      this.alarms.splice(oldest, 1);
    }
  }

  /** Runs `work`; a `SyncError` it throws becomes an alarm and `fallback` is returned. */
  async alarmOn<T>(work: Promise<T>, fallback: T): Promise<T> {
    try {
      return await work;
    } catch (error) {
      if (!SyncError.is(error)) throw error;
      this.alarm(error);
      return fallback;
    }
  }
}
