/**
 * `waitForReplicas`: a write returns only once that many replicas
 * acknowledged it (`WAIT` on the master that ran its script). Redis
 * replicates asynchronously, so a failover loses what the replica had not
 * received whatever the fsync policy (`failover.test.ts`); with the option,
 * no write that returned is lost: one the replica could not acknowledge is
 * `Indeterminate`. A master with a replica whose replication link a test
 * holds, the master killed and the replica promoted, through the default
 * client and a user's ioredis; and on a Redis Cluster with a replica per
 * master, where `WAIT` must reach the master of the bucket's slot (another
 * master would answer at once that its own replica is up to date).
 */
import { KvError, KvErrorCode, type Version } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import { type RedisCluster, type RedisServer, startRedisCluster } from '@weft/test-servers';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bytes, decode, eventually, ioredisClient, redisMissing, replicatedPair } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function indeterminate(call: () => Promise<unknown>): Promise<KvError> {
  const error = await call().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(KvError.is(error, KvErrorCode.Indeterminate), `expected Indeterminate, got ${String(error)}`).toBe(true);
  return error as KvError;
}

const clients = ['the default client (node-redis)', "a user's ioredis"] as const;

describe.skipIf(redisMissing !== undefined)('waitForReplicas: a failover loses no write that returned', () => {
  for (const client of clients) {
    it(`${client}: writes the replica could not acknowledge are Indeterminate; every one that returned survives the failover`, async () => {
      const { master, replica, link, replication, onReplica } = await replicatedPair(cleanups);
      const url = `redis://127.0.0.1:${link.port}`;
      const own = client === "a user's ioredis" ? ioredisClient({ url }) : undefined;
      if (own !== undefined) cleanups.push(() => own.disconnect());
      const store = await openRedisKv({
        ...(own === undefined ? { url } : { client: own }),
        bucket: 'waited',
        timeoutMs: 2000,
        sweepIntervalMs: 0,
        waitForReplicas: { replicas: 1, timeoutMs: 300 },
      });
      cleanups.push(() => store.close());

      const returned = new Map<string, Version>();
      returned.set('a', await store.put('a', bytes('1')));
      returned.set('b', await store.put('b', bytes('2')));
      returned.set('gone', await store.put('gone', bytes('x')));
      await store.delete('gone');
      returned.delete('gone');
      const [c1, c2] = await store.commit([
        { op: 'put', key: 'c1', value: bytes('c1') },
        { op: 'put', key: 'c2', value: bytes('c2') },
      ]);
      returned.set('c1', c1 as Version);
      returned.set('c2', c2 as Version);

      // The replica stops receiving: the master still applies each write, which is not acknowledged.
      replication.partition();
      const unacknowledged = [
        await indeterminate(() => store.put('lost', bytes('never on the replica'))),
        await indeterminate(() => store.update('b', bytes('3'), returned.get('b') as Version)),
        await indeterminate(() =>
          store.commit([
            { op: 'put', key: 'c1', value: bytes('changed') },
            { op: 'delete', key: 'c2' },
          ]),
        ),
      ];
      expect(unacknowledged[0]?.message).toContain('0 of 1 replicas acknowledged it within 300 ms');

      await master.kill();
      replication.reset();
      replication.heal();
      await onReplica.replicaof('NO', 'ONE');
      link.retarget(replica.port);
      // The promoted replica has no replica of its own (every write would be Indeterminate now): read only.
      await eventually(async () => (await store.get('a').catch(() => undefined)) !== undefined, 'the promoted replica to answer');

      const lost: string[] = [];
      for (const [key, version] of returned) {
        const entry = await store.get(key);
        if (entry?.version !== version) lost.push(key);
      }
      const absent = [];
      for (const key of ['lost']) if ((await store.get(key)) === undefined) absent.push(key);
      console.log(
        `[waitForReplicas, ${client}] after the failover: ${lost.length} of ${returned.size} writes that returned lost; ` +
          `${unacknowledged.length} Indeterminate writes, of which the new master lacks: ${absent.join(', ') || 'none'}`,
      );
      expect(lost).toEqual([]);
      expect(decode((await store.get('b'))?.value ?? bytes('(absent)'))).toBe('2');
      expect((await store.get('c1'))?.version).toBe(returned.get('c1'));
    });
  }

  it('refuses a count that is not a whole number, and a wait as long as the write deadline', async () => {
    for (const waitForReplicas of [-1, 1.5, { replicas: 1, timeoutMs: 5000 }, { replicas: 1, timeoutMs: 0 }]) {
      const error = await openRedisKv({ url: 'redis://127.0.0.1:1', bucket: 'refused', timeoutMs: 5000, waitForReplicas }).catch(
        (caught: unknown) => caught,
      );
      expect(KvError.is(error, KvErrorCode.InvalidArgument), String(error)).toBe(true);
    }
  });
});

describe.skipIf(redisMissing !== undefined)('waitForReplicas on a Redis Cluster with a replica per master', () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster({ replicas: 1, links: true });
  });
  afterAll(async () => cluster?.stop());

  for (const client of clients) {
    it(`${client}: WAIT reaches the master of the bucket's slot: its replica cut off, a write is Indeterminate`, async () => {
      const bucket = client === "a user's ioredis" ? 'slotted_io' : 'slotted';
      const target = { cluster: cluster.startupNodes };
      const own = client === "a user's ioredis" ? ioredisClient(target) : undefined;
      if (own !== undefined) cleanups.push(() => own.disconnect());
      const store = await openRedisKv({
        ...(own === undefined ? { cluster: cluster.startupNodes } : { client: own }),
        bucket,
        timeoutMs: 2000,
        sweepIntervalMs: 0,
        waitForReplicas: { replicas: 1, timeoutMs: 300 },
      });
      cleanups.push(() => store.close());
      const before = await store.put('k', bytes('1'));
      const master = await cluster.masterOf(`weft:{${bucket}}:log`);
      expect(master).toBeDefined();
      // Cut off from every other node, its replica among them; shorter than the node timeout (2 s), so no failover.
      cluster.isolate(cluster.nodes.indexOf(master as RedisServer));
      try {
        const error = await indeterminate(() => store.update('k', bytes('2'), before));
        expect(error.message).toContain('0 of 1 replicas');
      } finally {
        cluster.rejoin();
      }
      await cluster.settled();
      // The replica has caught up: the next write returns.
      const entry = await store.get('k');
      await store.update('k', bytes('3'), entry?.version as Version);
      expect(decode((await store.get('k'))?.value ?? bytes('(absent)'))).toBe('3');
    }, 120_000);
  }
});
