/**
 * A machine crash (power loss) under each of JetStream's fsync policies.
 * Killing a server keeps what it wrote (the operating system still has it),
 * so the servers' store directories live on crashfs (`tools/crashfs`), a
 * FUSE file system that loses, on command, what a crash loses: every byte
 * written since the file's last fsync. The bucket and a first set of writes
 * are written back first (as the operating system would within half a
 * minute); then a burst of acknowledged writes, every server killed, the
 * crash, and the servers started again (`checkMachineCrash` in
 * `@weft/kv-testkit`).
 *
 * The default `sync_interval` (two minutes) loses the burst, and weft
 * reports it: what a read finds is printed, the running watch that had
 * delivered those writes fails with `CursorExpired`, and a
 * compare-and-swap naming a lost write's version is refused, also after
 * later writes took its sequence. `sync_interval: always` (an fsync before
 * each acknowledgement) loses nothing: every acknowledged write is read
 * back and the running watch goes on with the next write.
 *
 * A single server of the current line in the default run; under
 * `WEFT_LONG=1`, 3-node clusters with a bucket of three replicas, of the
 * current line and of 2.12: every node crashed at once, and the power loss
 * of one follower (see `minorityLoss`). Needs root, /dev/fuse
 * and crashfs (`bash scripts/install-crashfs.sh`); skipped, saying why,
 * without them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { KvError, KvErrorCode } from '@weft/kv';
import { type NatsKvStore, openNatsKv } from '@weft/kv-nats';
import { checkMachineCrash, whileRetryable } from '@weft/kv-testkit';
import {
  type CrashFs,
  crashFsUnavailable,
  type NatsLine,
  type NatsServer,
  natsUnavailable,
  startCrashFs,
  startNatsCluster,
  startNatsServer,
} from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leaderOf } from './cluster-clauses.js';

const long = process.env.WEFT_LONG === '1';

const policies = [
  { name: 'default sync_interval (2 minutes)', config: '', synced: false },
  { name: 'sync_interval: always', config: 'jetstream { sync_interval: always }\n', synced: true },
] as const;

/** The servers of one run: every node killed at once and started again on the same store. */
interface Deployment {
  readonly urls: string[];
  readonly replicas: number;
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function single(fs: CrashFs, config: string, name: string): Promise<Deployment> {
  const server: NatsServer = await startNatsServer({ line: 'current', storeDir: join(fs.path, name), args: ['-c', config] });
  return {
    urls: [server.url],
    replicas: 1,
    kill: () => server.kill(),
    start: () => server.process.start(),
    stop: () => server.stop(),
  };
}

async function cluster(fs: CrashFs, config: string, line: NatsLine): Promise<Deployment> {
  const started = await startNatsCluster({
    line,
    storeDir: (node) => join(fs.path, `${basename(config, '.conf')}-${node}`),
    args: ['-c', config],
  });
  return {
    urls: [...started.urls],
    replicas: 3,
    kill: async () => {
      await Promise.all(started.nodes.map((node) => node.kill()));
    },
    start: async () => {
      await Promise.all(started.nodes.map((node) => node.process.start()));
    },
    stop: () => started.stop(),
  };
}

/** Crashes every node of `deployment` on `fs` under a bucket of its own; returns how many acknowledged writes were lost. */
async function crashUnder(fs: CrashFs, deployment: Deployment, label: string, synced: boolean): Promise<number> {
  const store = await openNatsKv({ servers: deployment.urls, bucket: 'crash', create: { history: 5, replicas: deployment.replicas } });
  try {
    return await checkMachineCrash(store, {
      label: `nats ${label}`,
      synced,
      writeBack: () => fs.writeBack(),
      crash: async () => {
        await deployment.kill();
        await fs.crash();
        await deployment.start();
        return undefined;
      },
    });
  } finally {
    await store.close();
  }
}

/**
 * Jepsen's minority loss (NATS 2.12.1, December 2025): a write is
 * acknowledged by the leader and one follower while the other follower is
 * cut off; the leader dies and the follower that acknowledged loses its
 * power; it comes back beside the one that was cut off, and the two elect a
 * leader and take a write; then the old leader returns. Under the default
 * `sync_interval` the acknowledging follower lost the burst, the two elect
 * a leader without it, and the old leader's copy is overwritten; under
 * `always` it kept the burst and is elected with it. Each node has a
 * crashfs of its own. Returns how many acknowledged writes were lost.
 */
async function minorityLoss(line: NatsLine, config: string, label: string, synced: boolean): Promise<number> {
  const mounts: CrashFs[] = [];
  try {
    for (let node = 0; node < 3; node++) mounts.push(await startCrashFs());
    const nodes = await startNatsCluster({
      line,
      links: true,
      storeDir: (node) => join((mounts[node] as CrashFs).path, 'store'),
      args: ['-c', config],
    });
    try {
      const creator = await whileRetryable(() =>
        openNatsKv({ servers: [...nodes.urls], bucket: 'minority', create: { history: 5, replicas: 3 } }),
      );
      await creator.close();
      const leaderName = await leaderOf(nodes.urls, 'KV_minority');
      const leader = nodes.nodes.findIndex((node) => node.name === leaderName);
      const [cut, crashed] = [0, 1, 2].filter((node) => node !== leader) as [number, number];
      const at = (node: number) => nodes.nodes[node] as NatsServer;
      // The checked handle reaches the leader and the follower that acknowledges the burst, never the one cut off.
      const store = await openNatsKv({ servers: [at(leader).url, at(crashed).url], bucket: 'minority', timeoutMs: 2000 });
      try {
        return await checkMachineCrash(store, {
          label: `nats ${label}`,
          synced,
          writeBack: async () => {
            for (const mount of mounts) await mount.writeBack();
          },
          beforeBurst: async () => nodes.isolate(cut),
          crash: async () => {
            await at(leader).kill();
            await at(crashed).kill();
            await (mounts[crashed] as CrashFs).crash();
            nodes.rejoin();
            await at(crashed).process.start();
            // The two elect a leader and take a write before the old leader returns.
            const survivors = await whileRetryable(() =>
              openNatsKv({ servers: [at(cut).url, at(crashed).url], bucket: 'minority', timeoutMs: 2000 }),
            );
            try {
              await createOnce(survivors, 'during');
            } finally {
              await survivors.close();
            }
            await at(leader).process.start();
            await nodes.settled();
            return ['during'];
          },
        });
      } finally {
        await store.close();
      }
    } finally {
      nodes.rejoin();
      await nodes.stop();
    }
  } finally {
    for (const mount of mounts) await mount.stop();
  }
}

/** Creates `key` once: an attempt whose answer was lost is settled by the next one's AlreadyExists. */
async function createOnce(store: NatsKvStore, key: string): Promise<void> {
  const deadline = performance.now() + 60_000;
  for (;;) {
    try {
      await store.create(key, new TextEncoder().encode('written by the two'));
      return;
    } catch (error) {
      if (KvError.is(error, KvErrorCode.AlreadyExists)) return;
      const again = KvError.is(error) && (error.retryable || error.code === KvErrorCode.Indeterminate);
      if (!again || performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

const missing = crashFsUnavailable() ?? natsUnavailable('current');
describe.skipIf(missing !== undefined)(`a machine crash under each fsync policy (nats)${missing ? ` (${missing})` : ''}`, () => {
  let fs: CrashFs;
  let configs: string;
  beforeAll(async () => {
    fs = await startCrashFs();
    configs = mkdtempSync(join(tmpdir(), 'weft-crash-config-'));
  });
  afterAll(async () => {
    await fs?.stop();
    if (configs !== undefined) rmSync(configs, { recursive: true, force: true });
  });

  const configFile = (name: string, text: string) => {
    const file = join(configs, `${name}.conf`);
    writeFileSync(file, text);
    return file;
  };

  for (const [index, policy] of policies.entries()) {
    const outcome = policy.synced
      ? 'loses no acknowledged write, and the running watch goes on'
      : 'loses the writes acknowledged since the last write-back; the watch that delivered them fails CursorExpired and compare-and-swap naming one is refused';
    it(`one server, ${policy.name}: ${outcome}`, async () => {
      const deployment = await single(fs, configFile(`single-${index}`, policy.config), `single-${index}`);
      try {
        const lost = await crashUnder(fs, deployment, `single server, ${policy.name}`, policy.synced);
        // Nothing was synced since the write-back: the whole burst is gone.
        if (!policy.synced) expect(lost).toBeGreaterThan(0);
      } finally {
        await deployment.stop();
      }
    }, 120_000);

    for (const line of ['current', 'previous'] as const satisfies readonly NatsLine[]) {
      const absent = natsUnavailable(line);
      it.skipIf(!long || absent !== undefined)(
        `a 3-node cluster of the ${line} line, every node at once, ${policy.name}: ${outcome}${absent ? ` (${absent})` : ''}`,
        async () => {
          const deployment = await cluster(fs, configFile(`cluster-${line}-${index}`, policy.config), line);
          try {
            const lost = await crashUnder(fs, deployment, `3-node cluster of the ${line} line, ${policy.name}`, policy.synced);
            if (!policy.synced) expect(lost).toBeGreaterThan(0);
          } finally {
            await deployment.stop();
          }
        },
        300_000,
      );

      it.skipIf(!long || absent !== undefined)(
        `a 3-node cluster of the ${line} line, the power loss of the follower that acknowledged a burst the other missed, the leader dead, ${policy.name}: ${policy.synced ? 'loses nothing' : 'what is lost is reported'}${absent ? ` (${absent})` : ''}`,
        async () => {
          const lost = await minorityLoss(
            line,
            configFile(`minority-${line}-${index}`, policy.config),
            `3-node cluster of the ${line} line, one follower's power loss, ${policy.name}`,
            policy.synced,
          );
          // The follower that acknowledged lost the burst, and the two elected without it: gone from the cluster.
          if (!policy.synced) expect(lost).toBeGreaterThan(0);
        },
        300_000,
      );
    }
  }
});
