import { KvErrorCode, type KvStore, type WatchCursor } from '@weft/kv';
import { expect } from 'vitest';
import type { ConformanceCheck } from '../harness.js';
import { bytes, drain, expectKvError, text, WatchReader } from '../helpers.js';
import { check, waitForExpiry } from './contract.js';

/** Reads a resumed watch until it fails; returns the error, or fails the check if it delivers anything first. */
async function firstError(store: KvStore, from: WatchCursor): Promise<unknown> {
  const iterator = store.watch({ from })[Symbol.asyncIterator]();
  try {
    const result = await iterator.next();
    expect.fail(
      `a watch from a cursor of an earlier incarnation of the bucket delivered ${JSON.stringify(result.value)} instead of CursorExpired`,
    );
  } catch (error) {
    return error;
  } finally {
    void iterator.return?.()?.catch(() => undefined);
  }
}

/** Clauses about what lies between states: a passed TTL nobody swept yet, and a bucket that was destroyed and made again. */
export const lifecycleChecks: readonly ConformanceCheck[] = [
  check(
    'ttl',
    'a passed TTL that no sweeper has removed yet reads as absent to get, entry, keys, scan, state-sync, create, update and deleteWithVersion',
    async (context) => {
      // Every handle without a sweeper: a sweeper on any handle would remove the entry and hide the clause.
      const store = await context.openUnswept();
      const other = await context.openUnswept();
      const ttl = 300;
      const version = await store.putWithTtl('t.a', bytes('short'), ttl);
      await store.putWithTtl('t.b', bytes('short'), ttl);
      await store.put('t.live', bytes('kept'));
      await waitForExpiry(context, ttl + 50);
      for (const reader of [store, other]) {
        expect(await reader.get('t.a'), 'get of a passed, unswept TTL').toBeUndefined();
        expect(await reader.entry('t.a'), 'entry of a passed, unswept TTL').toBeUndefined();
        expect((await drain(reader.keys('t'))).sort()).toEqual(['t.live']);
        expect((await drain(reader.scan('t'))).map((entry) => entry.key)).toEqual(['t.live']);
      }
      const watch = new WatchReader(other, { prefixes: ['t'] });
      const listing = await watch.untilSynced();
      expect(listing.filter((event) => event.type === 'put').map((event) => ('key' in event ? event.key : ''))).toEqual(['t.live']);
      await watch.stop();
      await expectKvError(
        other.update('t.a', bytes('late'), version),
        KvErrorCode.RevisionMismatch,
        'update with the version of a passed TTL',
      );
      await expectKvError(other.deleteWithVersion('t.a', version), KvErrorCode.RevisionMismatch, 'deleteWithVersion of a passed TTL');
      const created = await other.create('t.b', bytes('new'));
      const read = await store.get('t.b');
      expect(read && text(read.value)).toBe('new');
      expect(read?.version).toBe(created);
    },
    ['ttl', 'openUnswept'],
  ),
  check(
    'ttl',
    "a write over a passed TTL that no sweeper has removed yet comes after that key's expire event, live and on resume",
    async (context) => {
      const store = await context.openUnswept();
      const writer = await context.openUnswept();
      const live = new WatchReader(store, { prefixes: ['o'] });
      const start = (await live.untilSynced()).at(-1)?.cursor as WatchCursor;
      const ttl = 300;
      for (const key of ['o.put', 'o.delete', 'o.create', 'o.ttl']) await writer.putWithTtl(key, bytes('short'), ttl);
      await waitForExpiry(context, ttl + 50);
      await writer.put('o.put', bytes('next'));
      await writer.delete('o.delete');
      await writer.create('o.create', bytes('next'));
      await writer.putWithTtl('o.ttl', bytes('next'), 60_000);
      await writer.put('o.sentinel', bytes('end'));
      const resumed = new WatchReader(store, { prefixes: ['o'], from: start });
      for (const watch of [live, resumed]) {
        await watch.until((event) => event.type === 'put' && event.key === 'o.sentinel');
        for (const key of ['o.put', 'o.delete', 'o.create', 'o.ttl']) {
          const types = watch.events.filter((event) => event.type !== 'synced' && event.key === key).map((event) => event.type);
          // The TTL put itself may be coalesced away (it was superseded); the expire may not, and it comes first.
          const expected = ['expire', key === 'o.delete' ? 'delete' : 'put'];
          expect(types[0] === 'put' ? types.slice(1) : types, `events of ${key}: ${types.join(', ')}`).toEqual(expected);
        }
        await watch.stop();
      }
    },
    ['ttl', 'openUnswept', 'expireBeforeNextWrite'],
  ),
  check(
    'watch',
    'a cursor from an earlier incarnation of the bucket (destroyed and created again) fails with CursorExpired, even once the new one has more history',
    async (context) => {
      const store = await context.open();
      for (let index = 0; index < 5; index++) await store.put(`k.${index}`, bytes(`old-${index}`));
      const watch = new WatchReader(store);
      const synced = (await watch.untilSynced()).at(-1)?.cursor as WatchCursor;
      await watch.stop();
      const early = await store.put('k.0', bytes('old-again'));
      await context.harness.recreateBucket?.(context.bucket);
      const fresh = await context.open();
      // More writes than before, so the new incarnation's positions pass the old cursor's; all to one key, so a
      // backend that keeps a few versions per key no longer holds what is at the old cursor's position to compare.
      for (let index = 0; index < 20; index++) await fresh.put('k.0', bytes(`new-${index}`));
      const error = await firstError(fresh, synced);
      expect((error as { code?: string }).code, `resuming from ${synced}: ${String(error)}`).toBe(KvErrorCode.CursorExpired);
      const read = await fresh.get('k.0');
      expect(read && text(read.value)).toBe('new-19');
      expect(read?.version).not.toBe(early);
    },
    ['recreateBucket'],
  ),
];
