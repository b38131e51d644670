import { KvError, type KvStore, type WatchEvent } from '@weft/kv';
import type { openRedisKv, RedisKvOptions } from '@weft/kv-redis';
import { describeKvConformance, type KvConformanceHarness, WatchReader } from '@weft/kv-testkit';
import {
  type Link,
  type RedisCluster,
  type RedisServer,
  redisUnavailable,
  startLink,
  startRedisCluster,
  startRedisServer,
} from '@weft/test-servers';
import { Cluster, Redis } from 'ioredis';
import { describe, expect } from 'vitest';

export const redisMissing = redisUnavailable();
if (redisMissing !== undefined) console.warn(`SKIPPING Redis backend tests: ${redisMissing}`);

/**
 * A master and its replica for failover tests: a link clients reach the
 * master through (`retarget` it to the promoted replica), the replication
 * link (`partition` it to hold what the master sends), and raw clients on
 * both servers; everything is pushed onto `cleanups`, to undo in reverse.
 */
export async function replicatedPair(cleanups: Array<() => unknown>): Promise<{
  master: RedisServer;
  replica: RedisServer;
  link: Link;
  replication: Link;
  onMaster: Redis;
  onReplica: Redis;
}> {
  const master = await startRedisServer();
  cleanups.push(() => master.stop());
  const replication = await startLink({ target: master.port });
  cleanups.push(() => replication.close());
  const replica = await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(replication.port)] });
  cleanups.push(() => replica.stop());
  const link = await startLink({ target: master.port });
  cleanups.push(() => link.close());
  const onMaster = new Redis(master.url, { maxRetriesPerRequest: 0 });
  onMaster.on('error', () => undefined);
  cleanups.push(() => onMaster.disconnect());
  const onReplica = new Redis(replica.url);
  cleanups.push(() => onReplica.disconnect());
  await eventually(async () => (await onReplica.info('replication')).includes('master_link_status:up'), 'the replica to sync');
  return { master, replica, link, replication, onMaster, onReplica };
}

/** A spawned standalone server plus a raw ioredis client for inspecting what the backend stored. */
export async function standalone(options: Parameters<typeof startRedisServer>[0] = {}): Promise<{ server: RedisServer; raw: Redis }> {
  const server = await startRedisServer(options);
  const raw = new Redis(server.url, { maxRetriesPerRequest: null });
  return { server, raw };
}

export async function cluster(): Promise<{ cluster: RedisCluster; raw: Cluster }> {
  const started = await startRedisCluster({ masters: 3 });
  return { cluster: started, raw: new Cluster([...started.startupNodes]) };
}

/** Every Redis key of a bucket, found by SCAN over the keyspace (on every node of a cluster). */
export async function bucketKeys(raw: Redis | Cluster, bucket: string): Promise<string[]> {
  const nodes = raw instanceof Cluster ? raw.nodes('master') : [raw];
  const keys: string[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, page] = await node.scan(cursor, 'MATCH', `weft:{${bucket}}:*`, 'COUNT', 1000);
      keys.push(...page);
      cursor = next;
    } while (cursor !== '0');
  }
  return keys.sort();
}

export async function dropBucket(raw: Redis | Cluster, bucket: string): Promise<void> {
  const keys = await bucketKeys(raw, bucket);
  for (let index = 0; index < keys.length; index += 500) await raw.del(...keys.slice(index, index + 500));
}

/** Connections that watches of `bucket` hold open (they carry the client name weft-watch:<bucket>). */
export async function watchConnections(raw: Redis | Cluster, bucket: string): Promise<number> {
  const nodes = raw instanceof Cluster ? raw.nodes('master') : [raw];
  let count = 0;
  for (const node of nodes) {
    const list = (await node.client('LIST')) as string;
    count += list.split('\n').filter((line) => line.includes(` name=weft-watch:${bucket} `)).length;
  }
  return count;
}

/**
 * The user's own ioredis client for `target`, made as docs/guides/redis-clients.md
 * advises (no re-sending of unanswered commands); the handle leaves it open.
 */
export function ioredisClient(target: RedisFixture['target']): Redis | Cluster {
  const client =
    'url' in target
      ? new Redis(target.url, { autoResendUnfulfilledCommands: false })
      : new Cluster([...target.cluster], { retryDelayOnFailover: 0, redisOptions: { autoResendUnfulfilledCommands: false } });
  client.on('error', () => undefined);
  return client;
}

/** Where a harness connects: a standalone server's URL or a cluster's nodes, and the raw client that inspects it. */
export interface RedisFixture {
  target: { readonly url: string } | { readonly cluster: ReadonlyArray<{ host: string; port: number }> };
  raw: Redis | Cluster;
}

/**
 * The conformance harness for `open` (this package's `openRedisKv`, or a
 * mutated copy's) on a fixture a suite's setup fills in: regular handles
 * sweep every 100 ms, unswept ones not at all.
 */
export function redisHarness(open: typeof openRedisKv, fixture: RedisFixture): KvConformanceHarness {
  const handle = (bucket: string, sweepIntervalMs: number) => open({ ...fixture.target, bucket, sweepIntervalMs });
  return {
    open: (bucket) => handle(bucket, 100),
    openUnswept: (bucket) => handle(bucket, 0),
    dropBucket: (bucket) => dropBucket(fixture.raw, bucket),
    recreateBucket: (bucket) => dropBucket(fixture.raw, bucket),
    // What retention does when it trims the change stream, all at once.
    forgetHistory: async (bucket) => void (await fixture.raw.xtrim(`weft:{${bucket}}:log`, 'MAXLEN', 0)),
    // DUMP of every key of the bucket now; putting it back replaces whatever the bucket holds by then.
    rewind: async (bucket) => {
      const raw = fixture.raw;
      const copies = await Promise.all(
        (await bucketKeys(raw, bucket)).map(async (key) => ({ key, dump: await raw.dumpBuffer(key), ttl: await raw.pttl(key) })),
      );
      return async () => {
        await dropBucket(raw, bucket);
        for (const { key, dump, ttl } of copies) if (dump !== null) await raw.restore(key, Math.max(0, ttl), dump, 'REPLACE');
      };
    },
    watchResources: (bucket) => watchConnections(fixture.raw, bucket),
    expireDelayMs: 1000,
  };
}

export const bytes = (text: string) => new TextEncoder().encode(text);
export const decode = (value: Uint8Array) => new TextDecoder().decode(value);

/** Keeps Redis busy for half a second (a script blocks every other client). */
export const busyScript = `
local start = redis.call('TIME')
local began = tonumber(start[1]) * 1000000 + tonumber(start[2])
while true do
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000000 + tonumber(now[2]) - began > 500000 then return 1 end
end`;

export function summary(events: readonly WatchEvent[]): string[] {
  return events.map((event) =>
    event.type === 'synced' ? 'synced' : `${event.type}:${event.key}${event.type === 'put' ? `=${decode(event.value)}` : ''}`,
  );
}

export async function eventually(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await condition())) {
    if (Date.now() > deadline) expect.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Writes with retries across a restart, as an application would; returns once the write is acknowledged. */
export async function putRetrying(store: KvStore, key: string, value: string): Promise<void> {
  for (;;) {
    try {
      await store.put(key, bytes(value));
      return;
    } catch (error) {
      if (!KvError.is(error) || !(error.retryable || error.code === 'Indeterminate')) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * With persistence: a running watch, the server killed (-9) and restarted;
 * writes resume and the watch continues with no gap and no duplicate.
 */
export async function watchAcrossPersistentRestart(store: KvStore, server: RedisServer): Promise<void> {
  await store.put('a', bytes('1'));
  const watch = new WatchReader(store, {});
  await watch.untilSynced();
  await store.put('b', bytes('2'));
  await watch.until((event) => event.type === 'put' && event.key === 'b');

  await server.kill();
  await server.restart();
  await putRetrying(store, 'c', '3');
  await store.delete('a');
  await store.put('d', bytes('4'));
  await watch.until((event) => event.type === 'put' && event.key === 'd');
  expect(summary(watch.events)).toEqual(['put:a=1', 'synced', 'put:b=2', 'put:c=3', 'delete:a', 'put:d=4']);
  await watch.stop();
}

/**
 * Without persistence: the server killed and restarted empty; the lost
 * stream surfaces as CursorExpired to the running watch and to a resumed
 * one, and a fresh state-sync shows what the restarted server holds.
 */
export async function watchAcrossVolatileRestart(store: KvStore, server: RedisServer): Promise<void> {
  await store.put('a', bytes('1'));
  const watch = new WatchReader(store, {});
  const [, synced] = await watch.untilSynced();
  await server.kill();
  await server.restart();
  await putRetrying(store, 'after-restart', 'x');
  const failure = await watch.until(() => false).catch((error: unknown) => error);
  expect(KvError.is(failure, 'CursorExpired'), String(failure)).toBe(true);

  const resumed = new WatchReader(store, { from: synced?.cursor as never });
  const resumedFailure = await resumed.untilSynced().catch((error: unknown) => error);
  expect(KvError.is(resumedFailure, 'CursorExpired'), String(resumedFailure)).toBe(true);

  const relist = new WatchReader(store, {});
  expect(summary(await relist.untilSynced())).toEqual(['put:after-restart=x', 'synced']);
  await relist.stop();
}

/** A user's client, connected, and how the test closes it (the handle leaves it open). */
export interface UserClient {
  readonly client: NonNullable<RedisKvOptions['client']>;
  close(): unknown;
}

/**
 * The conformance suite on handles made from user clients that `connect`
 * makes, against a standalone server (or a cluster) the suite's setup starts.
 */
export function describeConformanceOnUserClients(
  open: typeof openRedisKv,
  name: string,
  topology: 'standalone' | 'cluster',
  connect: (target: RedisFixture['target']) => Promise<UserClient>,
): void {
  const fixture = {} as RedisFixture;
  const clients: UserClient[] = [];
  let stop: () => Promise<void>;
  const openOnUserClient = async (bucket: string, sweepIntervalMs: number) => {
    const user = await connect(fixture.target);
    clients.push(user);
    return open({ client: user.client, bucket, sweepIntervalMs });
  };
  if (redisMissing !== undefined) {
    describe.skip(`kv conformance: ${name} (${redisMissing})`, () => undefined);
    return;
  }
  describeKvConformance(name, {
    ...redisHarness(open, fixture),
    open: (bucket) => openOnUserClient(bucket, 100),
    openUnswept: (bucket) => openOnUserClient(bucket, 0),
    setup: async () => {
      if (topology === 'standalone') {
        const { server, raw } = await standalone();
        Object.assign(fixture, { target: { url: server.url }, raw });
        stop = () => server.stop();
      } else {
        const started = await cluster();
        Object.assign(fixture, { target: { cluster: started.cluster.startupNodes }, raw: started.raw });
        stop = () => started.cluster.stop();
      }
    },
    teardown: async () => {
      for (const user of clients.splice(0)) user.close();
      fixture.raw.disconnect();
      await stop();
    },
  });
}
