/**
 * Blobs: content-addressed with a key of the library (so the store cannot
 * test a guess of the content), kept on the device, uploaded sealed in chunks
 * before the changeset that references them, fetched before a changeset that
 * references them counts as applied.
 */
import { toHex } from '@weft/common';
import { KvError, KvErrorCode } from '@weft/kv';
import { hmacSha256 } from '#platform';
import type { LocalBlobStore } from './blob-store.js';
import type { SyncContext } from './context.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { getSealedChunks, putSealedChunks } from './sealed-chunks.js';
import { blobChunkKey, blobKey } from './store-layout.js';

const encoder = new TextEncoder();

export class Blobs {
  readonly #context: SyncContext;
  readonly #local: LocalBlobStore;

  constructor(context: SyncContext, local: LocalBlobStore) {
    this.#context = context;
    this.#local = local;
  }

  /** The key blob ids are derived with: from the oldest generation, so ids stay stable across rotations. */
  #idKey(): Uint8Array {
    const keys = this.#context.library.keys;
    const generation = Math.min(...keys.keys());
    const key = keys.get(generation);
    if (key === undefined) throw new SyncError(SyncErrorCode.NotAllowed, 'this device holds no library key yet');
    return hmacSha256(key, new TextEncoder().encode('weft-blob-id-v1'));
  }

  idOf(bytes: Uint8Array): string {
    return toHex(hmacSha256(this.#idKey(), bytes));
  }

  /** Stores a blob on this device and queues it for the next changeset; returns its id. */
  async add(bytes: Uint8Array): Promise<string> {
    const { state, stateFile } = this.#context;
    const id = this.idOf(bytes);
    await this.#local.write(id, bytes);
    if (!state.pendingBlobs.includes(id)) state.pendingBlobs.push(id);
    await stateFile.save(state);
    return id;
  }

  read(id: string): Promise<Uint8Array | undefined> {
    return this.#local.read(id);
  }

  /** Every blob stored on this device. */
  list(): Promise<string[]> {
    return this.#local.list();
  }

  async upload(id: string, generation: number, key: Uint8Array): Promise<void> {
    const { kv, chunkStore } = this.#context;
    const base = blobKey(id);
    if ((await kv.get(base)) !== undefined) return;
    const bytes = await this.#local.read(id);
    if (bytes === undefined) throw new SyncError(SyncErrorCode.BlobMissing, `blob ${id} is queued but not stored on this device`);
    const chunks = await putSealedChunks(chunkStore, key, generation, bytes, (index) => blobChunkKey(id, index));
    // The header goes last: its presence means every chunk is there.
    try {
      await kv.create(base, encoder.encode(JSON.stringify({ chunks, size: bytes.length, generation })));
    } catch (error) {
      if (!KvError.is(error, KvErrorCode.AlreadyExists)) throw error;
    }
  }

  /** Fetches a referenced blob into local storage; `false` when it is not (yet) fully in the store. */
  async fetch(id: string): Promise<boolean> {
    const { kv, chunkStore, library, board } = this.#context;
    if (!/^[0-9a-f]{64}$/.test(id)) return false;
    if (await this.#local.has(id)) return true;
    const header = await kv.get(blobKey(id));
    if (header === undefined) return false;
    let described: { chunks: number; size: number; generation: number };
    try {
      described = JSON.parse(new TextDecoder().decode(header.value)) as typeof described;
    } catch {
      return false;
    }
    const key = library.keys.get(described.generation);
    if (key === undefined || !(described.chunks >= 1 && described.chunks < 1_000_000)) return false;
    const opened = await getSealedChunks(chunkStore, key, described.generation, described.chunks, (index) => blobChunkKey(id, index));
    if ('failed' in opened) {
      if (opened.reason === 'unauthenticated')
        board.alarm(new SyncError(SyncErrorCode.BlobMissing, `blob chunk ${opened.failed} fails authentication`));
      return false;
    }
    const bytes = opened.bytes;
    if (this.idOf(bytes) !== id) {
      board.alarm(new SyncError(SyncErrorCode.BlobMissing, `blob ${id} does not match its id`));
      return false;
    }
    await this.#local.write(id, bytes);
    return true;
  }
}
