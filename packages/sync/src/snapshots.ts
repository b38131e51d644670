/**
 * Snapshots: an owner publishes every event of its log plus the per-device
 * cursors they cover, sealed in chunks under the current key generation and
 * described by a signed manifest; a new device bootstraps from it and pulls
 * the changesets after its cursors.
 */
import { randomBytes } from 'node:crypto';
import { acquireLease } from '@weft/kv';
import type { Blobs } from './blobs.js';
import type { SyncContext } from './context.js';
import { decodeChangesetBody, encodeChangeset, type SyncedEvent, syncedOf } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { isCasRetry } from './heads.js';
import type { Puller } from './pull.js';
import { getSealedChunks, putSealedChunks } from './sealed-chunks.js';
import { hexOf } from './sleep.js';
import { decodeManifest, decodeSnapshotBody, encodeManifest, encodeSnapshotBody, type SnapshotCursors } from './snapshot.js';
import { inRanges } from './state.js';
import { currentSnapshotKey, snapshotChunkKey } from './store-layout.js';

const encoder = new TextEncoder();

/** A snapshot read from the store and checked. */
export interface ReadSnapshot {
  readonly manifest: { readonly id: string; readonly createdAt: number; readonly cursors: SnapshotCursors };
  readonly cursors: SnapshotCursors;
  readonly events: SyncedEvent[];
  readonly blobs: string[];
}

export class Snapshots {
  readonly #context: SyncContext;
  readonly #puller: Puller;
  readonly #blobs: Blobs;

  constructor(context: SyncContext, puller: Puller, blobs: Blobs) {
    this.#context = context;
    this.#puller = puller;
    this.#blobs = blobs;
  }

  /** Publishes a snapshot under the `leases.snapshot` lease; `undefined` when another owner holds it. */
  async publish(options: { leaseMs?: number }): Promise<string | undefined> {
    const context = this.#context;
    const { kv, library, state, device } = context;
    library.assertOwner();
    const lease = await acquireLease(kv, {
      key: 'leases.snapshot',
      holder: device,
      ttlMs: options.leaseMs ?? 60_000,
      clock: context.clock,
    });
    if (lease === undefined) return undefined;
    try {
      await this.#puller.pullAll();
      const generation = library.generation();
      const key = library.keys.get(generation);
      if (key === undefined) throw new SyncError(SyncErrorCode.NotAllowed, `this device does not hold key generation ${generation} yet`);
      const cursors: SnapshotCursors = Object.fromEntries(Object.entries(state.remote).map(([other, remote]) => [other, { ...remote }]));
      cursors[device] = { seq: state.lastSeq, hash: state.lastHash };
      const events: SyncedEvent[] = [];
      for await (const event of context.log.read()) {
        // Own events not pushed yet are not covered by the cursors; they travel as changesets.
        if (event.position > state.pushedPosition && !inRanges(state.imported, event.position)) continue;
        events.push(syncedOf(event));
      }
      // Blobs referenced so far travel with the snapshot (those still queued here travel with the next changeset).
      const queued = new Set(state.pendingBlobs);
      const blobs = (await this.#blobs.list()).filter((blob) => !queued.has(blob));
      const body = encodeSnapshotBody(cursors, encodeChangeset(events, blobs));
      const id = randomBytes(12).toString('hex');
      const chunks = await putSealedChunks(context.chunkStore, key, generation, body, (index) => snapshotChunkKey(id, index));
      const createdAt = context.clock();
      const manifest = { id, chunks, generation, author: device, createdAt, bodyHash: hexOf(context.hashers.blake3(body)), cursors };
      await kv.put(snapshotChunkKey(id, 0), encodeManifest(manifest, context.identity));
      for (let attempt = 0; attempt < 20; attempt++) {
        const current = await kv.get(currentSnapshotKey);
        const value = encoder.encode(JSON.stringify({ id, generation, createdAt }));
        try {
          if (current === undefined) await kv.create(currentSnapshotKey, value);
          else await kv.update(currentSnapshotKey, value, current.version);
          return id;
        } catch (error) {
          if (!isCasRetry(error)) throw error;
        }
      }
      throw new SyncError(SyncErrorCode.StateFailed, 'could not move snapshot.current');
    } finally {
      await lease.release().catch(() => undefined);
    }
  }

  /** Reads and checks the current snapshot; `undefined` when there is none. */
  async read(): Promise<ReadSnapshot | undefined> {
    const { kv, library, chunkStore, hashers } = this.#context;
    const pointer = await kv.get(currentSnapshotKey);
    if (pointer === undefined) return undefined;
    const { id } = JSON.parse(new TextDecoder().decode(pointer.value)) as { id: string };
    const manifestEntry = await kv.get(snapshotChunkKey(id, 0));
    if (manifestEntry === undefined) throw new SyncError(SyncErrorCode.MissingChangeset, `snapshot ${id} has no manifest`);
    const { manifest, authorKey } = decodeManifest(manifestEntry.value);
    const author = library.member(manifest.author);
    const ownerAuthored = library.config.founder === undefined || library.membership?.everOwners.has(manifest.author) === true;
    if (author === undefined || !ownerAuthored || !Buffer.from(author.publicKey).equals(Buffer.from(authorKey)) || manifest.id !== id) {
      throw new SyncError(SyncErrorCode.Forged, `snapshot ${id} was not published by an owner`);
    }
    const key = library.keys.get(manifest.generation);
    if (key === undefined)
      throw new SyncError(
        SyncErrorCode.DecryptionFailed,
        `snapshot ${id} is sealed with generation ${manifest.generation}, which this device does not hold`,
      );
    const opened = await getSealedChunks(chunkStore, key, manifest.generation, manifest.chunks, (index) => snapshotChunkKey(id, index));
    if ('failed' in opened)
      throw new SyncError(SyncErrorCode.DecryptionFailed, `snapshot chunk ${opened.failed} is missing or fails authentication`);
    const body = opened.bytes;
    if (hexOf(hashers.blake3(body)) !== manifest.bodyHash)
      throw new SyncError(SyncErrorCode.DecryptionFailed, `snapshot ${id} does not match its manifest`);
    const { cursors, changeset } = decodeSnapshotBody(body);
    const { events, blobs } = decodeChangesetBody(changeset);
    return { manifest, cursors, events, blobs };
  }

  /**
   * Imports the current snapshot's events (idempotently) and moves the
   * cursors of the devices it covers forward to the snapshot's; `false` when
   * there is no snapshot.
   */
  async bootstrap(): Promise<boolean> {
    const { board, state, device: self } = this.#context;
    const snapshot = await this.read();
    if (snapshot === undefined) return false;
    // Like a changeset, a snapshot counts only once the blobs it references are here.
    for (const blob of snapshot.blobs) {
      if (!(await this.#blobs.fetch(blob)))
        throw new SyncError(SyncErrorCode.BlobMissing, `blob ${blob} of snapshot ${snapshot.manifest.id} is not in the store`);
    }
    await this.#puller.apply('snapshot', snapshot.events);
    for (const [device, cursor] of Object.entries(snapshot.cursors)) {
      if (device === self) continue;
      const current = state.remote[device]?.seq ?? 0;
      if (cursor.seq > current) state.remote[device] = { seq: cursor.seq, hash: cursor.hash };
      board.known.set(device, Math.max(board.known.get(device) ?? 0, cursor.seq));
    }
    board.rebootstrap = false;
    await this.#context.stateFile.save(state);
    this.#context.notify();
    return true;
  }
}
