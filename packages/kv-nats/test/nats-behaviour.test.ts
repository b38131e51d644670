import { type AddressInfo, createServer } from 'node:net';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { KvError, type KvStore, type WatchCursor, type WatchEvent } from '@weft/kv';
import { conditionalWritesUnsupported, openNatsKv, parseServerVersion } from '@weft/kv-nats';
import { WatchReader } from '@weft/kv-testkit';
import { freePort, type NatsLine, type NatsServer, natsUnavailable, startNatsCluster } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsMissing, natsServer } from './helpers.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const decode = (value: Uint8Array) => new TextDecoder().decode(value);

function summary(events: readonly WatchEvent[]): string[] {
  return events.map((event) =>
    event.type === 'synced' ? 'synced' : `${event.type}:${event.key}${event.type === 'put' ? `=${decode(event.value)}` : ''}`,
  );
}

/** Retries an operation through a failover or restart, as an application would (writes only ever as a put). */
async function retrying<T>(operation: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await operation();
    } catch (error) {
      const transient = KvError.is(error) && (error.retryable || error.code === 'Indeterminate' || error.code === 'OperationFailed');
      if (!transient || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

const lines = ['system', 'current'] satisfies NatsLine[];

for (const line of lines)
  describe.skipIf(natsUnavailable(line) !== undefined)(`nats backend behaviour on a real server, ${line} line`, () => {
    let server: NatsServer;
    let raw: NatsConnection;
    beforeAll(async () => {
      ({ server, raw } = await natsServer(line));
    });
    afterAll(async () => {
      await raw.close();
      await server.stop();
    });

    it('a bucket weft creates is configured as `nats kv add` makes one (ADR-8), and an existing bucket is used as it is', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'parity', create: { history: 3, maxBytes: 1 << 20 } });
      const manager = await jetstreamManager(raw);
      const config = (await manager.streams.info('KV_parity')).config;
      expect({
        subjects: config.subjects,
        retention: config.retention,
        max_msgs_per_subject: config.max_msgs_per_subject,
        max_bytes: config.max_bytes,
        discard: config.discard,
        allow_rollup_hdrs: config.allow_rollup_hdrs,
        deny_delete: config.deny_delete,
        deny_purge: config.deny_purge,
        allow_direct: config.allow_direct,
        duplicate_window: config.duplicate_window,
      }).toEqual({
        subjects: ['$KV.parity.>'],
        retention: 'limits',
        max_msgs_per_subject: 3,
        max_bytes: 1 << 20,
        discard: 'new',
        allow_rollup_hdrs: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        duplicate_window: 120_000_000_000,
      });
      // What the contract needs still works on it: deletes, purges, compaction.
      await store.put('a', bytes('1'));
      await store.delete('a');
      await store.put('b', bytes('2'));
      await store.purge('b');
      await store.compact({ olderThanMs: 0 });
      expect(await store.get('a')).toBeUndefined();
      await store.close();
      // A bucket another client made (plain @nats-io/kv, no deny_delete) is opened as it is, not changed.
      await new Kvm(raw).create('theirs', { history: 2 });
      const before = (await manager.streams.info('KV_theirs')).config;
      const theirs = await openNatsKv({ servers: server.url, bucket: 'theirs', create: { history: 9 } });
      await theirs.put('k', bytes('v'));
      expect((await manager.streams.info('KV_theirs')).config.max_msgs_per_subject).toBe(before.max_msgs_per_subject);
      await theirs.destroy();
      const parity = await openNatsKv({ servers: server.url, bucket: 'parity' });
      await parity.destroy();
    });

    it('destroy removes the bucket and its companion stream from the server and leaves other buckets alone', async () => {
      const doomed = await openNatsKv({ servers: server.url, bucket: 'doomed', create: { history: 5 } });
      const kept = await openNatsKv({ servers: server.url, bucket: 'kept', create: true });
      await doomed.put('a', bytes('1'));
      await doomed.putWithTtl('b', bytes('2'), 60_000);
      await kept.put('a', bytes('kept'));
      const manager = await jetstreamManager(raw);
      const streams = async () => (await manager.streams.names().next()).filter((name) => name.includes('doomed'));
      expect((await streams()).length).toBeGreaterThan(0);
      await doomed.destroy();
      expect(doomed.closed).toBe(true);
      expect(await streams()).toEqual([]);
      expect(decode((await kept.get('a'))?.value ?? bytes(''))).toBe('kept');
      // Opened again without create, the bucket is not there.
      const reopened = await openNatsKv({ servers: server.url, bucket: 'doomed' }).catch((error: unknown) => error);
      expect(KvError.is(reopened, 'OperationFailed'), String(reopened)).toBe(true);
      await kept.close();
    });

    it("a companion stream left by another tool's delete (nats kv del) is removed when the bucket is made again", async () => {
      const first = await openNatsKv({ servers: server.url, bucket: 'recycled', create: { history: 5 } });
      await first.put('a', bytes('1'));
      await first.delete('a');
      // Compaction records a horizon in the companion stream.
      expect((await first.compact({ olderThanMs: 0 })).horizon).toBeGreaterThan(0);
      await first.close();
      const manager = await jetstreamManager(raw);
      await manager.streams.delete('KV_recycled');
      const companion = (await manager.streams.info('WEFT_recycled')).created;
      const second = await openNatsKv({ servers: server.url, bucket: 'recycled', create: { history: 5 } });
      try {
        const after = await manager.streams.info('WEFT_recycled').then(
          (info) => info.created,
          () => undefined,
        );
        expect(after === undefined || after !== companion, 'the old companion stream is gone').toBe(true);
        // The new bucket's own history: no horizon of the old one, so a cursor from its start resumes.
        expect(await second.horizon()).toBe(0);
        await second.put('b', bytes('2'));
      } finally {
        await second.close();
      }
    });

    it('interoperates both ways with a plain @nats-io/kv client', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'interop', create: { history: 5 } });
      const plain = await new Kvm(raw).open('interop');
      try {
        const version = await store.put('from.weft', bytes('written by weft'));
        const seen = await plain.get('from.weft');
        expect(seen && decode(seen.value)).toBe('written by weft');
        // weft's version is the revision, then the id of the write it names.
        expect(version.split('-')[0]).toBe(String(seen?.revision));
        expect(version).toMatch(/^[0-9]+-w[0-9a-z]+$/);

        const revision = await plain.put('from.plain', bytes('written by nats.js'));
        const read = await store.get('from.plain');
        expect(read && decode(read.value)).toBe('written by nats.js');
        expect(read?.version).toBe(String(revision));
        await store.update('from.plain', bytes('updated by weft'), read?.version as never);
        expect(decode((await plain.get('from.plain'))?.value ?? bytes(''))).toBe('updated by weft');

        await plain.delete('from.weft');
        expect(await store.get('from.weft')).toBeUndefined();
        expect((await store.entry('from.weft'))?.op).toBe('delete');
        await store.purge('from.plain');
        expect((await plain.get('from.plain'))?.operation).toBe('PURGE');
        const keys: string[] = [];
        for await (const key of await plain.keys()) keys.push(key);
        expect(keys).toEqual([]);
      } finally {
        await store.close();
      }
    });

    it('detects the server version and reports what it filters natively', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'caps', create: true });
      try {
        const version = parseServerVersion(store.serverVersion);
        expect(version.major).toBe(2);
        const expected = version.minor >= 10 ? 'native' : 'emulated';
        expect(store.capabilities.multiPrefixWatch).toBe(expected);
        expect(store.capabilities.ttl).toBe(true);
      } finally {
        await store.close();
      }
    });

    it('TTLs are ordinary KV messages: plain clients see the value, then the expire as a delete (2.9) or the server marker nats.js calls a purge (2.11+)', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'ttl-interop', create: true, sweepIntervalMs: 50 });
      try {
        const plain = await new Kvm(raw).open('ttl-interop');
        const version = await store.putWithTtl('session.1', bytes('token'), 300);
        const seen = await plain.get('session.1');
        expect(seen?.string()).toBe('token');
        expect(String(seen?.revision)).toBe(version.split('-')[0]);
        const watch = new WatchReader(store);
        await watch.untilSynced();
        const [expiredEvent] = await watch.until((event) => event.type === 'expire');
        expect(expiredEvent).toMatchObject({ type: 'expire', key: 'session.1' });
        await watch.stop();
        expect((await plain.get('session.1'))?.operation).toBe(store.ttlMode === 'native' ? 'PURGE' : 'DEL');
        expect(await store.entry('session.1')).toBeUndefined();
        await expect(store.update('session.1', bytes('x'), version)).rejects.toMatchObject({ code: 'RevisionMismatch' });
        await store.create('session.1', bytes('again'));
      } finally {
        await store.close();
      }
    });

    it('emulated TTLs: a plain put clears the TTL, and the sweeper drops the stale index entry and leaves the value', async () => {
      // Made without limit markers (as plain clients make buckets), so the emulation runs on every line.
      await new Kvm(raw).create('ttl-cleared');
      const store = await openNatsKv({ servers: server.url, bucket: 'ttl-cleared', sweepIntervalMs: 0 });
      expect(store.ttlMode).toBe('emulated');
      try {
        await store.putWithTtl('k', bytes('short'), 100);
        await store.put('k', bytes('kept'));
        await new Promise((resolve) => setTimeout(resolve, 150));
        expect(await store.sweepExpired()).toBe(0);
        expect(new TextDecoder().decode((await store.get('k'))?.value)).toBe('kept');
        await store.putWithTtl('j', bytes('gone'), 50);
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(await store.get('j')).toBeUndefined();
        expect(await store.sweepExpired()).toBe(1);
        expect(await store.sweepExpired()).toBe(0);
      } finally {
        await store.close();
      }
    });

    it('compaction removes old tombstones, and cursors from before it expire while later ones resume', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'compact', create: true });
      try {
        await store.put('a', bytes('1'));
        await store.put('b', bytes('2'));
        const early = new WatchReader(store);
        const [, , beforeDelete] = await early.untilSynced();
        await early.stop();
        await store.delete('a');
        await store.put('c', bytes('3'));
        const { removedTombstones, horizon } = await store.compact({ olderThanMs: 0 });
        expect(removedTombstones).toBe(1);
        expect(await store.entry('a')).toBeUndefined();
        expect(await store.horizon()).toBe(horizon);
        const stale = await new WatchReader(store, { from: beforeDelete?.cursor as WatchCursor })
          .untilSynced()
          .catch((error: unknown) => error);
        expect(KvError.is(stale, 'CursorExpired'), String(stale)).toBe(true);
        const fresh = new WatchReader(store);
        const listing = await fresh.untilSynced();
        expect(summary(listing)).toEqual(['put:b=2', 'put:c=3', 'synced']);
        await fresh.stop();
        const resumed = new WatchReader(store, { from: listing.at(-1)?.cursor as WatchCursor });
        expect(summary(await resumed.untilSynced())).toEqual(['synced']);
        await resumed.stop();
      } finally {
        await store.close();
      }
    });

    it('expires cursors of a deleted and recreated bucket, and cursors ahead of the stream', async () => {
      const first = await openNatsKv({ servers: server.url, bucket: 'recreated', create: true });
      await first.put('a', bytes('1'));
      const watch = new WatchReader(first);
      const [, synced] = await watch.untilSynced();
      await watch.stop();
      await first.close();
      await (await jetstreamManager(raw)).streams.delete('KV_recreated');
      await new Promise((resolve) => setTimeout(resolve, 5));
      const second = await openNatsKv({ servers: server.url, bucket: 'recreated', create: true });
      try {
        for (let index = 0; index < 3; index++) await second.put(`k${index}`, bytes('x'));
        const error = await new WatchReader(second, { from: synced?.cursor as WatchCursor })
          .untilSynced()
          .catch((caught: unknown) => caught);
        expect(KvError.is(error, 'CursorExpired'), String(error)).toBe(true);
        const [, , , current] = await new WatchReader(second).untilSynced();
        const ahead = String(current?.cursor).replace(/^\d+/, '999') as WatchCursor;
        const aheadError = await new WatchReader(second, { from: ahead }).untilSynced().catch((caught: unknown) => caught);
        expect(KvError.is(aheadError, 'CursorExpired'), String(aheadError)).toBe(true);
      } finally {
        await second.close();
      }
    });

    it('refuses bad options with typed errors and reports an unreachable server as ConnectionFailed', async () => {
      for (const options of [
        { servers: server.url, bucket: 'has.dot' },
        { servers: server.url, bucket: 'b', connection: raw },
        { bucket: 'b' },
        { servers: server.url, bucket: 'b', create: { history: 65 } },
      ]) {
        const error = await openNatsKv(options).catch((caught: unknown) => caught);
        expect(KvError.is(error, 'InvalidArgument'), JSON.stringify(options.bucket)).toBe(true);
      }
      const missing = await openNatsKv({ connection: raw, bucket: 'never-created' }).catch((caught: unknown) => caught);
      expect(KvError.is(missing, 'OperationFailed')).toBe(true);
      expect((missing as KvError).message).toContain('does not exist');
      const port = await freePort();
      const unreachable = await openNatsKv({ servers: `nats://127.0.0.1:${port}`, bucket: 'b', timeoutMs: 500 }).catch(
        (caught: unknown) => caught,
      );
      expect(KvError.is(unreachable, 'ConnectionFailed'), String(unreachable)).toBe(true);
    });

    it('a listing ends at the bucket as it was when it started, even when every step of it is followed by a write', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: 'busy', create: true });
      const writer = await openNatsKv({ connection: raw, bucket: 'busy' });
      try {
        for (let index = 0; index < 600; index++) await store.put(`k.${index}`, bytes('v'));
        const listed: string[] = [];
        let writes = 0;
        for await (const key of store.keys()) {
          listed.push(key);
          await writer.put(`k.${writes++ % 600}`, bytes('changed'));
          if (listed.length > 5000) break;
        }
        expect(listed.length).toBeGreaterThanOrEqual(600);
        expect(listed.length).toBeLessThan(5000);
      } finally {
        await writer.close();
        await store.close();
      }
    });

    it('close() leaves a caller-owned connection open', async () => {
      const store = await openNatsKv({ connection: raw, bucket: 'owned', create: true });
      await store.close();
      expect(raw.isClosed()).toBe(false);
    });
  });

describe.skipIf(natsMissing !== undefined)('nats backend: a failed connect says why', () => {
  it('refused, unknown host, timed out (a server that never answers), or authentication failed', async () => {
    const reason = async (servers: string, timeoutMs = 2000) => {
      const error = await openNatsKv({ servers, bucket: 'b', timeoutMs }).catch((caught: unknown) => caught);
      expect(KvError.is(error, 'ConnectionFailed'), String(error)).toBe(true);
      return (error as KvError).message;
    };
    expect(await reason(`nats://127.0.0.1:${await freePort()}`)).toContain('connection refused');
    expect(await reason('nats://no-such-host.invalid:4222')).toContain('unknown host');
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      expect(await reason(`nats://127.0.0.1:${(silent.address() as AddressInfo).port}`, 300)).toContain('timed out');
    } finally {
      silent.close();
    }
    const { startNatsServer } = await import('@weft/test-servers');
    const guarded = await startNatsServer({ args: ['--user', 'weft', '--pass', 'right-password'] });
    try {
      const url = new URL(guarded.url);
      url.username = 'weft';
      url.password = 'wrong-password';
      const message = await reason(url.href);
      expect(message).toContain('authentication failed');
      expect(message).not.toContain('wrong-password');
    } finally {
      await guarded.stop();
    }
  });
});

describe.skipIf(natsMissing !== undefined)('nats backend across server failures', () => {
  it.for(lines)(
    'on the %s line, a running watch continues after kill -9 and restart, with no gap and no duplicate',
    async (line, context) => {
      const missing = natsUnavailable(line);
      if (missing !== undefined) context.skip(missing);
      const { server, raw } = await natsServer(line);
      const store = await openNatsKv({ servers: server.url, bucket: 'restart', create: true, timeoutMs: 2000 });
      try {
        await store.put('a', bytes('1'));
        const watch = new WatchReader(store);
        await watch.untilSynced();
        await store.put('b', bytes('2'));
        await watch.until((event) => event.type === 'put' && event.key === 'b');
        await raw.close();

        await server.kill();
        await server.restart();
        await retrying(() => store.put('c', bytes('3')));
        await store.delete('a');
        await store.put('d', bytes('4'));
        await watch.until((event) => event.type === 'put' && event.key === 'd', 30_000);
        expect(summary(watch.events)).toEqual(['put:a=1', 'synced', 'put:b=2', 'put:c=3', 'delete:a', 'put:d=4']);
        await watch.stop();
      } finally {
        await store.close();
        await server.stop();
      }
    },
  );

  it.for(['system', 'current'] satisfies NatsLine[])(
    'on a 3-node %s-line cluster with replicas 3, reads, writes and watches continue with one node killed',
    async (line, context) => {
      const missing = natsUnavailable(line);
      if (missing !== undefined) context.skip(missing);
      const cluster = await startNatsCluster({ nodes: 3, line });
      // Creating a replicated stream on a cluster that just formed can take longer than the 2 s the failover steps allow.
      await (await openNatsKv({ servers: [...cluster.urls], bucket: 'replicated', create: { replicas: 3 }, timeoutMs: 20_000 })).close();
      const store: KvStore = await openNatsKv({ servers: [...cluster.urls], bucket: 'replicated', timeoutMs: 2000 });
      try {
        await store.put('before', bytes('1'));
        const watch = new WatchReader(store);
        await watch.untilSynced();
        // Kill the node that leads the bucket's stream, the hardest case.
        const connection = await connect({ servers: [...cluster.urls] });
        const info = await (await jetstreamManager(connection)).streams.info('KV_replicated');
        await connection.close();
        const leader = cluster.nodes.find((node) => node.name === info.cluster?.leader) ?? cluster.nodes[0];
        await leader?.kill();

        await retrying(() => store.put('after', bytes('2')));
        const read = await retrying(() => store.get('after'));
        expect(read && decode(read.value)).toBe('2');
        const current = await retrying(() => store.get('before'));
        // getMany on a replicated stream reads each key from the leader, as get does (a follower's direct get may lag).
        const observer = await connect({ servers: cluster.urls.filter((_url, index) => cluster.nodes[index] !== leader) });
        let directGets = 0;
        observer.subscribe('$JS.API.DIRECT.GET.KV_replicated', { callback: () => void directGets++ });
        await observer.flush();
        const many = await retrying(() => store.getMany(['before', 'after', 'never']));
        await observer.flush();
        await observer.close();
        expect(many.map((entry) => entry && decode(entry.value))).toEqual([current && decode(current.value), '2', undefined]);
        expect(directGets).toBe(0);
        // Compare-and-swap where the server serialises it (see cluster-cas.test.ts), a plain put where it is refused.
        const cas = conditionalWritesUnsupported(parseServerVersion(cluster.nodes[0]?.version ?? '0.0.0'), 3) === undefined;
        await retrying(() =>
          cas ? store.update('before', bytes('updated'), current?.version as never) : store.put('before', bytes('updated')),
        );
        await watch.until((event) => event.type === 'put' && event.key === 'before' && decode(event.value) === 'updated', 30_000);
        const changes = summary(watch.events.slice(2));
        expect(changes).toContain('put:after=2');
        expect(changes.at(-1)).toBe('put:before=updated');
        const changeCursors = watch.events.filter((event) => event.type !== 'synced').map((event) => event.cursor);
        expect(new Set(changeCursors).size).toBe(changeCursors.length);
        await watch.stop();
      } finally {
        await store.close();
        await cluster.stop();
      }
    },
  );
});
