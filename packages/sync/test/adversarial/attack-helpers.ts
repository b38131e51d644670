/**
 * What the attacks of the adversarial suite share: the attack type, and the
 * steps several attacks take (write and push, read the store, a member's
 * key, a removed device writing on, a forged snapshot).
 */

import { randomBytes } from 'node:crypto';
import { loadHashers, nodeXChaCha } from '@weft/eventlog';
import { type DeviceIdentity, decodeEnvelope, decodeKeyWrap, encodeChangeset, openEnvelope, payloadAad, unwrapKey } from '@weft/sync';
import { expect } from 'vitest';
import { encodeManifest, encodeSnapshotBody } from '../../src/snapshot.js';
import { bytes, eventOf, forgeChangeset, kind, type Node, type World } from './world.js';

export interface Attack {
  /** The claim id in docs/security.md and what it says. */
  readonly claim: string;
  readonly run: (world: World) => Promise<void>;
}

export const concat = (...parts: Uint8Array[]) => Buffer.concat(parts);

/** Appends `payload` on a device and pushes it (one changeset). */
export async function write(node: Node, payload: string): Promise<void> {
  await node.log.append({ entity: 'doc', kind, payload: bytes(payload) });
  await node.sync.syncOnce();
}

export async function stored(world: World, key: string): Promise<Uint8Array> {
  const entry = await world.raw.get(key);
  if (entry === undefined) throw new Error(`${key} is not in the store`);
  return entry.value;
}

/** The library key of a generation as `identity` unwraps it from the store (what a member, or a former one, holds). */
export async function keyHeldBy(world: World, identity: DeviceIdentity, generation: number): Promise<Uint8Array> {
  const key = unwrapKey(decodeKeyWrap(await stored(world, `keys.${identity.deviceId}.${generation}`)), identity, 'family', nodeXChaCha);
  if (key === undefined) throw new Error('no key');
  return key;
}

/** Whether a changeset opens under `key`: what a device holding that key can read. */
export async function readableWith(world: World, keyPath: string, key: Uint8Array): Promise<boolean> {
  const envelope = decodeEnvelope(await stored(world, keyPath));
  return openEnvelope(envelope, key, 'family', keyPath, nodeXChaCha) !== undefined;
}

/**
 * What a removed device that keeps its generation-0 key can do: sign and
 * store its changeset 2 (after its first), carrying `payload`. Returns that key.
 */
export async function writeAfterRemoval(world: World, removed: DeviceIdentity, payload: string): Promise<Uint8Array> {
  const r = removed.deviceId;
  const key = await keyHeldBy(world, removed, 0);
  await world.raw.create(
    `changes.${r}.2`,
    await forgeChangeset({
      author: removed,
      seq: 2,
      previous: await stored(world, `changes.${r}.1`),
      generation: 0,
      key,
      events: [eventOf(payload)],
    }),
  );
  return key;
}

export async function expectNotCaughtUp(node: Node): Promise<void> {
  await expect(node.sync.waitUntilCaughtUp({ timeoutMs: 300 })).rejects.toThrow(/not caught up/);
}

/** Publishes a snapshot as `author` holding `key`, and points `snapshot.current` at it (what anyone with store access can do). */
export async function publishForgedSnapshot(
  world: World,
  author: DeviceIdentity,
  key: Uint8Array,
  options: {
    generation: number;
    membership: readonly string[];
    cursors: Record<string, { seq: number; hash: string }>;
    events: ReturnType<typeof eventOf>[];
    /** The library the manifest is signed for (this one unless given). */
    manifestLibrary?: string;
  },
): Promise<void> {
  const { blake3 } = await loadHashers();
  const id = randomBytes(12).toString('hex');
  const body = encodeSnapshotBody(options.cursors, encodeChangeset(options.events));
  const nonce = randomBytes(24);
  const keyPath = `snapshots.${id}.1`;
  await world.raw.put(keyPath, concat(nonce, nodeXChaCha.seal(key, nonce, body, payloadAad('family', keyPath, options.generation))));
  const manifest = {
    id,
    chunks: 1,
    generation: options.generation,
    author: author.deviceId,
    createdAt: Date.now(),
    bodyHash: Buffer.from(blake3(body)).toString('hex'),
    cursors: options.cursors,
    membership: options.membership,
  };
  await world.raw.put(`snapshots.${id}.0`, encodeManifest(manifest, author, options.manifestLibrary ?? 'family'));
  await world.raw.put('snapshot.current', bytes(JSON.stringify({ id, generation: options.generation, createdAt: manifest.createdAt })));
}
