import { connect } from 'node:net';
import { join } from 'node:path';
import {
  findBinary,
  freePort,
  makeDataDir,
  missingBinary,
  removeDir,
  retryingPortClash,
  type ServerControls,
  ServerProcess,
  serverControls,
} from './process.js';

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** @default a free port */
  readonly port?: number;
  /** Working directory for data files and the log. @default a new temporary directory, removed by `stop()` */
  readonly dataDir?: string;
  /**
   * `none` keeps nothing across restarts (like the default test setup);
   * `aof` writes an append-only file with fsync on every write.
   * @default 'none'
   */
  readonly persistence?: 'none' | 'aof';
  /** Extra `--name value` arguments. */
  readonly args?: readonly string[];
}

/** A running `redis-server` on 127.0.0.1. */
export interface RedisServer extends ServerControls {
  readonly port: number;
  /** The cluster bus port of a cluster node (0 for a standalone server). */
  readonly clusterBusPort: number;
  readonly url: string;
  readonly dataDir: string;
  readonly process: ServerProcess;
  /** Stops it gracefully and removes a data directory it created. */
  stop(): Promise<void>;
}

/** Why Redis tests cannot run here (one line naming what to install), or `undefined`. */
export function redisUnavailable(): string | undefined {
  return missingBinary('redis-server');
}

function encodeCommand(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

/**
 * Sends one command over a fresh connection and returns the raw reply text.
 * Enough for setup and readiness; tests talk to Redis through real clients.
 */
export function redisCommand(port: number, args: readonly string[], timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis ${args[0]} on port ${port} timed out`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(encodeCommand(args)));
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (isCompleteReply(reply)) {
        clearTimeout(timer);
        socket.end();
        resolve(reply);
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

function isCompleteReply(reply: string): boolean {
  if (reply.length < 3 || !reply.endsWith('\r\n')) return false;
  if (reply[0] === '$') {
    const header = reply.indexOf('\r\n');
    const length = Number(reply.slice(1, header));
    return length < 0 || Buffer.byteLength(reply) >= header + 2 + length + 2;
  }
  return reply[0] !== '*';
}

async function launchRedis(options: RedisServerOptions, clusterEnabled: boolean): Promise<RedisServer> {
  const binary = findBinary('redis-server');
  if (binary === undefined) throw new Error(redisUnavailable());
  const port = options.port ?? (await freePort());
  const busPort = clusterEnabled ? await freePort() : 0;
  const ownsDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? makeDataDir('redis');
  const aof = options.persistence === 'aof';
  const args = () => [
    ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dataDir, '--daemonize', 'no', '--save', ''],
    ...['--appendonly', aof ? 'yes' : 'no', '--appendfsync', 'always'],
    // The cluster bus port is picked free too (by default it is the client port + 10000, which may be taken).
    ...(clusterEnabled
      ? [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-node-timeout',
          '2000',
          '--cluster-port',
          String(busPort),
        ]
      : []),
    ...(options.args ?? []),
  ];
  const serverProcess = new ServerProcess({
    binary,
    args,
    logFile: join(dataDir, 'redis-server.log'),
    ready: async () => (await redisCommand(port, ['PING'], 1000)).startsWith('+PONG'),
  });
  await serverProcess.start();
  return {
    port,
    clusterBusPort: busPort,
    url: `redis://127.0.0.1:${port}`,
    dataDir,
    process: serverProcess,
    stop: async () => {
      await serverProcess.stop();
      if (ownsDir) removeDir(dataDir);
    },
    ...serverControls(serverProcess, dataDir, 'redis-server.log', 'redis'),
  };
}

/**
 * Starts `redis-server` on a free loopback port with its own data directory
 * (no persistence unless asked) and waits until it answers PING.
 *
 * @throws when `redis-server` is not on PATH (see {@link redisUnavailable}) or does not start
 */
export function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  // A fixed port is the caller's: only picked ports are tried again.
  return options.port === undefined ? retryingPortClash(() => launchRedis(options, false)) : launchRedis(options, false);
}

/** A Redis Cluster of masters on loopback, every slot assigned. */
export interface RedisCluster {
  readonly nodes: readonly RedisServer[];
  /** `{ host, port }` of every node, for ioredis `new Cluster(startupNodes)`. */
  readonly startupNodes: ReadonlyArray<{ host: string; port: number }>;
  /** Stops every node and removes their data directories. */
  stop(): Promise<void>;
}

/**
 * Starts a Redis Cluster of `masters` nodes (default 3, no replicas; `persistence` as for one server), splits
 * the 16384 slots evenly between them and waits until every node reports
 * `cluster_state:ok`.
 */
export async function startRedisCluster(
  options: { masters?: number; persistence?: RedisServerOptions['persistence'] } = {},
): Promise<RedisCluster> {
  const count = options.masters ?? 3;
  const persistence = options.persistence ?? 'none';
  const nodes = await retryingPortClash(async () => {
    const launched = await Promise.allSettled(Array.from({ length: count }, () => launchRedis({ persistence }, true)));
    const started = launched.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const failure = launched.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure === undefined) return started;
    await Promise.all(started.map((node) => node.stop()));
    throw failure.reason;
  });
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
  };
  try {
    const slotsPerNode = Math.ceil(16384 / count);
    for (const [index, node] of nodes.entries()) {
      const first = index * slotsPerNode;
      const last = Math.min(16383, first + slotsPerNode - 1);
      await expectOk(node.port, ['CLUSTER', 'ADDSLOTSRANGE', String(first), String(last)]);
    }
    const [seed] = nodes as [RedisServer];
    for (const node of nodes.slice(1)) {
      await expectOk(node.port, ['CLUSTER', 'MEET', '127.0.0.1', String(seed.port), String(seed.clusterBusPort)]);
    }
    const deadline = Date.now() + 30_000;
    for (;;) {
      const infos = await Promise.all(nodes.map((node) => redisCommand(node.port, ['CLUSTER', 'INFO'])));
      const ready = infos.every((info) => info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${count}`));
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`Redis Cluster did not converge:\n${infos.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { nodes, startupNodes: nodes.map((node) => ({ host: '127.0.0.1', port: node.port })), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function expectOk(port: number, args: readonly string[]): Promise<void> {
  const reply = await redisCommand(port, args);
  if (!reply.startsWith('+OK')) throw new Error(`redis ${args.join(' ')} on port ${port} failed: ${reply.trim()}`);
}
