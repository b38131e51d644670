import { type AddressInfo, createServer } from 'node:net';
import { KvError, type KvStore } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import { drain } from '@weft/kv-testkit';
import { freePort } from '@weft/test-servers';
import { type Cluster, Redis } from 'ioredis';
import { Cluster as Cluster5 } from 'ioredis5';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bucketKeys,
  bytes,
  cluster,
  decode,
  eventually,
  redisMissing,
  standalone,
  watchAcrossPersistentRestart,
  watchAcrossVolatileRestart,
} from './helpers.js';

describe.skipIf(redisMissing !== undefined)('redis backend behaviour on a real server', () => {
  describe('restarts', () => {
    it('with persistence: after kill -9 and restart, writes resume and a running watch continues with no gap and no duplicate', async () => {
      const { server, raw } = await standalone({ persistence: 'aof' });
      const store = await openRedisKv({ url: server.url, bucket: 'restart' });
      try {
        await watchAcrossPersistentRestart(store, server);
      } finally {
        await store.close();
        raw.disconnect();
        await server.stop();
      }
    });

    it('without persistence: the lost stream surfaces as CursorExpired, for running and resumed watches, never a silent gap', async () => {
      const { server, raw } = await standalone();
      const store = await openRedisKv({ url: server.url, bucket: 'volatile' });
      try {
        await watchAcrossVolatileRestart(store, server);
      } finally {
        await store.close();
        raw.disconnect();
        await server.stop();
      }
    });
  });

  describe('TTL, sweeping and side indexes', () => {
    let server: Awaited<ReturnType<typeof standalone>>['server'];
    let raw: Redis;
    beforeAll(async () => ({ server, raw } = await standalone()));
    afterAll(async () => {
      raw.disconnect();
      await server.stop();
    });

    it('a key re-put before its expiry is never deleted by the sweepers of concurrent writers', async () => {
      const writers = await Promise.all(
        Array.from({ length: 4 }, () => openRedisKv({ url: server.url, bucket: 'sweep', sweepIntervalMs: 20 })),
      );
      try {
        const keys = Array.from({ length: 40 }, (_, index) => `k.${index}`);
        await Promise.all(keys.map((key, index) => (writers[index % 4] as KvStore).putWithTtl(key, bytes('short'), 150)));
        // Half the keys are re-put (clearing their TTL) by other writers before they expire.
        const kept = keys.filter((_, index) => index % 2 === 0);
        await Promise.all(kept.map((key, index) => (writers[(index + 1) % 4] as KvStore).put(key, bytes('kept'))));
        const first = writers[0] as KvStore;
        await eventually(async () => (await raw.zcard('weft:{sweep}:exp')) === 0, 'every expiry to be swept');
        for (const key of keys) {
          const entry = await first.get(key);
          if (kept.includes(key)) expect(entry && decode(entry.value), key).toBe('kept');
          else expect(entry, key).toBeUndefined();
        }
        const expires = await raw.xrange('weft:{sweep}:log', '-', '+');
        const expired = expires.filter(([, fields]) => fields[3] === 'e').map(([, fields]) => fields[1]);
        expect(expired.sort()).toEqual(keys.filter((key) => !kept.includes(key)).sort());
      } finally {
        await Promise.all(writers.map((writer) => writer.close()));
      }
    });

    it('leaves nothing behind in the side indexes after delete, purge and expiry', async () => {
      const store = await openRedisKv({ url: server.url, bucket: 'tidy', sweepIntervalMs: 20 });
      try {
        await store.putWithTtl('deleted', bytes('v'), 60_000);
        await store.putWithTtl('purged', bytes('v'), 60_000);
        await store.putWithTtl('expired', bytes('v'), 50);
        await store.put('live', bytes('v'));
        await store.delete('deleted');
        await store.purge('purged');
        await eventually(async () => (await raw.zcard('weft:{tidy}:exp')) === 0, 'the expiry to be swept');
        // The epoch (meta) is set by the first read of the change stream: a watch.
        for await (const _event of store.watch({})) break;
        expect(await bucketKeys(raw, 'tidy')).toEqual([
          'weft:{tidy}:idx',
          'weft:{tidy}:log',
          'weft:{tidy}:meta',
          'weft:{tidy}:r:deleted',
          'weft:{tidy}:r:live',
          'weft:{tidy}:r:purged',
          'weft:{tidy}:tomb',
        ]);
        expect(await raw.zrange('weft:{tidy}:idx', '0', '-1')).toEqual(['live']);
        // The tombstones are indexed for compaction; the expired key left none.
        expect((await raw.zrange('weft:{tidy}:tomb', '0', '-1')).sort()).toEqual(['deleted', 'purged']);
        // Tombstones keep only their op and version: the value bytes are gone from the server.
        expect(await raw.hgetall('weft:{tidy}:r:deleted')).toEqual({ o: 'd', n: expect.any(String) });
        expect(await raw.hgetall('weft:{tidy}:r:purged')).toEqual({ o: 'x', n: expect.any(String) });
        expect(await raw.ttl('weft:{tidy}:r:live')).toBe(-1);
      } finally {
        await store.close();
      }
    });

    it('hides an expired entry from every read before any sweeper runs', async () => {
      const store = await openRedisKv({ url: server.url, bucket: 'nosweep', sweepIntervalMs: 0 });
      try {
        await store.putWithTtl('k', bytes('v'), 50);
        await new Promise((resolve) => setTimeout(resolve, 80));
        expect(await raw.zcard('weft:{nosweep}:exp')).toBe(1);
        expect(await store.get('k')).toBeUndefined();
        expect(await store.entry('k')).toBeUndefined();
        const keys: string[] = [];
        for await (const key of store.keys()) keys.push(key);
        expect(keys).toEqual([]);
        expect(await store.sweepExpired()).toBe(1);
        expect(await raw.zcard('weft:{nosweep}:exp')).toBe(0);
      } finally {
        await store.close();
      }
    });
  });

  describe('destroy', () => {
    it('removes every key of the bucket, tombstones and history included, and leaves other buckets alone', async () => {
      const { server, raw } = await standalone();
      try {
        const doomed = await openRedisKv({ url: server.url, bucket: 'doomed' });
        const kept = await openRedisKv({ url: server.url, bucket: 'kept' });
        const other = await openRedisKv({ url: server.url, bucket: 'doomed' });
        await doomed.put('a', bytes('1'));
        await doomed.put('b', bytes('2'));
        await doomed.delete('b'); // a tombstone, which no index lists
        await doomed.putWithTtl('c', bytes('3'), 60_000);
        await kept.put('a', bytes('kept'));
        let cursor: string | undefined;
        for await (const event of other.watch()) {
          cursor = event.cursor;
          if (event.type === 'synced') break;
        }
        expect((await bucketKeys(raw, 'doomed')).length).toBeGreaterThan(3);
        await doomed.destroy();
        expect(doomed.closed).toBe(true);
        expect(await bucketKeys(raw, 'doomed')).toEqual([]);
        expect(decode((await kept.get('a'))?.value ?? bytes(''))).toBe('kept');
        // Another handle finds a new, empty bucket; a cursor from before fails rather than resuming into it.
        expect(await other.get('a')).toBeUndefined();
        await other.put('z', bytes('new'));
        const resumed = await (async () => {
          for await (const _event of other.watch({ from: cursor as never })) return 'resumed';
          return 'ended';
        })().catch((error: unknown) => error);
        expect(KvError.is(resumed, 'CursorExpired'), String(resumed)).toBe(true);
        await Promise.all([kept.close(), other.close()]);
      } finally {
        raw.disconnect();
        await server.stop();
      }
    });

    it("removes a bucket from whichever master holds it, on a cluster client from the user's own copy of ioredis (5)", async () => {
      const { cluster: servers, raw } = await cluster();
      const client = new Cluster5([...servers.startupNodes]);
      try {
        // Buckets spread over the three masters: each must be found where it lives, not on a random node.
        for (let index = 0; index < 9; index++) {
          const bucket = `spread${index}`;
          const store = await openRedisKv({ client: client as unknown as Cluster, bucket });
          await store.put('a', bytes('1'));
          expect((await bucketKeys(raw, bucket)).length).toBeGreaterThan(0);
          await store.destroy();
          expect(await bucketKeys(raw, bucket), bucket).toEqual([]);
        }
      } finally {
        client.disconnect();
        raw.disconnect();
        await servers.stop();
      }
    });
  });

  describe('failures are typed', () => {
    it('refuses bad options with InvalidArgument before connecting', async () => {
      const cases: Array<Parameters<typeof openRedisKv>[0]> = [
        { url: 'redis://127.0.0.1:1', bucket: 'has.dot' },
        { url: 'redis://127.0.0.1:1', bucket: '' },
        { bucket: 'b' },
        { url: 'redis://127.0.0.1:1', cluster: [{ host: '127.0.0.1', port: 1 }], bucket: 'b' },
        { url: 'redis://127.0.0.1:1', bucket: 'b', maxValueBytes: -1 },
        { url: 'redis://127.0.0.1:1', bucket: 'b', maxHistoryEntries: 0 },
        { client: new Redis({ lazyConnect: true, keyPrefix: 'app:' }), bucket: 'b' },
      ];
      for (const options of cases) {
        const error = await openRedisKv(options).catch((caught: unknown) => caught);
        expect(KvError.is(error, 'InvalidArgument'), String(error)).toBe(true);
      }
    });

    it('reports an unreachable server as ConnectionFailed, naming it without the password', async () => {
      const port = await freePort();
      const error = await openRedisKv({ url: `redis://user:hunter2@127.0.0.1:${port}`, bucket: 'b' }).catch((caught: unknown) => caught);
      expect(KvError.is(error, 'ConnectionFailed'), String(error)).toBe(true);
      expect((error as KvError).retryable).toBe(true);
      // The message names where it tried, and never the password in the URL.
      expect((error as KvError).message).toContain(`redis://127.0.0.1:${port}`);
      expect((error as KvError).message).not.toContain('hunter2');
    });

    it('reports a write whose reply never came as Indeterminate, and it may still land', async () => {
      const { server, raw } = await standalone();
      const store = await openRedisKv({ url: server.url, bucket: 'slow', sweepIntervalMs: 0, timeoutMs: 200 });
      try {
        // Writes (scripts included) wait while the server is paused for writes: the write is sent, and answered only
        // after its deadline, however long the machine takes.
        await raw.client('PAUSE', 600_000, 'WRITE');
        const error = await store.put('k', bytes('landed')).catch((caught: unknown) => caught);
        expect(KvError.is(error, 'Indeterminate'), String(error)).toBe(true);
        expect((error as KvError).retryable).toBe(false);
        await raw.client('UNPAUSE');
        await eventually(async () => (await raw.hget('weft:{slow}:r:k', 'v')) === 'landed', 'the write to land');
      } finally {
        await store.close();
        raw.disconnect();
        await server.stop();
      }
    });

    it('a failed connect says why: refused, unknown host, timed out (a server that never answers), or authentication failed', async () => {
      const refused = await openRedisKv({ url: `redis://127.0.0.1:${await freePort()}`, bucket: 'b' }).catch((caught: unknown) => caught);
      expect(KvError.is(refused, 'ConnectionFailed'), String(refused)).toBe(true);
      expect((refused as KvError).message).toContain('connection refused');
      const unknown = await openRedisKv({ url: 'redis://no-such-host.invalid:6379', bucket: 'b' }).catch((caught: unknown) => caught);
      expect(KvError.is(unknown, 'ConnectionFailed'), String(unknown)).toBe(true);
      expect((unknown as KvError).message).toContain('unknown host');
      const silent = createServer(() => undefined);
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      try {
        const port = (silent.address() as AddressInfo).port;
        const late = await openRedisKv({ url: `redis://127.0.0.1:${port}`, bucket: 'b', timeoutMs: 300 }).catch(
          (caught: unknown) => caught,
        );
        expect(KvError.is(late, 'ConnectionFailed'), String(late)).toBe(true);
        expect((late as KvError).message).toContain('timed out');
      } finally {
        silent.close();
      }
      const { server, raw } = await standalone();
      try {
        await raw.config('SET', 'requirepass', 'right-password');
        const url = `redis://:wrong-password@127.0.0.1:${server.port}`;
        const denied = await openRedisKv({ url, bucket: 'b' }).catch((caught: unknown) => caught);
        expect(KvError.is(denied, 'ConnectionFailed'), String(denied)).toBe(true);
        expect((denied as KvError).message).toContain('authentication failed');
        expect((denied as KvError).message).not.toContain('wrong-password');
      } finally {
        raw.disconnect();
        await server.stop();
      }
    });

    it('a read against a stopped server (SIGSTOP) settles as Timeout (retryable), and works again once it answers', async () => {
      const { server, raw } = await standalone();
      const store = await openRedisKv({ url: server.url, bucket: 'paused', sweepIntervalMs: 0, timeoutMs: 200 });
      try {
        await store.put('k', bytes('v'));
        await server.pause();
        const error = await store.get('k').catch((caught: unknown) => caught);
        expect(KvError.is(error, 'Timeout'), String(error)).toBe(true);
        expect((error as KvError).retryable).toBe(true);
        const listing = await drain(store.keys()).catch((caught: unknown) => caught);
        expect(KvError.is(listing, 'Timeout'), String(listing)).toBe(true);
        server.resume();
        await eventually(async () => (await store.get('k').catch(() => undefined)) !== undefined, 'reads to work again');
      } finally {
        await store.close();
        raw.disconnect();
        await server.stop();
      }
    });

    it('writes go on after the server forgets its scripts (SCRIPT FLUSH, as after a restart or failover)', async () => {
      const { server, raw } = await standalone();
      const store = await openRedisKv({ url: server.url, bucket: 'flushed', sweepIntervalMs: 0 });
      try {
        const first = await store.put('k', bytes('1'));
        await store.update('k', bytes('2'), first);
        await raw.script('FLUSH');
        const version = await store.put('k', bytes('3'));
        expect((await store.get('k'))?.version).toBe(version);
        await store.update('k', bytes('4'), version);
      } finally {
        await store.close();
        raw.disconnect();
        await server.stop();
      }
    });

    it('close() leaves a caller-owned client open', async () => {
      const { server, raw } = await standalone();
      const client = new Redis(server.url);
      const store = await openRedisKv({ client, bucket: 'owned' });
      await store.close();
      expect(await client.ping()).toBe('PONG');
      client.disconnect();
      raw.disconnect();
      await server.stop();
    });
  });
});
