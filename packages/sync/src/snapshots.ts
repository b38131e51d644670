/**
 * Snapshots: an owner publishes every event of its log plus the per-device
 * cursors they cover, sealed in chunks under the current key generation and
 * described by a signed manifest; a new device bootstraps from it and pulls
 * the changesets after its cursors.
 */
import { bytesEqual, randomBytes, toHex } from '@weft/common';
import { acquireLease } from '@weft/kv';
import type { Blobs } from './blobs.js';
import type { SyncContext } from './context.js';
import { decodeChangesetBody, encodeChangeset, type SyncedEvent, syncedOf } from './envelope.js';
import { SyncError, SyncErrorCode } from './errors.js';
import { isCasRetry } from './heads.js';
import type { Puller } from './pull.js';
import { getSealedChunks, putSealedChunks } from './sealed-chunks.js';
import { decodeManifest, decodeSnapshotBody, encodeManifest, encodeSnapshotBody, type SnapshotCursors } from './snapshot.js';
import { inRanges, zeroHashHex } from './state.js';
import { changesetKey, currentSnapshotKey, snapshotChunkKey } from './store-layout.js';
import { hexOf } from './util.js';

const encoder = new TextEncoder();

/** The snapshot id `snapshot.current` points at. @throws {SyncError} `InvalidEnvelope` */
function snapshotIdOf(value: Uint8Array): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(value));
  } catch {
    parsed = undefined;
  }
  const id = (parsed as { id?: unknown } | undefined)?.id;
  if (typeof id !== 'string' || !/^[0-9a-f]{1,64}$/.test(id))
    throw new SyncError(SyncErrorCode.InvalidEnvelope, `${currentSnapshotKey} does not name a snapshot`);
  return id;
}

function sortedCursors(cursors: SnapshotCursors): Array<[string, number, string]> {
  return Object.entries(cursors)
    .map(([device, cursor]): [string, number, string] => [device, cursor.seq, cursor.hash])
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

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
      const id = toHex(randomBytes(12));
      const chunks = await putSealedChunks(context.chunkStore, key, generation, body, (index) => snapshotChunkKey(id, index));
      const createdAt = context.clock();
      const manifest = {
        id,
        chunks,
        generation,
        author: device,
        createdAt,
        bodyHash: hexOf(context.hashers.blake3(body)),
        cursors,
        membership: library.membership?.tips ?? [],
      };
      await kv.put(snapshotChunkKey(id, 0), encodeManifest(manifest, context.identity, library.id));
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

  /**
   * Reads and checks the current snapshot; `undefined` when there is none.
   * A manifest counts only from an owner at the membership position it names,
   * sealed with the generation in force there, and only while its author
   * is still an owner (its authority ends at its removal).
   *
   * @throws {SyncError} `SnapshotRejected`, `InvalidEnvelope`, `Forged`, `DecryptionFailed`, `MissingChangeset`
   */
  async read(): Promise<ReadSnapshot | undefined> {
    const { kv, library, chunkStore, hashers } = this.#context;
    const pointer = await kv.get(currentSnapshotKey);
    if (pointer === undefined) return undefined;
    const id = snapshotIdOf(pointer.value);
    const manifestEntry = await kv.get(snapshotChunkKey(id, 0));
    if (manifestEntry === undefined) throw new SyncError(SyncErrorCode.MissingChangeset, `snapshot ${id} has no manifest`);
    const { manifest, authorKey } = decodeManifest(manifestEntry.value, library.id);
    const reject = (why: string) => new SyncError(SyncErrorCode.SnapshotRejected, `snapshot ${id}: ${why}`, { device: manifest.author });
    if (manifest.id !== id) throw reject(`its manifest names snapshot ${manifest.id}`);
    const author = library.member(manifest.author);
    if (author === undefined || !bytesEqual(author.publicKey, authorKey)) throw reject(`${manifest.author} is not a member with that key`);
    if (library.config.founder !== undefined) {
      const position = library.stateAt(manifest.membership);
      if (position === undefined) throw reject('it names a membership position this device does not know');
      const there = position.members.get(manifest.author);
      if (there === undefined || there.role !== 'owner' || there.removedAfter !== undefined)
        throw reject(`${manifest.author} was not an owner at the membership position it names`);
      if (position.generation !== manifest.generation)
        throw reject(`it is sealed with generation ${manifest.generation}, but ${position.generation} was in force at its position`);
      if (!library.isActiveOwner(manifest.author))
        throw reject(`${manifest.author} is no longer an owner: its snapshots lapsed with its authority`);
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
    if (JSON.stringify(sortedCursors(cursors)) !== JSON.stringify(sortedCursors(manifest.cursors)))
      throw reject('its body and its manifest name different cursors');
    const { events, blobs } = decodeChangesetBody(changeset);
    return { manifest, cursors, events, blobs };
  }

  /**
   * Checks every cursor of a snapshot against the store: a changeset still
   * there must have the hash the cursor names; a cursor past a device's
   * published changesets (above its garbage-collection floor, with nothing
   * there) is refused; a removed device's cursor can be at most its cutoff,
   * with the bound hash there.
   *
   * @throws {SyncError} `SnapshotRejected`
   */
  async #checkCursors(id: string, cursors: SnapshotCursors): Promise<void> {
    const { kv, library, hashers, device: self } = this.#context;
    for (const [device, cursor] of Object.entries(cursors)) {
      if (device === self) continue;
      const reject = (why: string) =>
        new SyncError(SyncErrorCode.SnapshotRejected, `snapshot ${id}: the cursor of ${device} at ${cursor.seq} ${why}`, {
          device,
          seq: cursor.seq,
        });
      const member = library.member(device);
      if (member === undefined) throw reject('belongs to no member');
      if (cursor.seq === 0) {
        if (cursor.hash !== zeroHashHex) throw reject('names a hash before the first changeset');
        continue;
      }
      if (member.removedAfter !== undefined) {
        if (cursor.seq > member.removedAfter) throw reject(`lies past its removal at ${member.removedAfter}`);
        if (cursor.seq === member.removedAfter && member.cutoffHash !== undefined && cursor.hash !== member.cutoffHash)
          throw reject('disagrees with the hash its removal bound');
      }
      const stored = await kv.get(changesetKey(device, cursor.seq));
      if (stored !== undefined) {
        if (hexOf(hashers.blake3(stored.value)) !== cursor.hash) throw reject('disagrees with the changeset in the store');
        continue;
      }
      if (cursor.seq > (await this.#puller.floorOf(device))) throw reject("lies beyond the device's published changesets");
    }
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
    await this.#checkCursors(snapshot.manifest.id, snapshot.cursors);
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
