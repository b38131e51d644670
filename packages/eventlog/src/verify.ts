/**
 * `verify()`: reads every frame and checks CRCs, the header fields,
 * positions, sequences and every entity's hash chain; reports the first bad
 * frame.
 */
import { segmentHeaderSize } from './codec.js';
import type { FrameReader } from './frame-reader.js';
import type { Hashers } from './hash.js';
import { zeroHash } from './log-index.js';
import type { Segment } from './structures.js';
import type { VerifyResult } from './types.js';
import { equalBytes } from './util.js';

export async function verifySegments(
  segments: readonly Segment[],
  reader: FrameReader,
  hashers: Hashers,
  onProgress: ((bytesDone: number, bytesTotal: number) => void) | undefined,
): Promise<VerifyResult> {
  const total = segments.reduce((sum, segment) => sum + segment.size, 0);
  let done = 0;
  let events = 0;
  let expectedPosition = 1;
  const chains = new Map<string, { hash: Uint8Array; sequence: number }>();
  for (const segment of segments) {
    for await (const run of reader.frames(segment, segmentHeaderSize)) {
      for (const [index, frame] of run.frames.entries()) {
        const where = { segment: segment.name, offset: run.offsets[index] as number };
        const { header, payload, size } = frame;
        const fail = (problem: string): VerifyResult => ({ ok: false, events, ...where, position: header.position, problem });
        if (header.position !== expectedPosition) return fail(`position ${header.position}, expected ${expectedPosition}`);
        const chain = chains.get(header.entity) ?? { hash: zeroHash, sequence: 0 };
        if (header.sequence !== chain.sequence + 1) return fail(`sequence ${header.sequence}, expected ${chain.sequence + 1}`);
        const hash = hashers.blake3(chain.hash, payload);
        if (!equalBytes(hash, header.hash)) return fail(`hash chain broken for entity '${header.entity}'`);
        chains.set(header.entity, { hash, sequence: header.sequence });
        expectedPosition++;
        events++;
        done += size;
        if (events % 1024 === 0) onProgress?.(done, total);
      }
      const problem = run.problem;
      if (problem !== undefined)
        return { ok: false, events, segment: segment.name, offset: problem.offset, position: undefined, problem: problem.detail };
    }
  }
  onProgress?.(total, total);
  return { ok: true, events, segments: segments.length };
}
