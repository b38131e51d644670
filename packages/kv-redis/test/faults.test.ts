/**
 * The fault group on a real redis-server (append-only file, fsync always)
 * reached through a loopback link that can reset and partition: restarts,
 * kill -9, pauses, resets, partitions and a restart that lost the data, each
 * with an idle watch and one under continuous writes, on the client the
 * backend opens itself (node-redis 5), a user's ioredis and a user's
 * node-redis 6.
 */
import { openRedisKv, type RedisKvOptions } from '@weft/kv-redis';
import { describeKvFaults, type KvFault, seededRandom } from '@weft/kv-testkit';
import {
  type Link,
  type RedisCluster,
  type RedisServer,
  serverFaults,
  startLink,
  startRedisCluster,
  startRedisServer,
} from '@weft/test-servers';
import { createClient } from 'redis';
import { afterAll, describe, expect, vi } from 'vitest';
import { ioredisClient, redisMissing } from './helpers.js';

// No connection of the backend's may log an unhandled error event while servers restart under it.
const unhandled: string[] = [];
const consoleError = console.error;
vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => {
  if (String(args[0]).includes('Unhandled error event')) unhandled.push(args.map(String).join(' '));
  consoleError(...args);
});
afterAll(() => {
  expect(unhandled, 'unhandled error events logged by a client').toEqual([]);
});

let server: RedisServer;
let link: Link;
const userClients: Array<{ disconnect(): unknown }> = [];

const faults = serverFaults(() => ({ server, link }), { persistence: 'AOF' });

const setup = async () => {
  server = await startRedisServer({ persistence: 'aof' });
  link = await startLink({ target: server.port });
};
const teardown = async () => {
  for (const client of userClients.splice(0)) client.disconnect();
  await link.close();
  await server.stop();
};
// Short deadlines, so a fault that leaves a step unanswered settles quickly.
const timing: Pick<RedisKvOptions, 'timeoutMs' | 'watchOutageMs'> = { timeoutMs: 1000, watchOutageMs: 60_000 };

if (redisMissing !== undefined) describe.skip(`kv faults: redis (${redisMissing})`, () => undefined);
else {
  describeKvFaults('redis (default client)', {
    setup,
    teardown,
    faults,
    open: (bucket) => openRedisKv({ url: `redis://127.0.0.1:${link.port}`, bucket, ...timing }),
  });
  describeKvFaults("redis (user's ioredis)", {
    setup,
    teardown,
    faults,
    open: (bucket) => {
      const client = ioredisClient({ url: `redis://127.0.0.1:${link.port}` });
      userClients.push(client);
      return openRedisKv({ client, bucket, ...timing });
    },
  });
  // The default client is node-redis (5): a user's node-redis 6 goes through the faults in the long run.
  if (process.env.WEFT_LONG === '1')
    describeKvFaults("redis (user's node-redis 6)", {
      setup,
      teardown,
      faults,
      open: async (bucket) => {
        const client = createClient({ url: `redis://127.0.0.1:${link.port}` });
        client.on('error', () => undefined);
        await client.connect();
        userClients.push(client);
        return openRedisKv({ client, bucket, ...timing });
      },
    });
}

// A Redis Cluster of three masters (append-only files): every master killed or paused at once, then back.
let nodes: RedisCluster;
const clusterFaults: KvFault[] = [
  {
    name: 'every master killed (-9) and restarted (AOF)',
    outcome: 'continues',
    inject: async () => void (await Promise.all(nodes.nodes.map((node) => node.kill()))),
    heal: async () => void (await Promise.all(nodes.nodes.map((node) => node.process.start()))),
  },
  {
    name: 'every master stopped (SIGSTOP), then SIGCONT',
    outcome: 'continues',
    unanswered: true,
    inject: async () => void (await Promise.all(nodes.nodes.map((node) => node.pause()))),
    heal: async () => {
      for (const node of nodes.nodes) node.resume();
    },
  },
];

// A Redis Cluster of three masters with a replica each (append-only files, every node's bus and client port through
// links): the bucket's master fails and the cluster promotes its replica on its own, after the node timeout (2 s);
// the old master comes back as a replica. Replication is asynchronous: writes the old master acknowledged that its
// replica lacked are lost (a paused master resumed answers what clients sent it while paused before it learns it was
// replaced; a master cut off from the other nodes and its replica goes on taking its clients' writes until the node
// timeout tells it it is alone), and must never be lost silently.
let replicated: RedisCluster;
let replicatedBucket = '';
let failedMaster: RedisServer | undefined;
const bucketKey = () => `weft:{${replicatedBucket}}:log`;
async function masterNow(): Promise<RedisServer> {
  const master = await replicated.masterOf(bucketKey());
  if (master === undefined) throw new Error(`no node serves ${bucketKey()}`);
  return master;
}
/** Waits until the cluster names another master for the bucket than `old` (asking the other nodes). */
async function promotedFrom(old: RedisServer): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const master = await replicated.masterOf(bucketKey(), old);
    if (master !== undefined && master !== old) return;
    if (Date.now() > deadline) throw new Error(`no replica took over from the master on port ${old.port}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
const long = process.env.WEFT_LONG === '1';
const failoverFaults: KvFault[] = [
  {
    name: "the bucket's master killed (-9): its replica takes over, the old master comes back as a replica",
    outcome: 'may-lose',
    inject: async () => {
      failedMaster = await masterNow();
      await failedMaster.kill();
      await promotedFrom(failedMaster);
    },
    heal: async () => {
      await failedMaster?.process.start();
      await replicated.settled();
    },
  },
  {
    name: "the bucket's master stopped (SIGSTOP) past the node timeout: its replica takes over, the old master resumed comes back as a replica",
    outcome: 'may-lose',
    inject: async () => {
      failedMaster = await masterNow();
      await failedMaster.pause();
      await promotedFrom(failedMaster);
    },
    heal: async () => {
      failedMaster?.resume();
      await replicated.settled();
    },
  },
  {
    name: "the bucket's master cut off from the cluster bus past the node timeout, clients still reaching it: its replica takes over, the old master joined again comes back as a replica",
    outcome: 'may-lose',
    inject: async () => {
      failedMaster = await masterNow();
      replicated.isolate(replicated.nodes.indexOf(failedMaster));
      await promotedFrom(failedMaster);
    },
    heal: async () => {
      replicated.rejoin();
      await replicated.settled();
    },
  },
];

/** Waits until the other nodes flag node `index` as failed: it was cut off or paused past the node timeout. */
async function flaggedFailed(index: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await replicated.failed(index))) {
    if (Date.now() > deadline) throw new Error(`the other nodes do not flag node ${index} as failed after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
failoverFaults.push(
  {
    name: "the clients cut off from the bucket's master, the cluster whole: calls sent meanwhile settle typed, then everything goes on",
    outcome: 'continues',
    unanswered: true,
    inject: async () => {
      failedMaster = await masterNow();
      replicated.cutClients(replicated.nodes.indexOf(failedMaster));
    },
    heal: async () => {
      replicated.rejoin();
      await replicated.settled();
    },
  },
  {
    name: 'a seeded schedule of three cuts and pauses of random nodes, masters and replicas, each held until the others flag the node failed',
    outcome: 'may-lose',
    inject: async () => {
      const seed = Number(process.env.WEFT_SEED ?? Math.floor(Math.random() * 2 ** 31));
      const random = seededRandom(seed);
      const steps: string[] = [];
      for (let step = 0; step < 3; step++) {
        const index = Math.floor(random() * replicated.nodes.length);
        const node = replicated.nodes[index] as RedisServer;
        const role = (await replicated.masterOf(bucketKey())) === node ? " (the bucket's master)" : '';
        const cut = random() < 0.5;
        steps.push(`${cut ? 'cut' : 'pause'} node ${index}${role}`);
        if (cut) replicated.isolate(index);
        else await node.pause();
        try {
          await flaggedFailed(index);
        } finally {
          if (cut) replicated.rejoin();
          else node.resume();
        }
        await replicated.settled();
      }
      console.log(`[redis-cluster partitions] schedule (seed ${seed}, replay with WEFT_SEED): ${steps.join(', ')}`);
    },
    heal: async () => {
      replicated.rejoin();
      for (const node of replicated.nodes) node.resume();
      await replicated.settled();
    },
  },
);

if (redisMissing !== undefined) describe.skip(`kv faults: redis-cluster (${redisMissing})`, () => undefined);
else {
  // The default run cuts the master off (the fault that loses the most writes); WEFT_LONG=1 also pauses it, kills it,
  // cuts the clients off from it and runs a seeded schedule, and runs them all on a user's ioredis.
  describeKvFaults('redis-cluster with replicas, automatic failover (default client)', {
    setup: async () => {
      replicated = await startRedisCluster({ replicas: 1, persistence: 'aof', links: true });
    },
    teardown: async () => {
      replicated.rejoin();
      await replicated.stop();
    },
    faults: long ? failoverFaults : failoverFaults.filter((fault) => fault.name.includes('cut off')),
    open: (bucket) => {
      replicatedBucket = bucket;
      return openRedisKv({ cluster: replicated.startupNodes, bucket, ...timing });
    },
  });
  if (long) {
    describeKvFaults("redis-cluster with replicas, automatic failover (user's ioredis)", {
      setup: async () => {
        replicated = await startRedisCluster({ replicas: 1, persistence: 'aof', links: true });
      },
      teardown: async () => {
        for (const client of userClients.splice(0)) client.disconnect();
        await replicated.stop();
      },
      faults: failoverFaults,
      open: (bucket) => {
        replicatedBucket = bucket;
        const client = ioredisClient({ cluster: replicated.startupNodes });
        userClients.push(client);
        return openRedisKv({ client, bucket, ...timing });
      },
    });
  }
  describeKvFaults('redis-cluster (default client)', {
    setup: async () => {
      nodes = await startRedisCluster({ persistence: 'aof' });
    },
    teardown: () => nodes.stop(),
    faults: clusterFaults,
    open: (bucket) => openRedisKv({ cluster: nodes.startupNodes, bucket, ...timing }),
  });
  describeKvFaults("redis-cluster (user's ioredis)", {
    setup: async () => {
      nodes = await startRedisCluster({ persistence: 'aof' });
    },
    teardown: async () => {
      for (const client of userClients.splice(0)) client.disconnect();
      await nodes.stop();
    },
    faults: clusterFaults,
    open: (bucket) => {
      const client = ioredisClient({ cluster: nodes.startupNodes });
      userClients.push(client);
      return openRedisKv({ client, bucket, ...timing });
    },
  });
}
