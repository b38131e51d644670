import { createMemoryKvServer, KvError, ManualClock, openMemoryKv, type WatchCursor, type WatchEvent } from '@weft/kv';
import { describe, expect, it } from 'vitest';

const bytes = (text: string) => new TextEncoder().encode(text);

async function collect(iterable: AsyncIterable<WatchEvent>, until: (event: WatchEvent) => boolean): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  for await (const event of iterable) {
    events.push(event);
    if (until(event)) break;
  }
  return events;
}

describe('memory backend specifics', () => {
  it('shares one bucket between handles on one server, and isolates servers and buckets', async () => {
    const server = createMemoryKvServer();
    const a = await openMemoryKv({ server, bucket: 'b1' });
    const b = await openMemoryKv({ server, bucket: 'b1' });
    const other = await openMemoryKv({ server, bucket: 'b2' });
    const elsewhere = await openMemoryKv({ bucket: 'b1' });
    await a.put('k', bytes('v'));
    expect((await b.get('k'))?.version).toBe('1');
    expect(await other.get('k')).toBeUndefined();
    expect(await elsewhere.get('k')).toBeUndefined();
    expect(server.bucketNames().sort()).toEqual(['b1', 'b2']);
  });

  it('coalesces older versions with bounded history without expiring cursors', async () => {
    const kv = await openMemoryKv({ history: 1 });
    const [synced] = await collect(kv.watch(), (event) => event.type === 'synced');
    for (let index = 0; index < 5; index++) await kv.put('k', bytes(String(index)));
    await kv.put('other', bytes('x'));
    const replay = await collect(kv.watch({ from: synced?.cursor as WatchCursor }), (event) => event.type === 'synced');
    expect(replay.map((event) => (event.type === 'put' ? `${event.key}=${new TextDecoder().decode(event.value)}` : event.type))).toEqual([
      'k=4',
      'other=x',
      'synced',
    ]);
  });

  it('moves the horizon when a bounded history drops a key’s latest change', async () => {
    const kv = await openMemoryKv({ maxHistoryEntries: 3 });
    await kv.put('a', bytes('1'));
    const [first] = await collect(kv.watch(), (event) => event.type === 'synced');
    for (const key of ['b', 'c', 'd', 'e']) await kv.put(key, bytes('x'));
    const error = await collect(kv.watch({ from: first?.cursor as WatchCursor }), () => false).catch((caught: unknown) => caught);
    expect(KvError.is(error, 'CursorExpired')).toBe(true);
    const recent = await collect(kv.watch({ from: '3' as WatchCursor }), (event) => event.type === 'synced');
    expect(recent.map((event) => event.type)).toEqual(['put', 'put', 'synced']);
  });

  it('refuses a cursor ahead of the head as not belonging to this bucket', async () => {
    const kv = await openMemoryKv();
    await kv.put('a', bytes('1'));
    const error = await collect(kv.watch({ from: '99' as WatchCursor }), () => false).catch((caught: unknown) => caught);
    expect(KvError.is(error, 'CursorExpired')).toBe(true);
  });

  it('expires on a manual clock exactly at the TTL, emitting one expire event', async () => {
    const clock = new ManualClock(1_000);
    const kv = await openMemoryKv({ clock });
    await kv.putWithTtl('session', bytes('t'), 100);
    const iterator = kv.watch({ prefixes: ['session'] })[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.type).toBe('put');
    expect((await iterator.next()).value?.type).toBe('synced');
    clock.advance(99);
    expect(await kv.get('session')).toBeDefined();
    clock.advance(1);
    expect(await kv.get('session')).toBeUndefined();
    expect((await iterator.next()).value).toMatchObject({ type: 'expire', key: 'session' });
    await iterator.return?.();
  });

  it('refuses invalid bucket names and options with InvalidArgument', async () => {
    for (const options of [{ bucket: 'a.b' }, { bucket: '' }, { history: 0 }, { maxValueBytes: -1 }, { maxHistoryEntries: 0 }]) {
      const error = await openMemoryKv(options).catch((caught: unknown) => caught);
      expect(KvError.is(error, 'InvalidArgument'), JSON.stringify(options)).toBe(true);
    }
  });
});
