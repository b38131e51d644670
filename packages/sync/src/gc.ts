/**
 * Garbage collection: an owner purges the changesets that every current
 * member has applied and the current snapshot covers, once that snapshot is
 * older than a grace period. The floor is recorded before anything is
 * purged, so a device that still needed a purged changeset is told to
 * re-bootstrap instead of skipping it.
 */
import { acquireLease } from '@weft/kv';
import type { SyncContext } from './context.js';
import { type HeadValue, parseHead } from './heads.js';
import type { Puller } from './pull.js';
import type { Snapshots } from './snapshots.js';
import { encodeStatement } from './statements.js';
import { changesetKey, deviceOfHeadKey, floorKey, headsPrefix } from './store-layout.js';

/** Purges what every member applied and the snapshot covers; returns how many changesets were purged per device. */
export async function collectGarbage(
  context: SyncContext,
  parts: { snapshots: Snapshots; puller: Puller },
  options: { graceMs?: number; leaseMs?: number },
): Promise<Record<string, number>> {
  const { kv, library, device: self } = context;
  const membership = library.assertOwner();
  const lease = await acquireLease(kv, { key: 'leases.gc', holder: self, ttlMs: options.leaseMs ?? 60_000, clock: context.clock });
  if (lease === undefined) return {};
  try {
    const snapshot = await parts.snapshots.read();
    if (snapshot === undefined || context.clock() - snapshot.manifest.createdAt < (options.graceMs ?? 24 * 60 * 60 * 1000)) return {};
    const heads = new Map<string, HeadValue>();
    for await (const entry of kv.scan(headsPrefix)) {
      const head = parseHead(entry.value);
      if (head !== undefined) heads.set(deviceOfHeadKey(entry.key), head);
    }
    const active = [...membership.members.values()].filter((member) => member.removedAfter === undefined).map((member) => member.deviceId);
    const purged: Record<string, number> = {};
    for (const [device, cursor] of Object.entries(snapshot.cursors)) {
      let floor = cursor.seq;
      for (const reader of active) {
        if (reader === device) continue;
        floor = Math.min(floor, heads.get(reader)?.applied?.[device] ?? 0);
      }
      const previous = await parts.puller.floorOf(device);
      if (floor <= previous) continue;
      await kv.put(floorKey(device), encodeStatement('floor', { device, floor }, context.identity, context.library.id));
      for (let seq = previous + 1; seq <= floor; seq++) {
        const keyPath = changesetKey(device, seq);
        if (kv.capabilities.purge) await kv.purge(keyPath);
        else await kv.delete(keyPath);
      }
      purged[device] = floor - previous;
    }
    return purged;
  } finally {
    await lease.release().catch(() => undefined);
  }
}
