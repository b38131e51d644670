/**
 * Reading frames back: from the segment files in large chunks (or, for a
 * frame still queued, from memory), checked by their CRC, and turned into
 * events with their payload opened by the log's codec.
 */
import { checkFrames, type DecodedFrame, readFrame, segmentHeaderSize } from './codec.js';
import { EventLogError, EventLogErrorCode } from './errors.js';
import type { Hashers } from './hash.js';
import type { PayloadCodec } from './payload-codec.js';
import { labelPrefix } from './rules.js';
import type { LocationIndex, Segment } from './structures.js';
import type { LogEvent } from './types.js';

/** How much of a segment one read takes when scanning or copying it. */
export const scanChunkBytes = 4 * 1024 * 1024;
/**
 * A scan's first read: reads grow fourfold from here to {@link scanChunkBytes}.
 * A reader that wants a few events from a position (a sync push reading its
 * next batch, a subscription catching up) would otherwise read and check the
 * CRCs of 4 MiB for them: a sixth of a one-event push was that.
 */
const firstChunkBytes = 64 * 1024;
const framesPerStep = 64;
/** Frames read from files: every file read is a fresh buffer, so events keep views of it (see `LogEvent.hash`). */
const asViews = { payloadAs: 'view', headerBytesAs: 'view' } as const;
const empty = new Uint8Array(0);
/** The largest span of a segment one read of `readMany` covers. */
const spanBytes = 1024 * 1024;

/** What the reader sees of its log. */
export interface ReaderView {
  readonly segments: readonly Segment[];
  readonly locations: LocationIndex;
  /** The frame of a position accepted but not written yet. */
  queuedFrame(position: number): Uint8Array | undefined;
  readonly hashers: Hashers;
  codec(): PayloadCodec;
}

/**
 * Frames read from a segment, in order, with the offset of each; a run that
 * ends where the bytes are not a frame says why (and ends the segment's
 * frames). Arrays rather than an object per frame: a replay makes millions.
 */
export interface FrameRun {
  readonly frames: DecodedFrame[];
  readonly offsets: number[];
  readonly problem?: { readonly offset: number; readonly detail: string };
}

export class FrameReader {
  readonly #view: ReaderView;

  constructor(view: ReaderView) {
    this.#view = view;
  }

  /**
   * The frames from one position to another (both included), in order, in
   * arrays of up to 64 (see {@link frames}).
   */
  async *scan(fromPosition: number, toPosition: number): AsyncGenerator<DecodedFrame[]> {
    if (fromPosition > toPosition) return;
    const first = this.#view.locations.segment[fromPosition - 1] as number;
    for (let segmentIndex = first; segmentIndex < this.#view.segments.length; segmentIndex++) {
      const segment = this.#view.segments[segmentIndex] as Segment;
      const start = segmentIndex === first ? (this.#view.locations.offset[fromPosition - 1] as number) : segmentHeaderSize;
      for await (const run of this.frames(segment, start)) {
        let frames = run.frames;
        const last = frames.at(-1);
        if (last !== undefined && (frames[0] as DecodedFrame).header.position < fromPosition) {
          frames = frames.filter((frame) => frame.header.position >= fromPosition);
        }
        const done = last !== undefined && last.header.position >= toPosition;
        if (done) frames = frames.filter((frame) => frame.header.position <= toPosition);
        if (frames.length > 0) yield frames;
        if (done) return;
        if (run.problem !== undefined) throw this.damaged(segment, run.problem.offset, run.problem.detail);
      }
    }
  }

  /**
   * The frames of a segment from an offset, read in chunks growing from 64
   * KiB to 4 MiB (the next one read while this one is decoded), the CRCs of
   * a chunk checked in one call, and decoded without a step per frame: runs
   * of up to 64; a run with a problem is the last.
   */
  async *frames(segment: Segment, start: number): AsyncGenerator<FrameRun> {
    let offset = start;
    let ahead: { offset: number; bytes: Promise<Uint8Array> } | undefined;
    let chunkBytes = firstChunkBytes;
    while (offset < segment.size) {
      const chunk = await (ahead?.offset === offset ? ahead.bytes : segment.file.read(offset, Math.min(chunkBytes, segment.size - offset)));
      ahead = undefined;
      chunkBytes = Math.min(chunkBytes * 4, scanChunkBytes);
      const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      // One call checks the CRC of every whole frame of the chunk; the frames before `checked` decode without it.
      const checked = checkFrames(chunk, view, 0, this.#view.hashers.crc32c);
      // Read ahead: the next chunk starts after the last whole frame of this one; it is read while this one is decoded.
      const next = offset + checked;
      if (next > offset && next < segment.size) {
        const bytes = segment.file.read(next, Math.min(chunkBytes, segment.size - next));
        bytes.catch(() => undefined); // used only if decoding gets there; a failure then is seen by that await
        ahead = { offset: next, bytes };
      }
      let frames: DecodedFrame[] = [];
      let offsets: number[] = [];
      let at = 0;
      const verified = { ...asViews, view, crcChecked: true };
      const unverified = { ...asViews, view };
      while (at < chunk.length) {
        const frame = readFrame(chunk, at, this.#view.hashers.crc32c, at < checked ? verified : unverified);
        if (!('problem' in frame)) {
          frames.push(frame);
          offsets.push(offset + at);
          at += frame.size;
          // Small arrays: a whole chunk's events alive at once would outlive the young generation.
          if (frames.length === framesPerStep) {
            yield { frames, offsets };
            frames = [];
            offsets = [];
          }
          continue;
        }
        if (frame.problem === 'truncated' && at > 0) break; // read on from this frame
        if (frame.problem === 'truncated' && chunk.length - at >= 8) {
          // One frame larger than a chunk: read it whole.
          const length = new DataView(chunk.buffer, chunk.byteOffset + at).getUint32(0, true);
          if (offset + at + 8 + length <= segment.size) {
            const whole = readFrame(await segment.file.read(offset + at, length + 8), 0, this.#view.hashers.crc32c, asViews);
            if (!('problem' in whole)) {
              frames.push(whole);
              offsets.push(offset + at);
              at += whole.size;
              break;
            }
            yield { frames, offsets, problem: { offset: offset + at, detail: whole.detail } };
            return;
          }
        }
        yield { frames, offsets, problem: { offset: offset + at, detail: frame.detail } };
        return;
      }
      offset += at;
      yield { frames, offsets };
    }
  }

  damaged(segment: Segment, offset: number, detail: string): EventLogError {
    return new EventLogError(EventLogErrorCode.InvalidFrame, `damaged frame in ${segment.name} at offset ${offset}: ${detail}`, {
      segment: segment.name,
      offset,
    });
  }

  async readAt(position: number): Promise<LogEvent> {
    const unwritten = this.#view.queuedFrame(position);
    if (unwritten !== undefined) {
      const frame = readFrame(unwritten, 0, this.#view.hashers.crc32c);
      if ('problem' in frame) throw new EventLogError(EventLogErrorCode.InvalidFrame, `queued frame ${position}: ${frame.detail}`);
      return this.toEvent(frame);
    }
    const segment = this.#view.segments[this.#view.locations.segment[position - 1] as number] as Segment;
    const offset = this.#view.locations.offset[position - 1] as number;
    const bytes = await segment.file.read(offset, this.#view.locations.size[position - 1] as number);
    const frame = readFrame(bytes, 0, this.#view.hashers.crc32c, asViews);
    if ('problem' in frame) throw this.damaged(segment, offset, frame.detail);
    return this.toEvent(frame);
  }

  /**
   * The events at these positions (ascending), in order. Frames near each
   * other in a segment are read with one read (spans up to 1 MiB), and the
   * reads of one call run together: reading one entity's events costs about
   * one read per cluster of its events, not one per event.
   */
  async readMany(positions: readonly number[]): Promise<LogEvent[]> {
    const { locations, segments } = this.#view;
    const spans: { segment: number; start: number; end: number; positions: number[] }[] = [];
    const queued: number[] = [];
    for (const position of positions) {
      if (this.#view.queuedFrame(position) !== undefined) {
        queued.push(position);
        continue;
      }
      const segment = locations.segment[position - 1] as number;
      const offset = locations.offset[position - 1] as number;
      const end = offset + (locations.size[position - 1] as number);
      const last = spans.at(-1);
      if (last !== undefined && last.segment === segment && offset >= last.start && end - last.start <= spanBytes) {
        last.end = Math.max(last.end, end);
        last.positions.push(position);
      } else spans.push({ segment, start: offset, end, positions: [position] });
    }
    const events = new Map<number, LogEvent>();
    await Promise.all(
      spans.map(async (span) => {
        const segment = segments[span.segment] as Segment;
        const bytes = await segment.file.read(span.start, span.end - span.start);
        for (const position of span.positions) {
          const offset = locations.offset[position - 1] as number;
          const frame = readFrame(
            bytes.subarray(0, offset - span.start + (locations.size[position - 1] as number)),
            offset - span.start,
            this.#view.hashers.crc32c,
            asViews,
          );
          if ('problem' in frame) throw this.damaged(segment, offset, frame.detail);
          events.set(position, this.toEvent(frame));
        }
      }),
    );
    for (const position of queued) events.set(position, await this.readAt(position));
    return positions.map((position) => events.get(position) as LogEvent);
  }

  /** The event of a frame; with `open: false` the payload is left closed (empty, disposition `plain`, `sealed` or `shredded`). */
  toEvent(frame: DecodedFrame, open = true): LogEvent {
    const { header, payload: stored } = frame;
    let payload = stored;
    let disposition: LogEvent['disposition'] = 'plain';
    if (header.encryption !== undefined) {
      const codec = this.#view.codec();
      if (open) ({ payload, disposition } = codec.open(header, stored));
      else {
        payload = empty;
        disposition = codec.disposition(header);
      }
    }
    // The frame's key field holds an idempotency key or, behind a prefix, a label.
    const key = header.idempotencyKey;
    const label = key?.startsWith(labelPrefix) === true ? key.slice(labelPrefix.length) : undefined;
    return {
      id: header.id,
      entity: header.entity,
      scope: header.scope,
      kind: header.kind,
      time: header.time,
      position: header.position,
      sequence: header.sequence,
      causationId: header.causationId,
      correlationId: header.correlationId,
      parents: header.parents,
      idempotencyKey: label === undefined ? key : undefined,
      label,
      hash: header.hash,
      storedPayload: stored,
      payload,
      disposition,
    };
  }
}
