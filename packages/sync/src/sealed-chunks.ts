/**
 * Large values (blobs, snapshot bodies) travel as chunks sealed with a
 * library key: `nonce (24 bytes) || XChaCha20-Poly1305(chunk)`, the AAD
 * binding the library, the chunk's own key path and the key generation.
 */

import { RandomPool, type XChaCha } from '@weft/eventlog';
import type { KvStore } from '@weft/kv';
import { concat, payloadAad } from './envelope.js';

const noncePool = new RandomPool();

/** Where chunks are sealed and stored. */
export interface ChunkStore {
  readonly kv: KvStore;
  readonly cipher: XChaCha;
  readonly libraryId: string;
}

/**
 * Seals `bytes` under `key` in chunks that fit the store (its largest value
 * less room for the nonce, the tag and slack) and puts chunk `n` (from 1) at
 * `chunkKey(n)`. Returns how many chunks it wrote (at least one).
 */
export async function putSealedChunks(
  store: ChunkStore,
  key: Uint8Array,
  generation: number,
  bytes: Uint8Array,
  chunkKey: (index: number) => string,
): Promise<number> {
  const chunkSize = Math.max(1024, store.kv.capabilities.maxValueBytes - 4096);
  const chunks = Math.max(1, Math.ceil(bytes.length / chunkSize));
  for (let index = 1; index <= chunks; index++) {
    const keyPath = chunkKey(index);
    const nonce = noncePool.take(24);
    const sealed = store.cipher.seal(
      key,
      nonce,
      bytes.subarray((index - 1) * chunkSize, index * chunkSize),
      payloadAad(store.libraryId, keyPath, generation),
    );
    await store.kv.put(keyPath, concat([nonce, sealed]));
  }
  return chunks;
}

/** The opened bytes, or the first chunk that is missing (absent or too short to hold a nonce) or fails authentication. */
export type OpenedChunks = { readonly bytes: Uint8Array } | { readonly failed: string; readonly reason: 'missing' | 'unauthenticated' };

/** Reads chunks 1..`chunks` at `chunkKey(n)` and opens them under `key`. */
export async function getSealedChunks(
  store: ChunkStore,
  key: Uint8Array,
  generation: number,
  chunks: number,
  chunkKey: (index: number) => string,
): Promise<OpenedChunks> {
  const parts: Uint8Array[] = [];
  for (let index = 1; index <= chunks; index++) {
    const keyPath = chunkKey(index);
    const chunk = await store.kv.get(keyPath);
    if (chunk === undefined || chunk.value.length < 24) return { failed: keyPath, reason: 'missing' };
    const opened = store.cipher.open(
      key,
      chunk.value.subarray(0, 24),
      chunk.value.subarray(24),
      payloadAad(store.libraryId, keyPath, generation),
    );
    if (opened === undefined) return { failed: keyPath, reason: 'unauthenticated' };
    parts.push(opened);
  }
  return { bytes: concat(parts) };
}
