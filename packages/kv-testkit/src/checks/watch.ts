import { KvError, KvErrorCode, type KvStore, type Version, type WatchCursor, type WatchEvent, type WatchOptions } from '@weft/kv';
import { expect } from 'vitest';
import type { CheckContext, ConformanceCheck } from '../harness.js';
import {
  applyEvents,
  bytes,
  eventually,
  expectCursorOrder,
  expectKvError,
  readState,
  sortedEntries,
  text,
  WatchReader,
} from '../helpers.js';
import { check } from './contract.js';

type ChangeEvent = Exclude<WatchEvent, { type: 'synced' }>;

function changes(events: readonly WatchEvent[]): ChangeEvent[] {
  return events.filter((event): event is ChangeEvent => event.type !== 'synced');
}

function isPutOf(key: string) {
  return (event: WatchEvent) => event.type === 'put' && event.key === key;
}

export const watchChecks: ConformanceCheck[] = [
  check('watch', 'state-sync delivers every live key once, then one synced marker, then live changes', async (context) => {
    const store = await context.open();
    for (let index = 0; index < 50; index++) await store.put(`k.${index}`, bytes(`v${index}`));
    for (let index = 0; index < 50; index += 5) await store.delete(`k.${index}`);
    await store.put('k.1', bytes('updated'));
    const expected = await readState(store);
    const watch = new WatchReader(store);
    const listing = await watch.untilSynced();
    const puts = listing.filter((event) => event.type === 'put');
    expect(puts.length).toBe(expected.size);
    expect(listing.length).toBe(expected.size + 1);
    expect(sortedEntries(applyEvents(listing))).toEqual(sortedEntries(expected));
    expectCursorOrder(store, listing);
    await store.put('k.new', bytes('live'));
    const [live] = await watch.until(isPutOf('k.new'));
    expect(live?.type).toBe('put');
    await watch.stop();
  }),
  check('watch', 'state-sync of an empty bucket or prefix emits synced at once', async (context) => {
    const store = await context.open();
    const empty = new WatchReader(store);
    expect((await empty.next())?.type).toBe('synced');
    await empty.stop();
    await store.put('other.key', bytes('x'));
    const prefixed = new WatchReader(store, { prefixes: ['nothing.here'] });
    expect((await prefixed.next())?.type).toBe('synced');
    await store.put('nothing.here.now', bytes('y'));
    const [event] = await prefixed.until(() => true);
    expect(event?.type === 'put' ? event.key : undefined).toBe('nothing.here.now');
    await prefixed.stop();
  }),
  check('watch', 'state-sync stays complete while other clients write during the listing (no scan-to-watch race)', async (context) => {
    const store = await context.open();
    const writer = await context.open();
    for (let index = 0; index < 300; index++) await store.put(`item.${index}`, bytes(`initial-${index}`));
    const watch = new WatchReader(store, { prefixes: ['item', 'sentinel'] });
    const first = await watch.next();
    expect(first?.type).toBe('put');
    // While the watch is part-way through its listing, another client changes the bucket.
    for (let index = 0; index < 60; index++) await writer.put(`item.new.${index}`, bytes(`new-${index}`));
    for (let index = 0; index < 300; index += 6) await writer.put(`item.${index}`, bytes(`changed-${index}`));
    for (let index = 3; index < 300; index += 6) await writer.delete(`item.${index}`);
    await writer.put('sentinel', bytes('end'));
    await watch.until(isPutOf('sentinel'));
    const view = applyEvents(watch.events);
    view.delete('sentinel');
    expect(sortedEntries(view)).toEqual(sortedEntries(await readState(store, 'item')));
    expect(watch.events.filter((event) => event.type === 'synced').length).toBe(1);
    expectCursorOrder(store, watch.events);
    await watch.stop();
  }),
  check('watch', 'state-sync of a bucket of several listing pages stays complete while writes race its start', async (context) => {
    const store = await context.open();
    const writer = await context.open();
    // More keys than any backend lists in one page, so the listing spans several reads the writes can fall between.
    const keys = 1200;
    for (let start = 0; start < keys; start += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, offset) => store.put(`race.${start + offset}`, bytes(`initial-${start + offset}`))),
      );
    }
    const watch = new WatchReader(store, { prefixes: ['race', 'sentinel'] });
    // Not awaited first: the writes start together with the watch, while it reads the head and lists.
    const first = watch.next();
    const writes = (async () => {
      for (let index = 0; index < keys; index += 7) {
        await writer.put(`race.${index}`, bytes(`changed-${index}`));
        await writer.delete(`race.${index + 1}`);
        await writer.put(`race.new.${index}`, bytes(`new-${index}`));
      }
      await writer.put('sentinel', bytes('end'));
    })();
    // Awaited below; if the check fails first, the handles close under the writer and its failure is moot.
    writes.catch(() => undefined);
    await first;
    await watch.until(isPutOf('sentinel'));
    await writes;
    const view = applyEvents(watch.events);
    view.delete('sentinel');
    expect(sortedEntries(view)).toEqual(sortedEntries(await readState(store, 'race')));
    expect(watch.events.filter((event) => event.type === 'synced').length).toBe(1);
    expectCursorOrder(store, watch.events);
    await watch.stop();
  }),
  check('watch', 'events arrive in cursor order, each key’s versions in write order, with no duplicates', async (context) => {
    const clients = await Promise.all([context.open(), context.open(), context.open()]);
    const store = clients[0];
    const watch = new WatchReader(store);
    await watch.untilSynced();
    const written = new Map<string, Version[]>();
    await Promise.all(
      clients.map(async (client, clientIndex) => {
        for (let step = 0; step < 40; step++) {
          const key = `c${clientIndex}.k${step % 4}`;
          const version = step % 9 === 8 ? await client.delete(key) : await client.put(key, bytes(`${clientIndex}-${step}`));
          written.set(key, [...(written.get(key) ?? []), version]);
        }
      }),
    );
    await store.put('done', bytes('x'));
    await watch.until(isPutOf('done'));
    const events = changes(watch.events).filter((event) => event.key !== 'done');
    expectCursorOrder(store, watch.events);
    expect(new Set(events.map((event) => event.cursor)).size).toBe(events.length);
    for (const [key, versions] of written) {
      const delivered = events.filter((event) => event.key === key).map((event) => ('version' in event ? event.version : undefined));
      // Every delivered version is one that was written, in write order, ending with the latest.
      let position = -1;
      for (const version of delivered) {
        const found = versions.indexOf(version as Version, position + 1);
        expect(found, `${key}: version ${version} out of order or unknown; written ${versions.join(',')}`).toBeGreaterThan(position);
        position = found;
      }
      expect(delivered.at(-1), key).toBe(versions.at(-1));
    }
    await watch.stop();
  }),
  check('watch', 'a watch resumed from a cursor delivers every later change, nothing earlier, no duplicate', async (context) => {
    const store = await context.open();
    const writer = await context.open();
    const watch = new WatchReader(store);
    await watch.untilSynced();
    for (let step = 0; step < 60; step++) {
      const key = `r.${step % 7}`;
      if (step % 5 === 4) await writer.delete(key);
      else await writer.put(key, bytes(`s${step}`));
    }
    await writer.put('r.last', bytes('x'));
    await watch.until(isPutOf('r.last'));
    const original = changes(watch.events);
    await watch.stop();
    // Backends with bounded history may coalesce a key's intermediate versions, so positions are relative.
    const count = original.length;
    const resumePoints = [...new Set([0, 1, Math.floor(count / 3), Math.floor(count / 2), count - 2, count - 1])].filter(
      (index) => index >= 0,
    );
    for (const resumeAt of resumePoints) {
      const from = original[resumeAt]?.cursor as WatchCursor;
      const later = original.slice(resumeAt + 1);
      const resumed = new WatchReader(store, { from });
      const replay = await resumed.untilSynced();
      const replayed = changes(replay);
      for (const event of replayed) {
        expect(store.compareCursors(event.cursor, from), `replayed event at or before the resume cursor ${from}`).toBeGreaterThan(0);
      }
      expect(new Set(replayed.map((event) => event.cursor)).size).toBe(replayed.length);
      expectCursorOrder(store, replay);
      // At least the latest change of every key that changed after the cursor, with the same outcome.
      const latestOriginal = new Map(later.map((event) => [event.key, event]));
      const latestReplayed = new Map(replayed.map((event) => [event.key, event]));
      for (const [key, event] of latestOriginal) {
        const replayedEvent = latestReplayed.get(key);
        expect(replayedEvent?.type, `key ${key} after cursor ${from}`).toBe(event.type);
        expect(replayedEvent?.cursor, `key ${key} after cursor ${from}`).toBe(event.cursor);
      }
      expect([...latestReplayed.keys()].every((key) => latestOriginal.has(key))).toBe(true);
      await resumed.stop();
    }
  }),
  check('watch', 'a watch resumed from the head delivers synced, then only what changes afterwards', async (context) => {
    const store = await context.open();
    await store.put('a', bytes('1'));
    const first = new WatchReader(store);
    const [, synced] = await first.untilSynced();
    await first.stop();
    const resumed = new WatchReader(store, { from: synced?.cursor as WatchCursor });
    const replay = await resumed.untilSynced();
    expect(replay.map((event) => event.type)).toEqual(['synced']);
    await store.put('b', bytes('2'));
    const [next] = await resumed.until(() => true);
    expect(next?.type === 'put' ? next.key : undefined).toBe('b');
    await resumed.stop();
  }),
  check('watch', 'watches resumed while another client writes keep cursor order through synced', async (context) => {
    const store = await context.open();
    const writer = await context.open();
    await store.put('w.0', bytes('0'));
    const first = new WatchReader(store, { prefixes: ['w'] });
    const [, synced] = await first.untilSynced();
    await first.stop();
    let stop = false;
    const writing = (async () => {
      for (let index = 1; !stop; index++) await writer.put(`w.${index % 20}`, bytes(String(index)));
    })();
    try {
      // Each watch starts while writes land, so its first read can run past the head it saw at the start.
      for (let round = 0; round < 5; round++) {
        const resumed = new WatchReader(store, { from: synced?.cursor as WatchCursor });
        await resumed.untilSynced();
        await resumed.until(() => true);
        expectCursorOrder(store, resumed.events);
        await resumed.stop();
      }
    } finally {
      stop = true;
      await writing;
    }
  }),
  check(
    'watch',
    'a cursor whose history is gone fails with CursorExpired, never a silent gap',
    async (context) => {
      const store = await context.open();
      await store.put('a', bytes('1'));
      const watch = new WatchReader(store);
      const [first] = await watch.untilSynced();
      await watch.stop();
      for (let index = 0; index < 20; index++) await store.put(`b.${index}`, bytes(String(index)));
      await store.delete('a');
      await context.harness.forgetHistory?.(context.bucket, store);
      const error = await expectKvError(async () => {
        const resumed = new WatchReader(store, { from: first?.cursor as WatchCursor });
        try {
          await resumed.untilSynced();
        } finally {
          await resumed.stop();
        }
      }, KvErrorCode.CursorExpired);
      expect(error.retryable).toBe(false);
      // A fresh state-sync still works and shows the current state.
      const relist = new WatchReader(store);
      expect(applyEvents(await relist.untilSynced()).size).toBe(20);
      await relist.stop();
    },
    ['forgetHistory'],
  ),
  check(
    'watch',
    'a server that forgets acknowledged writes (an older copy of the bucket put back) fails the watches that saw them with CursorExpired, even after newer writes took their place; a compare-and-swap naming a forgotten version is refused; watches from before the loss go on',
    async (context) => {
      const store = await context.open();
      await store.put('a', bytes('1'));
      const watch = new WatchReader(store);
      await watch.untilSynced();
      const beforeLoss = (watch.events.at(-1) as WatchEvent).cursor;
      const putBack = await (context.harness.rewind as NonNullable<typeof context.harness.rewind>)(context.bucket);
      expect(text((await store.get('a'))?.value ?? new Uint8Array())).toBe('1');
      const lostVersion = await store.put('b', bytes('lost'));
      const lost = (await watch.until(isPutOf('b'))).at(-1) as WatchEvent;
      await putBack();
      // The server takes writes again: the next one, from another handle, goes where the forgotten write was (a
      // server that numbers writes in sequence hands the forgotten number out again), and its head moves past the
      // forgotten position.
      const other = await context.open();
      await other.put('b', bytes('again'));
      await expectKvError(() => store.update('b', bytes('over a forgotten write'), lostVersion), KvErrorCode.RevisionMismatch);
      await expectKvError(() => store.deleteWithVersion('b', lostVersion), KvErrorCode.RevisionMismatch);
      await store.put('c', bytes('3'));
      await store.put('d', bytes('4'));
      const running = await expectKvError(async () => {
        for (;;) if ((await watch.next()) === undefined) return;
      }, KvErrorCode.CursorExpired);
      expect(running.retryable).toBe(false);
      await expectKvError(async () => {
        const resumed = new WatchReader(store, { from: lost.cursor });
        try {
          await resumed.until(isPutOf('d'));
        } finally {
          await resumed.stop();
        }
      }, KvErrorCode.CursorExpired);
      const resumed = new WatchReader(store, { from: beforeLoss });
      const seen = changes(await resumed.until(isPutOf('d'))).map((event) => event.key);
      expect(seen).toEqual(['b', 'c', 'd']);
      await resumed.stop();
      expect(text((await store.get('b'))?.value ?? new Uint8Array())).toBe('again');
    },
    ['rewind'],
  ),
  check('watch', 'several prefixes make one stream in one cursor order, not one stream per prefix', async (context) => {
    const store = await context.open();
    const watch = new WatchReader(store, { prefixes: ['x', 'z.y'] });
    await watch.untilSynced();
    const written: string[] = [];
    const latest = new Map<string, string>();
    for (let step = 0; step < 30; step++) {
      const key = ['x.1', 'y.1', 'z.y.1', 'z.yy', 'x.2', 'z.y', 'xx', 'z.y.deep.2'][step % 8] as string;
      await store.put(key, bytes(String(step)));
      if (['x.1', 'z.y.1', 'x.2', 'z.y', 'z.y.deep.2'].includes(key)) {
        written.push(`${key}=${step}`);
        latest.set(key, `${key}=${step}`);
      }
    }
    await store.put('x.end', bytes('end'));
    await watch.until(isPutOf('x.end'));
    const seen = changes(watch.events)
      .filter((event) => event.key !== 'x.end')
      .map((event) => `${event.key}=${event.type === 'put' ? new TextDecoder().decode(event.value) : event.type}`);
    // One stream in write order across both prefixes; a backend may coalesce a key's older versions, never reorder.
    let position = -1;
    for (const item of seen) {
      const found = written.indexOf(item, position + 1);
      expect(found, `${item} is unexpected or out of order in [${seen.join(', ')}]`).toBeGreaterThan(position);
      position = found;
    }
    for (const last of latest.values()) expect(seen).toContain(last);
    expectCursorOrder(store, watch.events);
    await watch.stop();
  }),
  check(
    'watch',
    'breaking out of a watch releases its server-side resources',
    async (context) => {
      const store = await context.open();
      const count = () => context.harness.watchResources?.(context.bucket) ?? Promise.resolve(0);
      const before = await count();
      const watches = [
        new WatchReader(store),
        new WatchReader(store, { prefixes: ['a', 'b'] }),
        new WatchReader(store, { prefixes: ['c'] }),
      ];
      for (const watch of watches) await watch.untilSynced();
      expect(await count()).toBeGreaterThan(before);
      for (const watch of watches) await watch.stop();
      await eventually(async () => (await count()) === before, 'watch resources to return to their starting count');
    },
    ['watchResources'],
  ),
  check('watch', 'aborting the signal ends the iteration normally, even while it waits', async (context) => {
    const store = await context.open();
    const controller = new AbortController();
    const count = () => context.harness.watchResources?.(context.bucket) ?? Promise.resolve(0);
    const before = await count();
    const iterator = store.watch({ signal: controller.signal })[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.type).toBe('synced');
    const pending = iterator.next();
    controller.abort();
    const result = await Promise.race([
      pending,
      new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), context.harness.watchDeadlineMs ?? 20_000)),
    ]);
    expect(result === 'hung' ? 'hung' : result.done).toBe(true);
    await eventually(async () => (await count()) === before, 'watch resources to be released after abort');
  }),
  check('watch', 'closing the handle ends its running watches with Closed', async (context) => {
    const store = await context.open();
    expect(await endingOnClose(context, store, {})).toBe('closed');
  }),
  check(
    'watch',
    'a watch given its own signal still ends with Closed when its handle closes, and releases its server resources',
    async (context) => {
      const store = await context.open();
      const count = () => context.harness.watchResources?.(context.bucket) ?? Promise.resolve(0);
      const before = await count();
      const controller = new AbortController();
      expect(await endingOnClose(context, store, { signal: controller.signal })).toBe('closed');
      expect(controller.signal.aborted, "closing the handle must not abort the caller's own signal").toBe(false);
      await eventually(async () => (await count()) <= before, 'watch resources to be released after close');
    },
  ),
];

/**
 * Starts a watch with `options`, reads up to its `synced`, closes the handle
 * while the watch waits, and says how the watch ended: `closed`, `ended
 * without error`, `wrong error ...`, or `hung`.
 */
async function endingOnClose(context: CheckContext, store: KvStore, options: WatchOptions): Promise<string> {
  const iterator = store.watch(options)[Symbol.asyncIterator]();
  expect((await iterator.next()).value?.type).toBe('synced');
  const pending = iterator.next().then(
    () => 'ended without error',
    (error: unknown) => (KvError.is(error, KvErrorCode.Closed) ? 'closed' : `wrong error ${String(error)}`),
  );
  await store.close();
  return Promise.race([
    pending,
    new Promise<string>((resolve) => setTimeout(() => resolve('hung'), context.harness.watchDeadlineMs ?? 20_000)),
  ]);
}
