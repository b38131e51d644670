/**
 * A failover that loses acknowledged writes, on real servers: a master with
 * a replica, the replication link partitioned (a loopback link holds what
 * the master sends) so the replica misses the last writes the master
 * acknowledges, the master killed (-9), the replica promoted
 * (`REPLICAOF NO ONE`) and the address moved to it (a loopback link, as a
 * virtual IP or Sentinel would). Redis replication is asynchronous, so
 * those writes are gone; weft must never turn that into a silent gap:
 *
 * - a running watch that delivered a lost write fails with `CursorExpired`,
 *   even once newer writes moved the head past its position;
 * - a watch resumed from a cursor of a lost write fails the same way; one
 *   resumed from before the loss continues with what the new master has;
 * - compare-and-swap stays safe: a version only the lost write had is
 *   refused, the surviving version is current again.
 *
 * The test prints what was lost and where it was reported.
 */
import { KvError, type KvStore, type WatchCursor } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import { WatchReader } from '@weft/kv-testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { bytes, decode, putRetrying, redisMissing, replicatedPair } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function failure(reader: WatchReader): Promise<unknown> {
  try {
    for (;;) if ((await reader.next(20_000)) === undefined) return undefined;
  } catch (error) {
    return error;
  }
}

describe.skipIf(redisMissing !== undefined)('a failover that loses acknowledged writes (replica promoted)', () => {
  it('fails the watches that saw a lost write with CursorExpired, resumes the others, and keeps compare-and-swap safe', async () => {
    const { master, replica, link, replication, onMaster, onReplica } = await replicatedPair(cleanups);
    const store: KvStore = await openRedisKv({
      url: `redis://127.0.0.1:${link.port}`,
      bucket: 'failover',
      timeoutMs: 1000,
      sweepIntervalMs: 0,
    });
    cleanups.push(() => store.close());

    await store.put('a', bytes('1'));
    const survivingB = await store.put('b', bytes('2'));
    // Both writes are on the replica before it stops.
    expect(await onMaster.wait(1, 5000)).toBe(1);
    const watch = new WatchReader(store, {});
    await watch.untilSynced();
    const beforeLoss = (watch.events.at(-1) as { cursor: WatchCursor }).cursor;

    replication.partition();
    const lostC = await store.put('c', bytes('3'));
    const lostB = await store.update('b', bytes('4'), survivingB);
    const lostEvent = (await watch.until((event) => event.type === 'put' && event.key === 'b')).at(-1) as { cursor: WatchCursor };
    // Acknowledged by the master, never replicated.
    expect(await onMaster.wait(1, 200)).toBe(0);

    await master.kill();
    // What the link held dies with the master's connection.
    replication.reset();
    replication.heal();
    await onReplica.replicaof('NO', 'ONE');
    link.retarget(replica.port);
    // The new master takes writes: its head moves past the lost positions.
    await putRetrying(store, 'e', '5');

    const lost = { c: await store.get('c'), b: await store.get('b') };
    console.log(
      `[failover] acknowledged and lost: put c (${lostC}), update b (${lostB}); after the failover c is ${lost.c === undefined ? 'absent' : 'present'}, b is at ${lost.b?.version}`,
    );
    expect(lost.c).toBeUndefined();
    expect(lost.b?.version).toBe(survivingB);

    // The running watch delivered c and b's update: it fails instead of going on as if they still held.
    const running = await failure(watch);
    console.log(`[failover] the running watch: ${String(running)}`);
    expect(KvError.is(running, 'CursorExpired'), String(running)).toBe(true);
    expect((running as KvError).message).toContain('lost writes');

    // Resumed from the lost write's cursor: the same.
    const resumedLost = await failure(new WatchReader(store, { from: lostEvent.cursor }));
    expect(KvError.is(resumedLost, 'CursorExpired'), String(resumedLost)).toBe(true);

    // Resumed from before the loss: continues with what the new master holds, and nothing of the lost writes.
    const resumed = new WatchReader(store, { from: beforeLoss });
    const seen = await resumed.until((event) => event.type === 'put' && event.key === 'e');
    expect(
      seen
        .filter((event) => event.type === 'put')
        .map((event) => `${event.type === 'put' ? event.key : ''}=${event.type === 'put' ? decode(event.value) : ''}`),
    ).toEqual(['e=5']);
    await resumed.stop();

    // Compare-and-swap: the version only the lost write had is refused; the surviving one is current again.
    const stale = await store.update('b', bytes('x'), lostB).catch((caught: unknown) => caught);
    expect(KvError.is(stale, 'RevisionMismatch'), String(stale)).toBe(true);
    const stale2 = await store.update('c', bytes('x'), lostC).catch((caught: unknown) => caught);
    expect(KvError.is(stale2, 'RevisionMismatch'), String(stale2)).toBe(true);
    await store.update('b', bytes('6'), survivingB);
  });
});
