/**
 * What a device remembers about sync between runs, in one JSON file written
 * atomically (temp file, fsync, rename, fsync of the directory) through the
 * log's filesystem seam.
 */
import type { LogFileSystem } from '@weft/eventlog';
import { SyncError, SyncErrorCode } from './errors.js';

/** An own changeset being pushed: its bytes are kept so a retry sends identical bytes. */
export interface PendingPush {
  readonly seq: number;
  /** base64 of the envelope. */
  readonly envelope: string;
  /** hex of the envelope's hash. */
  readonly hash: string;
  /** The local log position of the last event it carries. */
  readonly lastPosition: number;
  /** Blobs it references (uploaded before it). */
  readonly blobs?: readonly string[];
}

/** An event that waits for its causal parents. */
export interface ParkedEvent {
  readonly device: string;
  /** base64 of the encoded event (a one-event changeset body). */
  readonly event: string;
}

export interface SyncStateData {
  version: 3;
  device: string;
  /** The last own changeset whose head was published. */
  lastSeq: number;
  /** hex hash of that changeset's envelope (64 zeros before the first). */
  lastHash: string;
  /** Own events up to this local position are pushed. */
  pushedPosition: number;
  /** Own changesets sealed and saved, in seq order, whose push has not finished: a retry sends these bytes. */
  pending: PendingPush[];
  /** Local position ranges [from, to] of events imported from other devices (never pushed again). */
  imported: Array<[number, number]>;
  /**
   * Every import batch in the log up to this position is in `imported`. Import batches are tagged in the
   * log itself, so the log past it is scanned when sync opens: the state may lag the log by any amount.
   */
  scannedPosition: number;
  /** Per remote device: the last changeset applied and its hash. */
  remote: Record<string, { seq: number; hash: string }>;
  /** Resume point of the watch on heads. */
  watchCursor: string | undefined;
  parked: ParkedEvent[];
  /** Blobs added locally that the next changeset references (uploaded before it). */
  pendingBlobs: string[];
  /** base64 of every membership entry this device verified: what it knows of the membership, never dropped. */
  membership: string[];
  /** Per key generation, base64 of the wrap of it addressed to this device that opened (sealed to this device). */
  wraps: Record<string, string>;
}

export const zeroHashHex = '0'.repeat(64);

export function emptyState(device: string): SyncStateData {
  return {
    version: 3,
    device,
    lastSeq: 0,
    lastHash: zeroHashHex,
    pushedPosition: 0,
    pending: [],
    imported: [],
    scannedPosition: 0,
    remote: {},
    watchCursor: undefined,
    parked: [],
    pendingBlobs: [],
    membership: [],
    wraps: {},
  };
}

const fileName = 'sync-state.json';

/** Loads and saves the state file. */
export class StateFile {
  constructor(
    private readonly fs: LogFileSystem,
    private readonly dir: string,
  ) {}

  async load(device: string): Promise<SyncStateData> {
    const path = `${this.dir}/${fileName}`;
    if (!(await this.fs.exists(path))) return emptyState(device);
    const file = await this.fs.open(path);
    try {
      const text = new TextDecoder().decode(await file.read(0, await file.size()));
      const data = JSON.parse(text) as Omit<SyncStateData, 'version' | 'pending' | 'membership' | 'wraps'> & {
        version: 1 | 2 | 3;
        pending: PendingPush | PendingPush[] | undefined;
        membership?: string[];
        wraps?: Record<string, string>;
      };
      if ((data.version !== 1 && data.version !== 2 && data.version !== 3) || data.device !== device) {
        throw new SyncError(SyncErrorCode.StateFailed, `${path} belongs to device ${data.device} (version ${data.version}), not ${device}`);
      }
      // Version 1 kept one pending changeset and no scanned position.
      const pending = data.pending === undefined ? [] : Array.isArray(data.pending) ? data.pending : [data.pending];
      // Versions 1 and 2 kept no membership knowledge: it is learned from the store on the first refresh.
      return {
        ...data,
        version: 3,
        pending,
        scannedPosition: data.scannedPosition ?? 0,
        pendingBlobs: data.pendingBlobs ?? [],
        membership: data.membership ?? [],
        wraps: data.wraps ?? {},
      };
    } catch (error) {
      if (error instanceof SyncError) throw error;
      throw new SyncError(SyncErrorCode.StateFailed, `${path} cannot be read: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    } finally {
      await file.close();
    }
  }

  async save(state: SyncStateData): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(state));
    const temporary = `${this.dir}/${fileName}.tmp`;
    try {
      if (await this.fs.exists(temporary)) await this.fs.unlink(temporary);
      const file = await this.fs.open(temporary, { create: true, exclusive: true });
      try {
        let written = 0;
        while (written < bytes.length) written += await file.write(bytes.subarray(written), written);
        await file.sync();
      } finally {
        await file.close();
      }
      await this.fs.rename(temporary, `${this.dir}/${fileName}`);
      await this.fs.syncDir(this.dir);
    } catch (error) {
      throw new SyncError(
        SyncErrorCode.StateFailed,
        `saving sync state failed: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
  }
}

/** Adds a position range to a sorted list of ranges, merging neighbours. */
export function addRange(ranges: Array<[number, number]>, from: number, to: number): void {
  ranges.push([from, to]);
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const range of ranges) {
    const last = merged.at(-1);
    if (last !== undefined && range[0] <= last[1] + 1) last[1] = Math.max(last[1], range[1]);
    else merged.push([range[0], range[1]]);
  }
  ranges.splice(0, ranges.length, ...merged);
}

/** True when a position lies in one of the ranges. */
export function inRanges(ranges: ReadonlyArray<readonly [number, number]>, position: number): boolean {
  for (const [from, to] of ranges) if (position >= from && position <= to) return true;
  return false;
}
