/**
 * The Redis backend on a user's node-redis client, attacked where node-redis
 * differs from ioredis: restarts under a running watch, a client the user
 * destroyed, a server that forgot its scripts, clients the backend cannot
 * serve, a client that maps replies to Buffers, and bucket removal on a
 * cluster. Writes in flight when a server dies: in-flight-writes.test.ts.
 */
import { KvError } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import { WatchReader } from '@weft/kv-testkit';
import { createClient, createCluster, RESP_TYPES } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  bucketKeys,
  bytes,
  cluster,
  decode,
  eventually,
  redisMissing,
  standalone,
  summary,
  watchAcrossPersistentRestart,
  watchAcrossVolatileRestart,
  watchConnections,
} from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A connected node-redis 6 client on `url`, destroyed after the test. */
async function userClient(url: string, options: Parameters<typeof createClient>[0] = {}) {
  const client = createClient({ url, ...options });
  client.on('error', () => undefined);
  await client.connect();
  cleanups.push(() => client.destroy());
  return client;
}

/** A spawned server with its raw inspection client, stopped after the test. */
async function server(options: Parameters<typeof standalone>[0] = {}) {
  const started = await standalone(options);
  cleanups.push(() => started.server.stop());
  cleanups.push(() => started.raw.disconnect());
  return started;
}

describe.skipIf(redisMissing !== undefined)("redis backend on the user's node-redis client", () => {
  it('with persistence: after kill -9 and restart, writes resume and a running watch continues with no gap and no duplicate', async () => {
    const { server: redis } = await server({ persistence: 'aof' });
    const store = await openRedisKv({ client: await userClient(redis.url), bucket: 'restart' });
    cleanups.push(() => store.close());
    await watchAcrossPersistentRestart(store, redis);
  });

  it('without persistence: the lost stream surfaces as CursorExpired, for running and resumed watches, never a silent gap', async () => {
    const { server: redis } = await server();
    const store = await openRedisKv({ client: await userClient(redis.url), bucket: 'volatile' });
    cleanups.push(() => store.close());
    await watchAcrossVolatileRestart(store, redis);
  });

  it('reports a write on a client the user destroyed as NotConnected (never sent, safe to retry)', async () => {
    const { server: redis } = await server();
    const client = await userClient(redis.url);
    const store = await openRedisKv({ client, bucket: 'gone', sweepIntervalMs: 0 });
    client.destroy();
    const error = await store.put('k', bytes('v')).catch((caught: unknown) => caught);
    expect(KvError.is(error, 'NotConnected'), String(error)).toBe(true);
    expect((error as KvError).retryable).toBe(true);
    await store.close();
  });

  it('writes go on after the server forgets its scripts (SCRIPT FLUSH, as after a restart or failover)', async () => {
    const { server: redis, raw } = await server();
    const store = await openRedisKv({ client: await userClient(redis.url), bucket: 'flushed', sweepIntervalMs: 0 });
    cleanups.push(() => store.close());
    const first = await store.put('k', bytes('1'));
    await store.update('k', bytes('2'), first);
    await raw.script('FLUSH');
    const version = await store.put('k', bytes('3'));
    expect((await store.get('k'))?.version).toBe(version);
    await store.update('k', bytes('4'), version);
    // The watch's scripts reload too.
    const watch = new WatchReader(store, {});
    expect(summary(await watch.untilSynced())).toEqual(['put:k=4', 'synced']);
    await watch.stop();
  });

  it('keeps working on a client whose replies the user maps to Buffers, and returns values byte for byte', async () => {
    const { server: redis } = await server();
    const client = (await userClient(redis.url)).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    const store = await openRedisKv({ client, bucket: 'mapped', sweepIntervalMs: 0 });
    cleanups.push(() => store.close());
    const binary = Uint8Array.from([0, 255, 128, 10, 13, 0]);
    const version = await store.create('k', binary);
    expect(typeof version).toBe('string');
    await store.update('k', bytes('two'), version);
    await store.put('other', binary);
    expect([...((await store.get('other'))?.value ?? [])]).toEqual([...binary]);
    const listed: string[] = [];
    for await (const key of store.keys()) listed.push(key);
    expect(listed.sort()).toEqual(['k', 'other']);
    const watch = new WatchReader(store, {});
    const [first, second, synced] = await watch.untilSynced();
    // In version order: k's update, then other.
    expect(first?.type === 'put' && first.key === 'k' && decode(first.value)).toBe('two');
    expect(second?.type === 'put' && second.key === 'other' && [...second.value]).toEqual([...binary]);
    expect(synced?.type).toBe('synced');
    await watch.stop();
  });

  it('close() leaves the caller-owned client open, and ends the watch connections it opened', async () => {
    const { server: redis, raw } = await server();
    const client = await userClient(redis.url);
    const store = await openRedisKv({ client, bucket: 'owned' });
    const watch = new WatchReader(store, {});
    await watch.untilSynced();
    expect(await watchConnections(raw, 'owned')).toBe(1);
    await store.close();
    expect(await client.ping()).toBe('PONG');
    await eventually(async () => (await watchConnections(raw, 'owned')) === 0, 'the watch connection to close');
  });

  it('refuses clients it cannot serve with InvalidArgument, saying why', async () => {
    const { server: redis } = await server();
    const unconnected = createClient({ url: redis.url });
    const prefixed = await userClient(redis.url, { keyPrefix: 'app:' });
    // What node-redis 4 looks like to the backend: no per-command type mapping.
    const older = { isOpen: true, sendCommand: async () => null } as unknown as typeof prefixed;
    const cases: Array<[typeof prefixed | typeof unconnected, string]> = [
      [unconnected, 'client.connect()'],
      [prefixed, 'keyPrefix'],
      [older, 'node-redis 5 or 6'],
    ];
    for (const [client, says] of cases) {
      const error = await openRedisKv({ client, bucket: 'b' }).catch((caught: unknown) => caught);
      expect(KvError.is(error, 'InvalidArgument'), String(error)).toBe(true);
      expect((error as KvError).message).toContain(says);
    }
  });

  it('destroy() on a node-redis cluster client removes every key of the bucket from every master and leaves other buckets alone', async () => {
    const { cluster: servers, raw } = await cluster();
    cleanups.push(() => servers.stop());
    cleanups.push(() => raw.disconnect());
    const client = createCluster({ rootNodes: servers.startupNodes.map(({ host, port }) => ({ url: `redis://${host}:${port}` })) });
    client.on('error', () => undefined);
    await client.connect();
    cleanups.push(() => client.destroy());
    const doomed = await openRedisKv({ client, bucket: 'doomed' });
    const kept = await openRedisKv({ client, bucket: 'kept' });
    cleanups.push(() => kept.close());
    for (let index = 0; index < 50; index++) await doomed.put(`k${index}`, bytes('v'));
    await doomed.delete('k0');
    await doomed.putWithTtl('ttl', bytes('v'), 60_000);
    await kept.put('k', bytes('v'));
    expect((await bucketKeys(raw, 'doomed')).length).toBeGreaterThan(50);
    await doomed.destroy();
    expect(await bucketKeys(raw, 'doomed')).toEqual([]);
    expect(decode((await kept.get('k'))?.value ?? new Uint8Array())).toBe('v');
    const again = await openRedisKv({ client, bucket: 'doomed' });
    expect(await again.get('k1')).toBeUndefined();
    await again.close();
  });
});
