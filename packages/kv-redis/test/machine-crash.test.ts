/**
 * A machine crash (power loss) under each of Redis' AOF fsync policies. The
 * servers' data directories live on crashfs (`tools/crashfs`), a FUSE file
 * system that loses, on command, every byte written since the file's last
 * fsync; the check (`checkMachineCrash` in `@weft/kv-testkit`) writes back
 * a first set of writes, runs a watch, writes a burst, kills every server,
 * crashes and starts them again.
 *
 * `appendfsync always` (an fsync before each reply) loses nothing: every
 * acknowledged write is read back and the running watch goes on.
 * `appendfsync everysec` (Redis' default for AOF) loses what was written
 * since its last background fsync (up to about a second): what was lost is
 * printed, the running watch that delivered a lost write fails with
 * `CursorExpired`, and a compare-and-swap naming one is refused; when an
 * fsync happened to follow the burst, nothing is lost and the watch goes
 * on.
 *
 * A standalone server in the default run; a Redis Cluster of three masters
 * with a replica each, every node crashed at once, under `WEFT_LONG=1`.
 * Needs root, /dev/fuse and crashfs (`bash scripts/install-crashfs.sh`);
 * skipped, saying why, without them.
 */
import { join } from 'node:path';
import type { KvStore } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import { checkMachineCrash } from '@weft/kv-testkit';
import { type CrashFs, crashFsUnavailable, redisUnavailable, startCrashFs, startRedisCluster, startRedisServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, it } from 'vitest';

const long = process.env.WEFT_LONG === '1';

const policies = [
  { appendfsync: 'always', synced: true },
  { appendfsync: 'everysec', synced: false },
] as const;

async function crashUnder(
  fs: CrashFs,
  store: KvStore,
  nodes: ReadonlyArray<{ kill(): Promise<void>; process: { start(): Promise<void> } }>,
  label: string,
  synced: boolean,
): Promise<number> {
  try {
    return await checkMachineCrash(store, {
      label: `redis ${label}`,
      synced,
      writeBack: () => fs.writeBack(),
      crash: async () => {
        await Promise.all(nodes.map((node) => node.kill()));
        await fs.crash();
        await Promise.all(nodes.map((node) => node.process.start()));
        return undefined;
      },
    });
  } finally {
    await store.close();
  }
}

const missing = crashFsUnavailable() ?? redisUnavailable();
describe.skipIf(missing !== undefined)(`a machine crash under each AOF fsync policy (redis)${missing ? ` (${missing})` : ''}`, () => {
  let fs: CrashFs;
  beforeAll(async () => {
    fs = await startCrashFs();
  });
  afterAll(async () => fs?.stop());

  for (const { appendfsync, synced } of policies) {
    const outcome = synced
      ? 'loses no acknowledged write, and the running watch goes on'
      : 'loses at most the writes since its last fsync, each reported: the watch that delivered one fails CursorExpired, compare-and-swap naming one is refused';
    it(`a standalone server, appendfsync ${appendfsync}: ${outcome}`, async () => {
      const server = await startRedisServer({
        persistence: 'aof',
        dataDir: join(fs.path, `standalone-${appendfsync}`),
        args: ['--appendfsync', appendfsync],
      });
      try {
        const store = await openRedisKv({ url: server.url, bucket: 'crash' });
        await crashUnder(fs, store, [server], `standalone, appendfsync ${appendfsync}`, synced);
      } finally {
        await server.stop();
      }
    }, 120_000);

    it.skipIf(!long)(
      `a Redis Cluster with a replica per master, every node at once, appendfsync ${appendfsync}: ${outcome}`,
      async () => {
        const cluster = await startRedisCluster({
          replicas: 1,
          persistence: 'aof',
          dataDir: (node) => join(fs.path, `cluster-${appendfsync}-${node}`),
          args: ['--appendfsync', appendfsync],
        });
        try {
          const store = await openRedisKv({ cluster: cluster.startupNodes, bucket: 'crash' });
          await crashUnder(fs, store, cluster.nodes, `cluster, appendfsync ${appendfsync}`, synced);
        } finally {
          await cluster.stop();
        }
      },
      300_000,
    );
  }
});
