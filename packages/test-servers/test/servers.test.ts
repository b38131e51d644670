import {
  appendFileSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import {
  crashFsUnavailable,
  freePort,
  missingBinary,
  natsUnavailable,
  redisCommand,
  redisUnavailable,
  startCrashFs,
  startNatsCluster,
  startNatsServer,
  startRedisCluster,
  startRedisServer,
} from '@weft/test-servers';
import { Cluster, Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';

const natsMissing = natsUnavailable();
const redisMissing = redisUnavailable();
if (natsMissing !== undefined) console.warn(`SKIPPING NATS server tests: ${natsMissing}`);
if (redisMissing !== undefined) console.warn(`SKIPPING Redis server tests: ${redisMissing}`);

describe('binaries', () => {
  it('names what to install when a server binary is missing', () => {
    expect(missingBinary('weft-no-such-server')).toMatch(/weft-no-such-server not found on PATH: install it with/);
    expect(missingBinary('nats-server') ?? '').toBe(natsMissing ?? '');
  });

  it('hands out distinct free loopback ports', async () => {
    const ports = await Promise.all([freePort(), freePort(), freePort()]);
    for (const port of ports) expect(port).toBeGreaterThan(0);
  });
});

describe.skipIf(natsMissing !== undefined)('nats-server', () => {
  it('starts with JetStream, keeps its store across kill -9 and restart on the same port, and cleans up on stop', async () => {
    const server = await startNatsServer();
    expect(server.version).toMatch(/^\d+\.\d+\.\d+/);
    const stream = 'KEEP';
    const first = await connect({ servers: server.url });
    const manager = await jetstreamManager(first);
    await manager.streams.add({ name: stream, subjects: ['keep.>'] });
    for (let index = 0; index < 5; index++) await jetstream(first).publish(`keep.${index}`, `m${index}`);
    await first.close();

    const pid = server.process.pid;
    await server.kill();
    expect(server.process.running).toBe(false);
    await server.restart();
    expect(server.process.pid).not.toBe(pid);

    const second = await connect({ servers: server.url });
    const info = await (await jetstreamManager(second)).streams.info(stream);
    expect(info.state.messages).toBe(5);
    await second.close();
    await server.stop();
    expect(existsSync(server.storeDir)).toBe(false);
  });

  it('runs a 3-node JetStream cluster that keeps accepting writes with one node killed', async () => {
    const cluster = await startNatsCluster({ nodes: 3 });
    try {
      const connection = await connect({ servers: [...cluster.urls] });
      const manager = await jetstreamManager(connection);
      await manager.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 });
      await jetstream(connection).publish('r3.before', 'x');
      const victim = cluster.nodes.find((node) => !connection.getServer().includes(String(node.port))) ?? cluster.nodes[2];
      await victim?.kill();
      let published = false;
      for (let attempt = 0; attempt < 50 && !published; attempt++) {
        try {
          await jetstream(connection).publish('r3.after', 'y', { timeout: 2000 });
          published = true;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
      expect(published).toBe(true);
      expect((await manager.streams.info('R3')).state.messages).toBe(2);
      await connection.close();
    } finally {
      await cluster.stop();
    }
  });
});

describe.skipIf(redisMissing !== undefined)('redis-server', () => {
  it('keeps nothing across kill -9 without persistence', async () => {
    const server = await startRedisServer();
    const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await client.connect();
    await client.set('k', 'v');
    client.disconnect();
    await server.kill();
    await server.restart();
    expect(await redisCommand(server.port, ['GET', 'k'])).toBe('$-1\r\n');
    await server.stop();
    expect(existsSync(server.dataDir)).toBe(false);
  });

  it('keeps acknowledged writes across kill -9 with AOF persistence, on the same port', async () => {
    const server = await startRedisServer({ persistence: 'aof' });
    await redisCommand(server.port, ['SET', 'k', 'durable']);
    await server.kill();
    await server.restart();
    expect(await redisCommand(server.port, ['GET', 'k'])).toBe('$7\r\ndurable\r\n');
    await server.stop();
  });

  it('runs a 3-master Redis Cluster with every slot served', async () => {
    const cluster = await startRedisCluster({ masters: 3 });
    try {
      const client = new Cluster([...cluster.startupNodes]);
      const keys = Array.from({ length: 30 }, (_, index) => `key-${index}`);
      for (const key of keys) await client.set(key, key.toUpperCase());
      for (const key of keys) expect(await client.get(key)).toBe(key.toUpperCase());
      const slots = new Set(await Promise.all(keys.map(async (key) => client.cluster('KEYSLOT', key))));
      expect(slots.size).toBeGreaterThan(1);
      const info = await redisCommand(cluster.nodes[0]?.port ?? 0, ['CLUSTER', 'INFO']);
      expect(info).toContain('cluster_size:3');
      client.disconnect();
    } finally {
      await cluster.stop();
    }
  });
});

const crashFsMissing = crashFsUnavailable();
describe.skipIf(crashFsMissing !== undefined)(`crashfs${crashFsMissing ? ` (${crashFsMissing})` : ''}`, () => {
  it('a crash loses what was written since a file was last synced or written back, and keeps names, renames and removals', async () => {
    const fs = await startCrashFs();
    try {
      const at = (name: string) => join(fs.path, name);
      writeFileSync(at('removed'), 'x');
      writeFileSync(at('written-back'), 'kept by the write-back');
      await fs.writeBack();
      unlinkSync(at('removed'));
      appendFileSync(at('written-back'), ', not this');
      mkdirSync(at('dir'));
      writeFileSync(at('dir/unsynced'), 'lost');
      const synced = openSync(at('dir/synced'), 'w');
      writeSync(synced, 'kept');
      fsyncSync(synced);
      writeSync(synced, ' and lost');
      closeSync(synced);
      const renamed = openSync(at('dir/before'), 'w');
      writeSync(renamed, 'renamed');
      fsyncSync(renamed);
      closeSync(renamed);
      renameSync(at('dir/before'), at('dir/after'));

      await fs.crash();
      expect(readFileSync(at('dir/unsynced'), 'utf8')).toBe('');
      expect(readFileSync(at('dir/synced'), 'utf8')).toBe('kept');
      expect(readFileSync(at('dir/after'), 'utf8')).toBe('renamed');
      expect(existsSync(at('dir/before'))).toBe(false);
      expect(existsSync(at('removed'))).toBe(false);
      expect(readFileSync(at('written-back'), 'utf8')).toBe('kept by the write-back');
      // Mounted again: it takes writes as before.
      writeFileSync(at('dir/unsynced'), 'again');
      expect(readFileSync(at('dir/unsynced'), 'utf8')).toBe('again');
    } finally {
      await fs.stop();
    }
  });
});
