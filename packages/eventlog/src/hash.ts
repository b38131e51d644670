import { createBLAKE3, createCRC32, type IHasher } from 'hash-wasm';
import { crc32cJs, crc32cJsLimit } from './crc32c.js';

/** The two checksums of the format: CRC-32C (Castagnoli) over frames, BLAKE3-256 over payloads. */
export interface Hashers {
  /** CRC-32C of `data`, or of `data[start, end)` read in place. */
  crc32c(data: Uint8Array, start?: number, end?: number): number;
  /** BLAKE3-256 of `first`, or of `first ‖ second`. */
  blake3(first: Uint8Array, second?: Uint8Array): Uint8Array;
}

let loading: Promise<Hashers> | undefined;
/** Two short inputs of {@link Hashers.blake3} are hashed as one, copied here (a previous hash and a payload). */
const joinedBytes = 2048;
const joined = new Uint8Array(joinedBytes);

/** The WASM hashers, loaded once per process. */
export function loadHashers(): Promise<Hashers> {
  loading ??= (async () => {
    const crc: IHasher = await createCRC32(0x82f63b78);
    const blake: IHasher = await createBLAKE3();
    return {
      crc32c(data, start = 0, end = data.length) {
        if (end - start < crc32cJsLimit) return crc32cJs(data, start, end);
        crc.init();
        crc.update(start === 0 && end === data.length ? data : data.subarray(start, end));
        const digest = crc.digest('binary');
        return (((digest[0] as number) << 24) | ((digest[1] as number) << 16) | ((digest[2] as number) << 8) | (digest[3] as number)) >>> 0;
      },
      blake3(first, second) {
        blake.init();
        if (second !== undefined && first.length + second.length <= joinedBytes) {
          // One call into the WASM module instead of two: each call costs more than copying a short input.
          joined.set(first, 0);
          joined.set(second, first.length);
          blake.update(joined.subarray(0, first.length + second.length));
        } else {
          blake.update(first);
          if (second !== undefined) blake.update(second);
        }
        return blake.digest('binary');
      },
    };
  })();
  return loading;
}
