/**
 * A write sent to Redis whose connection then drops must settle, and settle
 * as `Indeterminate` (it may have been applied), never hang and never be
 * re-sent behind the caller's back (a re-sent create would report its own
 * write as a conflict). Attacked on both client libraries, on a standalone
 * server and on the node of a cluster that holds the bucket (the client the
 * backend opens itself, a user's ioredis, a user's node-redis), with the server
 * killed for good and killed then restarted at once (the case where ioredis,
 * reconnecting in time, would drop the unanswered command without settling
 * it).
 */
import { KvError, type KvStore } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import type { RedisServer } from '@weft/test-servers';
import { Redis } from 'ioredis';
import { createClient, createCluster } from 'redis';
import { afterEach, describe, expect, it } from 'vitest';
import { busyScript, bytes, cluster, ioredisClient, putRetrying, redisMissing, standalone } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Library = 'default client' | 'ioredis' | 'node-redis';
type Topology = 'standalone' | 'cluster';

/** The server holding the bucket, and a handle on it through `library`. */
async function setUp(library: Library, topology: Topology, bucket: string): Promise<{ node: RedisServer; store: KvStore }> {
  if (topology === 'standalone') {
    const { server, raw } = await standalone({ persistence: 'aof' });
    raw.disconnect();
    cleanups.push(() => server.stop());
    const store = await openStore(library, { url: server.url }, bucket);
    return { node: server, store };
  }
  const { cluster: servers, raw } = await cluster();
  cleanups.push(() => servers.stop());
  // The node that serves the bucket's hash slot.
  const slot = Number(await raw.cluster('KEYSLOT', `weft:{${bucket}}:log`));
  // From the server's own answer (ioredis fills its slot table in the background, so it may still be empty).
  const ranges = await raw.cluster('SLOTS');
  const owner = ranges.find(([start, end]) => slot >= start && slot <= end)?.[2]?.[1];
  raw.disconnect();
  const node = servers.nodes.find((candidate) => candidate.port === Number(owner));
  if (node === undefined) throw new Error(`no node serves slot ${slot}`);
  const store = await openStore(library, { cluster: servers.startupNodes }, bucket);
  return { node, store };
}

async function openStore(
  library: Library,
  target: { url: string } | { cluster: ReadonlyArray<{ host: string; port: number }> },
  bucket: string,
): Promise<KvStore> {
  let store: KvStore;
  if (library === 'default client') {
    store = await openRedisKv({ ...target, bucket, sweepIntervalMs: 0 });
  } else if (library === 'ioredis') {
    const client = ioredisClient(target);
    cleanups.push(() => client.disconnect());
    store = await openRedisKv({ client, bucket, sweepIntervalMs: 0 });
  } else {
    const client =
      'url' in target
        ? createClient({ url: target.url })
        : createCluster({ rootNodes: target.cluster.map(({ host, port }) => ({ url: `redis://${host}:${port}` })) });
    client.on('error', () => undefined);
    await client.connect();
    cleanups.push(() => client.destroy());
    store = await openRedisKv({ client, bucket, sweepIntervalMs: 0 });
  }
  cleanups.push(() => store.close());
  return store;
}

/** Sends a write while `node` is busy in a script, then kills the node (and restarts it at once if asked). */
async function writeAcrossKill(node: RedisServer, store: KvStore, restart: boolean): Promise<unknown> {
  const busy = new Redis(node.url, { maxRetriesPerRequest: 0 });
  busy.on('error', () => undefined);
  cleanups.push(() => busy.disconnect());
  busy.eval(busyScript, '0').catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const write = store.create('k', bytes('v')).catch((caught: unknown) => caught);
  await new Promise((resolve) => setTimeout(resolve, 50));
  await node.kill();
  if (restart) await node.restart();
  return write;
}

describe.skipIf(redisMissing !== undefined)('a write in flight when Redis dies', () => {
  for (const library of ['default client', 'ioredis', 'node-redis'] as const) {
    for (const topology of ['standalone', 'cluster'] as const) {
      for (const restart of [false, true]) {
        const what = restart ? 'killed and restarted at once' : 'killed';
        it(`${library}, ${topology}, server ${what}: the write settles as Indeterminate${restart ? ', and writes go on' : ''}`, async () => {
          const { node, store } = await setUp(library, topology, 'inflight');
          const error = await writeAcrossKill(node, store, restart);
          expect(KvError.is(error, 'Indeterminate'), String(error)).toBe(true);
          expect((error as KvError).retryable).toBe(false);
          if (!restart) return;
          // The busy script never finished, so the create was not applied (AOF keeps what was): it was not re-sent.
          await putRetrying(store, 'after', 'x');
          expect(await store.get('k')).toBeUndefined();
          await store.create('k', bytes('v'));
        });
      }
    }
  }
});
