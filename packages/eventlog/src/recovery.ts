/**
 * Opening a log's segments after a crash, and picking up a writer's new
 * frames in a read-only log: complete batches of valid frames are indexed in
 * order; only the last segment may end in a torn tail, which is truncated;
 * damage anywhere else refuses to open with a `Corrupt` error naming the
 * segment and offset.
 */
import { decodeSegmentHeader, type FrameHeader, readFrame, segmentHeaderSize } from './codec.js';
import { EventLogError, EventLogErrorCode } from './errors.js';
import { joinPath, type LogFile, type LogFileSystem } from './fs/types.js';
import { segmentPattern } from './rules.js';
import type { SegmentWriter } from './writer.js';

const recoveryChunkBytes = 4 * 1024 * 1024;

/** The log being recovered: where its files are, and how it indexes a frame. */
export interface RecoveryTarget {
  readonly fs: LogFileSystem;
  readonly dir: string;
  readonly readOnly: boolean;
  readonly crc32c: (data: Uint8Array) => number;
  readonly writer: SegmentWriter;
  /** The last position indexed so far. */
  head(): number;
  index(header: FrameHeader, segmentIndex: number, offset: number, size: number): void;
}

/** Opens and indexes every segment, truncating a torn tail of the last one. */
export async function recoverSegments(target: RecoveryTarget): Promise<void> {
  const { fs, dir, readOnly, writer } = target;
  const names = (await fs.readdir(dir)).filter((name) => segmentPattern.test(name)).sort();
  for (const [index, name] of names.entries()) {
    const last = index === names.length - 1;
    const file = await fs.open(joinPath(dir, name), { readOnly: readOnly });
    const expectedFirst = Number(segmentPattern.exec(name)?.[1]);
    const size = await file.size();
    const corrupt = (offset: number, detail: string) =>
      new EventLogError(EventLogErrorCode.Corrupt, `segment ${name} is damaged at offset ${offset}: ${detail}`, {
        segment: name,
        offset,
      });
    if (size < segmentHeaderSize) {
      if (!last) throw corrupt(0, 'the segment header is incomplete');
      // A segment whose creation was cut short (or, read-only, is being created): nothing in it was acknowledged.
      await file.close();
      if (readOnly) continue;
      await fs.unlink(joinPath(dir, name));
      await fs.syncDir(dir);
      continue;
    }
    let header: { firstPosition: number; checkpoint: number };
    try {
      header = decodeSegmentHeader(await file.read(0, segmentHeaderSize));
    } catch (error) {
      throw corrupt(0, error instanceof Error ? error.message : String(error));
    }
    if (header.firstPosition !== expectedFirst || header.firstPosition !== target.head() + 1) {
      throw corrupt(16, `first position ${header.firstPosition} does not follow position ${target.head()}`);
    }
    const segmentIndex = writer.segments.length;
    const { validEnd, problem, problemOffset } = await indexSegment(target, file, size, segmentIndex);
    if (problem !== undefined) {
      if (!last) throw corrupt(problemOffset, problem);
      if (validEnd < header.checkpoint)
        throw corrupt(validEnd, `${problem}, inside the part recorded as durable (${header.checkpoint} bytes)`);
      // A torn tail: what was being written when the process stopped. None of it was acknowledged durable.
      // (Read-only, it may be what the writer is writing right now: left alone.)
      if (!readOnly) {
        await file.truncate(validEnd);
        await file.sync();
      }
    }
    writer.segments.push({ name, firstPosition: header.firstPosition, file, size: validEnd, durableSize: validEnd });
  }
  if (writer.segments.length === 0 && !readOnly) await writer.createSegment(1);
  writer.recovered(target.head());
}

/**
 * Indexes a segment's frames, read in chunks (a whole segment read at once
 * was slower to read and to checksum than the same bytes in chunks); a
 * batch cut off by a chunk's end is read again with the next chunk.
 */
async function indexSegment(
  target: RecoveryTarget,
  file: LogFile,
  size: number,
  segmentIndex: number,
): Promise<{ validEnd: number; problem: string | undefined; problemOffset: number }> {
  let offset = segmentHeaderSize;
  let chunkBytes = recoveryChunkBytes;
  while (offset < size) {
    const chunk = await file.read(offset, Math.min(chunkBytes, size - offset));
    const atEnd = offset + chunk.length >= size;
    const result = indexFrames(target, chunk, 0, segmentIndex, offset);
    if (atEnd || !result.cutOff) {
      return { validEnd: offset + result.validEnd, problem: result.problem, problemOffset: offset + result.problemOffset };
    }
    if (result.validEnd === 0)
      chunkBytes *= 2; // one batch larger than a chunk: read it whole
    else {
      offset += result.validEnd;
      chunkBytes = recoveryChunkBytes;
    }
  }
  return { validEnd: offset, problem: undefined, problemOffset: offset };
}

/**
 * Indexes the complete batches of frames in `bytes` from `offset` (`bytes[0]`
 * is at `base` in the segment); stops at the first frame that is bad, out of
 * order, or part of an incomplete batch. `cutOff` tells that the stop was
 * the end of `bytes` (a frame or batch that continues past it).
 */
export function indexFrames(
  target: RecoveryTarget,
  bytes: Uint8Array,
  offset: number,
  segmentIndex: number,
  base = 0,
): { validEnd: number; problem: string | undefined; problemOffset: number; cutOff: boolean } {
  // Indexing keeps no payload, but keeps each entity's last hash: a copy, so that it does not hold the whole chunk.
  const indexing = { payloadAs: 'view', view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) } as const;
  let batchFrames: Array<{ header: FrameHeader; offset: number; size: number }> = [];
  let validEnd = offset;
  let problem: string | undefined;
  let cutOff = false;
  while (offset < bytes.length) {
    const frame = readFrame(bytes, offset, target.crc32c, indexing);
    if ('problem' in frame) {
      problem = frame.detail;
      cutOff = frame.problem === 'truncated';
      break;
    }
    const frameHeader = frame.header;
    const expectedPosition = target.head() + 1 + batchFrames.length;
    if (frameHeader.position !== expectedPosition) {
      problem = `position ${frameHeader.position}, expected ${expectedPosition}`;
      break;
    }
    if (
      frameHeader.batchIndex !== batchFrames.length ||
      (batchFrames.length > 0 && batchFrames[0]?.header.batchCount !== frameHeader.batchCount)
    ) {
      problem = `frame ${frameHeader.batchIndex} of a batch of ${frameHeader.batchCount} is out of place`;
      break;
    }
    batchFrames.push({ header: frameHeader, offset, size: frame.size });
    offset += frame.size;
    if (batchFrames.length === frameHeader.batchCount) {
      for (const item of batchFrames) target.index(item.header, segmentIndex, base + item.offset, item.size);
      batchFrames = [];
      validEnd = offset;
    }
  }
  if (batchFrames.length > 0 && problem === undefined) {
    problem = 'the last batch is incomplete';
    cutOff = true;
  }
  return { validEnd, problem, problemOffset: problem === undefined ? validEnd : offset, cutOff };
}

/**
 * Read-only logs: indexes what the writer appended since the last look (new
 * frames of the last segment, new segments), then records the new head.
 */
export async function refreshSegments(target: RecoveryTarget, reloadKeys: () => Promise<void>): Promise<void> {
  const { fs, dir, writer } = target;
  // Frames are read before the keyset: the writer makes a key durable before any frame under it,
  // so a keyset read afterwards holds every key the frames read here need.
  const last = writer.segments.at(-1);
  let tail: Uint8Array | undefined;
  if (last !== undefined) {
    const size = await last.file.size();
    if (size > last.size) tail = await last.file.read(last.size, size - last.size);
  }
  const known = new Set(writer.segments.map((segment) => segment.name));
  const fresh = (await fs.readdir(dir)).filter((name) => segmentPattern.test(name) && !known.has(name)).sort();
  const opened: { name: string; file: LogFile; bytes: Uint8Array }[] = [];
  for (const name of fresh) {
    const file = await fs.open(joinPath(dir, name), { readOnly: true });
    const bytes = await file.read(0, await file.size());
    if (bytes.length < segmentHeaderSize) {
      await file.close();
      break;
    }
    opened.push({ name, file, bytes });
  }
  await reloadKeys();
  if (last !== undefined && tail !== undefined) {
    const padded = new Uint8Array(last.size + tail.length);
    padded.set(tail, last.size);
    const { validEnd } = indexFrames(target, padded, last.size, writer.segments.length - 1);
    last.size = validEnd;
    last.durableSize = validEnd;
  }
  for (const [index, { name, file, bytes }] of opened.entries()) {
    if (Number(segmentPattern.exec(name)?.[1]) !== target.head() + 1) {
      for (const unused of opened.slice(index)) await unused.file.close();
      break;
    }
    const header = decodeSegmentHeader(bytes);
    const { validEnd } = indexFrames(target, bytes, segmentHeaderSize, writer.segments.length);
    writer.segments.push({ name, firstPosition: header.firstPosition, file, size: validEnd, durableSize: validEnd });
  }
  writer.recovered(target.head());
}
