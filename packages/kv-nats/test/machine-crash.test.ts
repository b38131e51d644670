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
 * A single server of the current line in the default run; a 3-node
 * cluster with a bucket of three replicas, every node crashed at once, of
 * the current line and of 2.12 under `WEFT_LONG=1`. Needs root, /dev/fuse
 * and crashfs (`bash scripts/install-crashfs.sh`); skipped, saying why,
 * without them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openNatsKv } from '@weft/kv-nats';
import { checkMachineCrash } from '@weft/kv-testkit';
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
  const started = await startNatsCluster({ line, storeRoot: fs.path, args: ['-c', config] });
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
      },
    });
  } finally {
    await store.close();
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
    }
  }
});
