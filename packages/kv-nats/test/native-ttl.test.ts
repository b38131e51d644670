// Per-key TTL on the server lines that have it natively (2.11+: `allow_msg_ttl`,
// `Nats-TTL` and limit markers), against the current line, and the emulation
// that stays on 2.9 and on buckets without markers. Every claim about native
// TTLs in docs/semantics.md points here.
import { jetstream, jetstreamManager, type StoredMsg } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { headers as makeHeaders, type NatsConnection } from '@nats-io/transport-node';
import { KvError, KvErrorCode, type WatchCursor } from '@weft/kv';
import { markerTtlMs, metaStreamName, openNatsKv, parseTtlMs } from '@weft/kv-nats';
import { WatchReader } from '@weft/kv-testkit';
import { type NatsServer, natsUnavailable } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsMissing, natsServer } from './helpers.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) => new TextDecoder().decode(value);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The last message the server holds for a key of a bucket, read raw. */
async function rawLast(raw: NatsConnection, bucket: string, key: string): Promise<StoredMsg | null> {
  return (await jetstreamManager(raw)).streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${key}` });
}

/** Subjects of weft's TTL index in the companion stream (none when the stream does not exist). */
async function ttlIndexSubjects(raw: NatsConnection, bucket: string): Promise<string[]> {
  const manager = await jetstreamManager(raw);
  try {
    const info = await manager.streams.info(metaStreamName(bucket), { subjects_filter: `$WEFT.${bucket}.ttl.>` });
    return Object.keys(info.state.subjects ?? {});
  } catch {
    return [];
  }
}

const currentMissing = natsUnavailable('current');

describe('parseTtlMs reads Nats-TTL as the server does', () => {
  it('bare seconds, Go durations and never', () => {
    expect(parseTtlMs('5')).toBe(5000);
    expect(parseTtlMs('1s')).toBe(1000);
    expect(parseTtlMs('1500ms')).toBe(1500);
    expect(parseTtlMs('1h30m')).toBe(5_400_000);
    expect(parseTtlMs('2.5s')).toBe(2500);
    expect(parseTtlMs('never')).toBe(0);
    for (const hostile of ['', '-1s', '1d', '1s1', 's', '9'.repeat(40), '1e9s', ' 1s']) expect(parseTtlMs(hostile)).toBe(0);
  });
});

describe.skipIf(currentMissing !== undefined)(
  `native TTL on the current nats-server line${currentMissing ? ` (${currentMissing})` : ''}`,
  () => {
    let server: NatsServer;
    let raw: NatsConnection;
    beforeAll(async () => {
      ({ server, raw } = await natsServer('current'));
    });
    afterAll(async () => {
      await raw.close();
      await server.stop();
    });

    it('buckets weft creates allow per-message TTL with long-lived limit markers, read back from the stored config', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'native-config', create: true });
      try {
        expect(store.ttlMode).toBe('native');
        expect(store.capabilities.ttl).toBe(true);
        const config = (await (await jetstreamManager(raw)).streams.info('KV_native-config')).config;
        expect(config.allow_msg_ttl).toBe(true);
        expect(config.subject_delete_marker_ttl).toBe(markerTtlMs * 1_000_000);
      } finally {
        await store.close();
      }
    });

    it('buckets keeping several versions per key stay emulated (the server would raise every TTL to the marker TTL), and say so', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'native-history', create: { history: 5 }, sweepIntervalMs: 50 });
      try {
        expect(store.ttlMode).toBe('emulated');
        const config = (await (await jetstreamManager(raw)).streams.info('KV_native-history')).config;
        expect(config.allow_msg_ttl).toBe(false);
        await expect(store.enableNativeTtl()).rejects.toMatchObject({ code: 'Unsupported', message: expect.stringContaining('history 1') });
        const watch = new WatchReader(store);
        await watch.untilSynced();
        await store.putWithTtl('k', bytes('v'), 100);
        expect((await rawLast(raw, 'native-history', 'k'))?.header.has('Nats-TTL')).toBe(false);
        await watch.until((event) => event.type === 'expire');
        await watch.stop();
      } finally {
        await store.close();
      }
    });

    it('putWithTtl hands the server its TTL (Nats-TTL, whole seconds), writes no index entry, and the server expires it with a marker a watch reports as expire', async () => {
      // No sweeper anywhere: only the server can produce the expiry.
      const store = await openNatsKv({ servers: server.url, bucket: 'native-expire', create: true, sweepIntervalMs: 0 });
      try {
        const watch = new WatchReader(store);
        await watch.untilSynced();
        const version = await store.putWithTtl('session.1', bytes('token'), 300);
        const stored = await rawLast(raw, 'native-expire', 'session.1');
        expect(stored?.header.get('Nats-TTL')).toBe('1s');
        expect(await ttlIndexSubjects(raw, 'native-expire')).toEqual([]);
        const events = await watch.until((event) => event.type === 'expire', 10_000);
        expect(events.map((event) => event.type)).toEqual(['put', 'expire']);
        await watch.stop();
        const marker = await rawLast(raw, 'native-expire', 'session.1');
        expect(marker?.header.get('Nats-Marker-Reason')).toBe('MaxAge');
        expect(await store.get('session.1')).toBeUndefined();
        expect(await store.entry('session.1')).toBeUndefined();
        await expect(store.update('session.1', bytes('x'), version)).rejects.toMatchObject({ code: 'RevisionMismatch' });
        await store.create('session.1', bytes('again'));
        expect(text((await store.get('session.1'))?.value)).toBe('again');
      } finally {
        await store.close();
      }
    });

    it('between the expiry and the server removing the value, reads, listings and compare-and-swap already treat it as absent', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'native-between', create: true, sweepIntervalMs: 0 });
      try {
        const version = await store.putWithTtl('k', bytes('short'), 50);
        await store.putWithTtl('j', bytes('short'), 50);
        await sleep(150);
        // The server still holds both values (its TTL is a whole second): this is the window.
        expect((await rawLast(raw, 'native-between', 'k'))?.header.has('Nats-Marker-Reason')).toBe(false);
        expect(text((await rawLast(raw, 'native-between', 'k'))?.data)).toBe('short');
        expect(await store.get('k')).toBeUndefined();
        expect(await store.entry('k')).toBeUndefined();
        const keys: string[] = [];
        for await (const key of store.keys()) keys.push(key);
        expect(keys).toEqual([]);
        await expect(store.update('k', bytes('x'), version)).rejects.toMatchObject({ code: 'RevisionMismatch' });
        await expect(store.deleteWithVersion('k', version)).rejects.toMatchObject({ code: 'RevisionMismatch' });
        await store.create('j', bytes('recreated'));
        const watch = new WatchReader(store);
        const synced = await watch.untilSynced();
        expect(synced.map((event) => (event.type === 'synced' ? 'synced' : `${event.type}:${event.key}`))).toEqual(['put:j', 'synced']);
        await watch.stop();
        // The recreated key outlives the server's removal of the old value.
        await sleep(1500);
        expect(text((await store.get('j'))?.value)).toBe('recreated');
      } finally {
        await store.close();
      }
    });

    it('interoperates with a plain @nats-io/kv client, TTLs included, both ways', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'native-interop', create: true, sweepIntervalMs: 0 });
      const plain = await new Kvm(raw).open('native-interop');
      try {
        const watch = new WatchReader(store);
        await watch.untilSynced();
        // A TTL written by the plain client (create with a TTL, as nats.js offers it) reads and expires in weft.
        await plain.create('from.plain', bytes('plain ttl'), '1s');
        const read = await store.get('from.plain');
        expect(text(read?.value)).toBe('plain ttl');
        expect(read?.version).toMatch(/^\d+-t[0-9a-z]+$/);
        // A TTL written by weft reads in the plain client, and its expiry is the marker nats.js calls PURGE.
        await store.putWithTtl('from.weft', bytes('weft ttl'), 1000);
        expect((await plain.get('from.weft'))?.string()).toBe('weft ttl');
        const events = await watch.until(
          (event) => event.type === 'expire' && watch.events.filter((seen) => seen.type === 'expire').length === 2,
          10_000,
        );
        expect(
          events
            .filter((event) => event.type === 'expire')
            .map((event) => event.key)
            .sort(),
        ).toEqual(['from.plain', 'from.weft']);
        await watch.stop();
        expect((await plain.get('from.weft'))?.operation).toBe('PURGE');
        expect(await store.get('from.plain')).toBeUndefined();
      } finally {
        await store.close();
      }
    });

    it('a bucket made with a bucket-wide TTL and markers (nats kv add --ttl --marker-ttl) reads, and its age-outs are expire events', async () => {
      await new Kvm(raw).create('aged', { ttl: 1000, markerTTL: 60_000 });
      const plain = await new Kvm(raw).open('aged');
      const store = await openNatsKv({ servers: server.url, bucket: 'aged', sweepIntervalMs: 0 });
      try {
        expect(store.ttlMode).toBe('native');
        const watch = new WatchReader(store);
        await watch.untilSynced();
        await plain.put('k', bytes('ages out'));
        expect(text((await store.get('k'))?.value)).toBe('ages out');
        const events = await watch.until((event) => event.type === 'expire', 10_000);
        expect(events.map((event) => `${event.type}:${'key' in event ? event.key : ''}`)).toEqual(['put:k', 'expire:k']);
        await watch.stop();
        expect(await store.get('k')).toBeUndefined();
        await store.create('k', bytes('again'));
      } finally {
        await store.close();
      }
    });

    it('on a bucket made with a short marker TTL, a watch resumed from before a marker the server removed fails with CursorExpired', async () => {
      // As `nats kv add --marker-ttl 1s` makes it: markers vanish a second after the expiry they report.
      await new Kvm(raw).create('short-markers', { markerTTL: 1000 });
      const store = await openNatsKv({ servers: server.url, bucket: 'short-markers', sweepIntervalMs: 0 });
      try {
        expect(store.ttlMode).toBe('native');
        const watch = new WatchReader(store);
        const [synced] = await watch.untilSynced();
        const before = (synced as { cursor: WatchCursor }).cursor;
        await store.putWithTtl('gone', bytes('v'), 1000);
        await watch.until((event) => event.type === 'expire', 10_000);
        await watch.stop();
        // The put and then its marker are removed by the server; nothing of the expiry is left to replay.
        const manager = await jetstreamManager(raw);
        const deadline = Date.now() + 15_000;
        while ((await manager.streams.info('KV_short-markers')).state.messages > 0 && Date.now() < deadline) await sleep(200);
        expect((await manager.streams.info('KV_short-markers')).state.messages).toBe(0);
        await sleep(1200);
        const resumed = store.watch({ from: before })[Symbol.asyncIterator]();
        const outcome = await resumed.next().then(
          () => 'resumed',
          (error: unknown) => (KvError.is(error, KvErrorCode.CursorExpired) ? 'expired' : String(error)),
        );
        expect(outcome).toBe('expired');
      } finally {
        await store.close();
      }
    });

    it('a bucket made without markers keeps the emulation; enableNativeTtl moves it, and TTLs written before still expire', async () => {
      await new Kvm(raw).create('migrated');
      const before = await openNatsKv({ servers: server.url, bucket: 'migrated', sweepIntervalMs: 100 });
      try {
        expect(before.ttlMode).toBe('emulated');
        await before.putWithTtl('old', bytes('emulated'), 1500);
        expect(await ttlIndexSubjects(raw, 'migrated')).toEqual(['$WEFT.migrated.ttl.old']);
        await before.enableNativeTtl();
        await before.enableNativeTtl();
        const after = await openNatsKv({ servers: server.url, bucket: 'migrated', sweepIntervalMs: 100 });
        try {
          expect(after.ttlMode).toBe('native');
          const watch = new WatchReader(after);
          await watch.untilSynced();
          await after.putWithTtl('new', bytes('native'), 1000);
          expect((await rawLast(raw, 'migrated', 'new'))?.header.get('Nats-TTL')).toBe('1s');
          await watch.until(
            (event) => event.type === 'expire' && watch.events.filter((seen) => seen.type === 'expire').length === 2,
            10_000,
          );
          expect(
            watch.events
              .filter((event) => event.type === 'expire')
              .map((event) => event.key)
              .sort(),
          ).toEqual(['new', 'old']);
          await watch.stop();
          expect(await after.get('old')).toBeUndefined();
          expect(await after.get('new')).toBeUndefined();
        } finally {
          await after.close();
        }
      } finally {
        await before.close();
      }
    });

    it('the server marker is a tombstone to compaction: removed with a horizon, and a cursor from before it expires', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'native-compact', create: true, sweepIntervalMs: 0 });
      try {
        const watch = new WatchReader(store);
        const [synced] = await watch.untilSynced();
        const before = (synced as { cursor: WatchCursor }).cursor;
        await store.putWithTtl('k', bytes('v'), 1000);
        await watch.until((event) => event.type === 'expire', 10_000);
        await watch.stop();
        const { removedTombstones } = await store.compact({ olderThanMs: 0 });
        expect(removedTombstones).toBe(1);
        expect(await rawLast(raw, 'native-compact', 'k').catch(() => null)).toBeNull();
        const resumed = store.watch({ from: before })[Symbol.asyncIterator]();
        await expect(resumed.next()).rejects.toMatchObject({ code: 'CursorExpired' });
      } finally {
        await store.close();
      }
    });
  },
);

describe.skipIf(natsMissing !== undefined)('TTL on the system nats-server line (2.9): the emulation', () => {
  let server: NatsServer;
  let raw: NatsConnection;
  beforeAll(async () => {
    ({ server, raw } = await natsServer('system'));
  });
  afterAll(async () => {
    await raw.close();
    await server.stop();
  });

  it('buckets are emulated, Nats-TTL is never sent, and enableNativeTtl says which server it needs', async () => {
    const store = await openNatsKv({ servers: server.url, bucket: 'old-line', create: true, sweepIntervalMs: 0 });
    try {
      expect(store.ttlMode).toBe('emulated');
      await store.putWithTtl('k', bytes('v'), 60_000);
      expect((await rawLast(raw, 'old-line', 'k'))?.header.has('Nats-TTL')).toBe(false);
      expect(await ttlIndexSubjects(raw, 'old-line')).toEqual(['$WEFT.old-line.ttl.k']);
      await expect(store.enableNativeTtl()).rejects.toMatchObject({ code: 'Unsupported', message: expect.stringContaining('2.11') });
    } finally {
      await store.close();
    }
  });

  it('a put carrying a foreign Nats-TTL header (ignored by 2.9) still reads as expired once it passed', async () => {
    const store = await openNatsKv({ servers: server.url, bucket: 'old-foreign', create: true, sweepIntervalMs: 0 });
    try {
      const headers = makeHeaders();
      headers.set('Nats-TTL', '1s');
      await jetstream(raw).publish('$KV.old-foreign.k', bytes('v'), { headers });
      expect(text((await store.get('k'))?.value)).toBe('v');
      await sleep(1300);
      expect(await store.get('k')).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
