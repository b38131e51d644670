/**
 * The writer of a log: batches accepted by the append pipeline wait in a
 * queue and are written in order into the active segment (rotating at the
 * size limit, never splitting a batch), fsynced as the sync mode asks
 * (`always`, `group`: appends arriving during an fsync join the next one;
 * `interval`, `none`: on flush), and their receipts resolved as written and
 * as durable. A failed write rolls back every batch not yet written; a
 * failed fsync fails the log until it is reopened.
 */
import { Notifier, nextTask } from '@weft/common';
import { checkpointOffset, encodeCheckpoint, encodeSegmentHeader, segmentHeaderSize } from './codec.js';
import { DurabilityTracker } from './durability.js';
import { EventLogError, EventLogErrorCode } from './errors.js';
import { FileSystemError, joinPath, type LogFileSystem } from './fs/types.js';
import { ioFailed, segmentName } from './rules.js';
import { contiguousRuns, type PendingBatch, type Segment } from './structures.js';
import type { SyncMode } from './types.js';

const noneFlushBytes = 256 * 1024;
/**
 * Bytes queued beyond the write in flight past which appends wait for room
 * (with `none` they otherwise return once accepted): one group. Everything
 * queued lives until it is written, so a larger backlog (4 MiB) made every
 * young-generation collection copy thousands of pending batches.
 */
const backlogBytes = noneFlushBytes;

/** What the writer needs from its log. */
export interface WriterHost {
  readonly dir: string;
  readonly fs: LogFileSystem;
  readonly sync: SyncMode;
  readonly segmentBytes: number;
  /** Runs before any frame of a write is written (the encryption fence). */
  beforeWrite(): Promise<void>;
  /** A frame reached the OS at this place. */
  onFrameWritten(position: number, segmentIndex: number, offset: number, size: number): void;
  /** Something was written: wake readers and subscriptions. */
  wake(): void;
}

export class SegmentWriter {
  /** The log's segments, oldest first; the last one is active. */
  readonly segments: Segment[] = [];
  readonly #host: WriterHost;
  #queue: PendingBatch[] = [];
  #queuedBytes = 0;
  /** Bytes of the queue the pump is writing now. */
  #writingBytes = 0;
  /** Wakes appenders waiting for room in the queue (see {@link waitForRoom}). */
  readonly #room = new Notifier();
  /** Which batches are durable; receipts ask it. */
  readonly durability = new DurabilityTracker();
  #writtenHead = 0;
  /** The serial of the last batch written. */
  #writtenSerial = 0;
  #durableHead = 0;
  #pumping = false;
  #pumpScheduled = false;
  /** The scheduled pump waits for the event loop (the next task) rather than the end of the current job. */
  #pumpDeferred = false;
  #failed: EventLogError | undefined;

  constructor(host: WriterHost) {
    this.#host = host;
  }

  /** The last position written to the OS. */
  get writtenHead(): number {
    return this.#writtenHead;
  }

  /** The last position known durable. */
  get durableHead(): number {
    return this.#durableHead;
  }

  /** The failure that stopped the writer, if any: the log must be reopened. */
  get failure(): EventLogError | undefined {
    return this.#failed;
  }

  /** After recovery: everything up to `head` is on disk. */
  recovered(head: number): void {
    this.#writtenHead = head;
    this.#durableHead = head;
  }

  /** The frame of a position accepted but not written yet, or `undefined`. */
  queuedFrame(position: number): Uint8Array | undefined {
    if (position <= this.#writtenHead) return undefined;
    const queue = this.#queue;
    let low = 0;
    let high = queue.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const batch = queue[middle] as PendingBatch;
      if (position < batch.firstPosition) high = middle - 1;
      else if (position > batch.lastPosition) low = middle + 1;
      else return batch.frames[position - batch.firstPosition];
    }
    return undefined;
  }

  /** Queues an accepted batch for writing. */
  enqueue(batch: PendingBatch): void {
    batch.serial = this.durability.next();
    this.#queue.push(batch);
    this.#queuedBytes += batch.bytes;
    this.#schedulePump();
  }

  /**
   * Whether appends should wait for room: more than one group is queued
   * beyond what is being written (an appender that only ever awaits its
   * receipts never yields to the event loop, where writes complete, and
   * everything queued stays in memory until written).
   */
  get backlogged(): boolean {
    return this.#queuedBytes - this.#writingBytes > backlogBytes;
  }

  /**
   * Resolves once the pump takes what is queued for its next write (or the
   * writer fails): an appender waiting here appends the next group while
   * this one is written, instead of waiting for its own write.
   */
  waitForRoom(): Promise<void> {
    this.#schedulePump();
    return this.#room.wait();
  }

  #schedulePump(): void {
    if (this.#pumping) return;
    // With `none`, let appends accumulate into one write (until the end of this turn of the event loop,
    // or 256 KiB); the others start at once.
    const defer = this.#host.sync === 'none' && this.#queuedBytes < noneFlushBytes;
    if (this.#pumpScheduled && (defer || !this.#pumpDeferred)) return;
    this.#pumpScheduled = true;
    this.#pumpDeferred = defer;
    const run = () => {
      this.#pumpScheduled = false;
      this.#pumpDeferred = false;
      void this.#pump();
    };
    if (defer) nextTask(run);
    else queueMicrotask(run);
  }

  /** Writes queued batches in order; fsyncs as the sync mode asks. Only one pump runs at a time. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#queue.length > 0 && this.#failed === undefined) {
        const group = this.#host.sync === 'always' ? this.#queue.slice(0, 1) : this.#queue.slice();
        this.#writingBytes = 0;
        for (const batch of group) this.#writingBytes += batch.bytes;
        this.#room.notify();
        try {
          await this.#host.beforeWrite();
        } catch (error) {
          this.#rollBack(EventLogError.is(error) ? error : ioFailed('preparing the write', error));
          continue;
        }
        try {
          await this.#writeGroup(group);
        } catch (error) {
          this.#rollBack(ioFailed('writing to the log', error));
          continue;
        }
        this.#queue = this.#queue.slice(group.length);
        this.#queuedBytes -= this.#writingBytes;
        this.#writingBytes = 0;
        if (this.#host.sync === 'always' || this.#host.sync === 'group') {
          try {
            await this.syncActiveSegment();
          } catch (error) {
            this.fail(ioFailed('fsync of the log', error));
            return;
          }
        }
      }
    } finally {
      this.#pumping = false;
      if (this.#queue.length > 0 && this.#failed === undefined) this.#schedulePump();
    }
  }

  async #writeGroup(group: readonly PendingBatch[]): Promise<void> {
    let pending: PendingBatch[] = [];
    let pendingBytes = 0;
    const writePending = async () => {
      if (pending.length === 0) return;
      const segment = this.#activeSegment();
      let at = segment.size;
      for (const run of contiguousRuns(pending)) {
        await this.#writeAll(segment, run, at);
        at += run.length;
      }
      let offset = segment.size;
      const segmentIndex = this.segments.length - 1;
      for (const batch of pending) {
        for (const [index, frame] of batch.frames.entries()) {
          const position = batch.firstPosition + index;
          this.#host.onFrameWritten(position, segmentIndex, offset, frame.length);
          offset += frame.length;
        }
        this.#writtenHead = batch.lastPosition;
        this.#writtenSerial = batch.serial;
        batch.written.resolve();
      }
      segment.size = offset;
      pending = [];
      pendingBytes = 0;
      this.#host.wake();
    };
    for (const batch of group) {
      const segment = this.#activeSegment();
      // Batches never straddle segments; a full segment is closed at a batch boundary.
      if (segment.size + pendingBytes > segmentHeaderSize && segment.size + pendingBytes + batch.bytes > this.#host.segmentBytes) {
        await writePending();
        await this.#rotate(batch.firstPosition);
      }
      pending.push(batch);
      pendingBytes += batch.bytes;
    }
    await writePending();
  }

  /** Writes `buffer` at `at` (at or past the segment's size); on failure, truncates the segment back to its size. */
  async #writeAll(segment: Segment, buffer: Uint8Array, at = segment.size): Promise<void> {
    let written = 0;
    try {
      while (written < buffer.length) {
        const count = await segment.file.write(written === 0 ? buffer : buffer.subarray(written), at + written);
        if (count <= 0) throw new FileSystemError('EIO', 'the filesystem wrote nothing');
        written += count;
      }
    } catch (error) {
      // Leave no partial frame behind: the next write must follow a whole frame.
      await segment.file.truncate(segment.size).catch((truncateError: unknown) => {
        this.fail(ioFailed('removing a partial write', truncateError));
      });
      throw error;
    }
  }

  /** Undoes every batch not yet written, newest first, and rejects them. */
  #rollBack(error: EventLogError): void {
    const batches = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#writingBytes = 0;
    this.#room.notify();
    for (const batch of [...batches].reverse()) {
      batch.undo();
      batch.written.reject(error);
      this.durability.rolledBack(batch.serial, error);
    }
  }

  /** After a failed fsync the page cache can no longer be trusted: refuse everything until reopened. */
  fail(error: EventLogError): void {
    if (this.#failed !== undefined) return;
    this.#failed = error;
    this.#rollBack(error);
    this.rejectDurable(error);
    this.#host.wake();
  }

  /** Rejects the durability of everything written but not yet durable, now and later. */
  rejectDurable(error: EventLogError): void {
    this.durability.end(error);
  }

  async syncActiveSegment(): Promise<void> {
    const segment = this.#activeSegment();
    const writtenHead = this.#writtenHead;
    const writtenSerial = this.#writtenSerial;
    const size = segment.size;
    if (segment.durableSize === size && this.#durableHead >= writtenHead) return;
    await segment.file.sync();
    segment.durableSize = size;
    this.#markDurable(writtenHead, writtenSerial);
    // The checkpoint names a length that is already durable; it reaches the disk with a later fsync.
    await segment.file.write(encodeCheckpoint(size), checkpointOffset).catch(() => undefined);
  }

  #markDurable(position: number, serial: number): void {
    this.durability.markDurable(serial);
    if (position > this.#durableHead) this.#durableHead = position;
  }

  #activeSegment(): Segment {
    const segment = this.segments.at(-1);
    if (segment === undefined) throw new EventLogError(EventLogErrorCode.Closed, 'the log has no open segment');
    return segment;
  }

  /** Closes the active segment durably and starts a new one whose first frame has `firstPosition`. */
  async #rotate(firstPosition: number): Promise<void> {
    const previous = this.#activeSegment();
    // Only the last segment may ever have a torn tail, so a segment is made durable before the next begins.
    await previous.file.sync();
    previous.durableSize = previous.size;
    this.#markDurable(this.#writtenHead, this.#writtenSerial);
    await previous.file.write(encodeCheckpoint(previous.size), checkpointOffset);
    await previous.file.sync();
    await this.createSegment(firstPosition);
  }

  async createSegment(firstPosition: number): Promise<void> {
    const name = segmentName(firstPosition);
    const path = joinPath(this.#host.dir, name);
    const file = await this.#host.fs.open(path, { create: true, exclusive: true });
    const header = encodeSegmentHeader(firstPosition, segmentHeaderSize);
    const segment: Segment = { name, firstPosition, file, size: 0, durableSize: 0 };
    try {
      await this.#writeAll(segment, header);
      segment.size = header.length;
      await file.sync();
      await this.#host.fs.syncDir(this.#host.dir);
    } catch (error) {
      // Leave no half-made segment behind for the next attempt (recovery would also remove it).
      await file.close().catch(() => undefined);
      await this.#host.fs.unlink(path).catch(() => undefined);
      throw error;
    }
    segment.durableSize = segment.size;
    this.segments.push(segment);
  }

  /**
   * Writes everything accepted so far and fsyncs it; resolves once every
   * event accepted before the call is durable.
   *
   * @throws {EventLogError} `IoFailed`, `Closed`
   */
  async flush(target: number): Promise<void> {
    if (this.#failed !== undefined) throw this.#failed;
    if (target === 0 || this.#durableHead >= target) return;
    await this.drain();
    if (this.#failed !== undefined) throw this.#failed;
    try {
      await this.syncActiveSegment();
    } catch (error) {
      const failure = ioFailed('fsync of the log', error);
      this.fail(failure);
      throw failure;
    }
  }

  /** Waits until everything queued is written to the OS (not necessarily durable). */
  async drain(): Promise<void> {
    while ((this.#queue.length > 0 || this.#pumping) && this.#failed === undefined) {
      const last = this.#queue.at(-1);
      if (last !== undefined) {
        this.#schedulePump();
        await last.written.promise.catch(() => undefined);
      } else {
        await new Promise<void>((resolve) => nextTask(resolve));
      }
    }
  }
}
