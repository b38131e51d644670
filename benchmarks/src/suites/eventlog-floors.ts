/**
 * The floors the event log is measured against, in the same run: what any
 * log of this format must do per event, with nothing else.
 *
 * - Append floor: copy the payload into a group buffer, the format's
 *   CRC-32C over the frame and BLAKE3 over the payload, one write per group
 *   of 256 KiB (the writer's group size with sync 'none'), and one await per
 *   append (what a caller of any async append pays).
 * - Replay floor: read the segment files in 4 MiB chunks, walk the frames
 *   and check each frame's CRC-32C.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Hashers } from '@weft/eventlog';

const groupBytes = 256 * 1024;
const frameOverhead = 8 + 84 + 2 + 2 + 2 + 2 + 2; // prefix, fixed header, two short names, no parents

export async function appendFloor(path: string, hashers: Hashers, payloadSize: number) {
  const handle = await open(path, 'w');
  const frameSize = frameOverhead + payloadSize;
  let group = new Uint8Array(groupBytes);
  let used = 0;
  let position = 0;
  const previousHash = new Uint8Array(32);
  return {
    async write(payload: Uint8Array): Promise<void> {
      if (used + frameSize > group.length) {
        await handle.write(group, 0, used, position);
        position += used;
        group = new Uint8Array(groupBytes);
        used = 0;
      }
      group.set(payload, used + frameSize - payloadSize);
      hashers.blake3(previousHash, payload);
      hashers.crc32c(group.subarray(used + 8, used + frameSize));
      used += frameSize;
      await null;
    },
    async close(): Promise<void> {
      if (used > 0) await handle.write(group, 0, used, position);
      await handle.close();
    },
  };
}

/** Reads every segment file of a log directory in chunks, checking each frame's CRC; returns the frames counted. */
export async function replayFloor(dir: string, names: readonly string[], hashers: Hashers): Promise<number> {
  const chunkBytes = 4 * 1024 * 1024;
  let frames = 0;
  for (const name of names) {
    const handle = await open(join(dir, name), 'r');
    try {
      const size = (await handle.stat()).size;
      let offset = 32;
      while (offset < size) {
        const chunk = new Uint8Array(Math.min(chunkBytes, size - offset));
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, offset);
        const view = new DataView(chunk.buffer, 0, bytesRead);
        let at = 0;
        while (at + 8 <= bytesRead) {
          const length = view.getUint32(at, true);
          if (at + 8 + length > bytesRead) break;
          if (hashers.crc32c(chunk.subarray(at + 8, at + 8 + length)) !== view.getUint32(at + 4, true)) throw new Error('CRC mismatch');
          at += 8 + length;
          frames++;
        }
        if (at === 0) throw new Error('a frame larger than the chunk');
        offset += at;
      }
    } finally {
      await handle.close();
    }
  }
  return frames;
}
