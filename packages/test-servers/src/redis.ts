import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { type Link, startLink } from './link.js';
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

/**
 * How a cluster node's bus goes through a link: the port it announces for
 * its bus (the link's), and the loopback address its own outgoing
 * connections come from, so links can tell its traffic from the others'.
 */
interface BusLink {
  readonly busPort: number;
  readonly announceBusPort: number;
  /** The port it announces for clients and replicas (a link's). */
  readonly announcePort: number;
  readonly sourceAddress: string;
}

async function launchRedis(options: RedisServerOptions, clusterEnabled: boolean, bus?: BusLink): Promise<RedisServer> {
  const binary = findBinary('redis-server');
  if (binary === undefined) throw new Error(redisUnavailable());
  const port = options.port ?? (await freePort());
  const busPort = clusterEnabled ? (bus?.busPort ?? (await freePort())) : 0;
  const ownsDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? makeDataDir('redis');
  mkdirSync(dataDir, { recursive: true });
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
          ...(bus === undefined
            ? []
            : // Protected mode takes loopback addresses other than 127.0.0.1 for remote ones (a replica's link).
              [
                '--cluster-announce-bus-port',
                String(bus.announceBusPort),
                '--cluster-announce-port',
                String(bus.announcePort),
                '--bind-source-addr',
                bus.sourceAddress,
                '--protected-mode',
                'no',
              ]),
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

/** A Redis Cluster on loopback, every slot assigned. */
export interface RedisCluster {
  /** Every node: the masters first, then their replicas (roles change with failovers: see {@link masterOf}). */
  readonly nodes: readonly RedisServer[];
  /** `{ host, port }` of every node, for ioredis `new Cluster(startupNodes)`. */
  readonly startupNodes: ReadonlyArray<{ host: string; port: number }>;
  /**
   * The node that is master of `key`'s slot now, as the running nodes see it
   * (none during a failover); `excluding` a node that is not asked (one cut
   * off still takes itself for the master).
   */
  masterOf(key: string, excluding?: RedisServer): Promise<RedisServer | undefined>;
  /**
   * Cuts node `index` off from every other node (started with `links`):
   * its cluster bus and replication traffic is held both ways, connections
   * left open; clients still reach it.
   */
  isolate(index: number): void;
  /**
   * Cuts the clients (every connection from 127.0.0.1) off from node
   * `index` (started with `links`); the nodes still reach each other.
   */
  cutClients(index: number): void;
  /** Ends every cut {@link isolate} and {@link cutClients} made: what was held is delivered, in order. */
  rejoin(): void;
  /** Whether every other running node flags node `index` as failed (cut off or paused past the node timeout). */
  failed(index: number): Promise<boolean>;
  /**
   * Waits until every running node reports `cluster_state:ok`, knows every
   * node, and every replica's link to its master is up: a failover is
   * over and a restarted node has joined again.
   */
  settled(timeoutMs?: number): Promise<void>;
  /** Stops every node and removes their data directories. */
  stop(): Promise<void>;
}

/**
 * Starts a Redis Cluster of `masters` nodes (default 3; `persistence` as
 * for one server) with `replicas` replicas each (default none), splits the
 * 16384 slots evenly between the masters and waits until every node reports
 * `cluster_state:ok` and every replica has synchronised. With replicas, a
 * master that fails for the node timeout (2 s) is replaced by its replica.
 * With `links`, every node's cluster bus and client port are reached
 * through links of their own (the nodes announce the links' ports, so
 * cluster clients and replicas go through them too) and each node's
 * outgoing connections come from a loopback address of its own (127.0.0.10
 * and up), so {@link RedisCluster.isolate} can cut one node off the others
 * while clients still reach it.
 */
export async function startRedisCluster(
  options: {
    masters?: number;
    replicas?: number;
    persistence?: RedisServerOptions['persistence'];
    links?: boolean;
    /** Each node's data directory (node 0, 1, ...), instead of new temporary ones. */
    dataDir?: (node: number) => string;
    /** More `--name value` arguments for every node. */
    args?: readonly string[];
  } = {},
): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const count = masters * (1 + (options.replicas ?? 0));
  const persistence = options.persistence ?? 'none';
  let busLinks: Link[] = [];
  let clientLinks: Link[] = [];
  let busPorts: number[] = [];
  const sourceAddress = (index: number) => `127.0.0.${10 + index}`;
  const nodes = await retryingPortClash(async () => {
    busLinks = [];
    clientLinks = [];
    busPorts = [];
    const ports: number[] = [];
    if (options.links === true) {
      for (let index = 0; index < count; index++) {
        busPorts.push(await freePort());
        ports.push(await freePort());
        busLinks.push(await startLink({ target: busPorts[index] as number }));
        clientLinks.push(await startLink({ target: ports[index] as number }));
      }
    }
    const launched = await Promise.allSettled(
      Array.from({ length: count }, (_, index) => {
        const busLink = busLinks[index];
        const clientLink = clientLinks[index];
        const own = {
          persistence,
          ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir(index) }),
          ...(options.args === undefined ? {} : { args: options.args }),
        };
        if (busLink === undefined || clientLink === undefined) return launchRedis(own, true);
        return launchRedis({ ...own, port: ports[index] as number }, true, {
          busPort: busPorts[index] as number,
          announceBusPort: busLink.port,
          announcePort: clientLink.port,
          sourceAddress: sourceAddress(index),
        });
      }),
    );
    const started = launched.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const failure = launched.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failure === undefined) return started;
    await Promise.all(started.map((node) => node.stop()));
    await Promise.all([...busLinks, ...clientLinks].map((link) => link.close()));
    throw failure.reason;
  });
  const announcedBusPort = (index: number) => busLinks[index]?.port ?? (nodes[index] as RedisServer).clusterBusPort;
  const stop = async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    await Promise.all([...busLinks, ...clientLinks].map((link) => link.close()));
  };
  try {
    const slotsPerNode = Math.ceil(16384 / masters);
    for (const [index, node] of nodes.slice(0, masters).entries()) {
      const first = index * slotsPerNode;
      const last = Math.min(16383, first + slotsPerNode - 1);
      await expectOk(node.port, ['CLUSTER', 'ADDSLOTSRANGE', String(first), String(last)]);
    }
    const [seed] = nodes as [RedisServer];
    for (const node of nodes.slice(1)) {
      await expectOk(node.port, ['CLUSTER', 'MEET', '127.0.0.1', String(seed.port), String(announcedBusPort(0))]);
    }
    const settled = (timeoutMs = 30_000) => clusterSettled(nodes, timeoutMs);
    await settled();
    // Replica i follows master i modulo the number of masters, once it knows the master's id.
    for (const [index, replica] of nodes.slice(masters).entries()) {
      const master = nodes[index % masters] as RedisServer;
      const id = (await redisCommand(master.port, ['CLUSTER', 'MYID'])).split('\r\n')[1] as string;
      await expectOk(replica.port, ['CLUSTER', 'REPLICATE', id]);
    }
    await settled();
    /** The node at an address of CLUSTER NODES (`ip:port@bus`; with links, nodes announce their client link's port). */
    const nodeAt = (address: string | undefined): RedisServer | undefined => {
      const announced = Number(address?.split('@')[0]?.split(':')[1]);
      const linked = clientLinks.findIndex((link) => link.port === announced);
      return linked < 0 ? nodes.find((node) => node.port === announced) : nodes[linked];
    };
    const masterOf = async (key: string, excluding?: RedisServer): Promise<RedisServer | undefined> => {
      const live = nodes.filter((node) => node.process.running && node !== excluding);
      for (const node of live) {
        try {
          const slot = Number((await redisCommand(node.port, ['CLUSTER', 'KEYSLOT', key], 1000)).slice(1));
          for (const line of (await bulkReply(node.port, ['CLUSTER', 'NODES'])).split('\n')) {
            const [, address, flags, , , , , , ...ranges] = line.split(' ');
            if (!flags?.split(',').includes('master') || flags.includes('fail')) continue;
            const serves = ranges.some((range) => {
              const [low, high = low] = range.split('-').map(Number);
              return (low as number) <= slot && slot <= (high as number);
            });
            const found = nodeAt(address);
            if (serves && found !== undefined) return found;
          }
        } catch {
          // a node that does not answer: ask the next one
        }
      }
      return undefined;
    };
    const isolate = (index: number) => {
      if (busLinks.length === 0) throw new Error('isolate() needs a cluster started with links: true');
      for (const [other, link] of busLinks.entries()) {
        if (other === index) link.partition();
        else link.partitionFrom(sourceAddress(index));
      }
      // Replication between it and the others is cut too; clients (from 127.0.0.1) still reach every node.
      for (const [other, link] of clientLinks.entries()) {
        if (other === index) for (const peer of nodes.keys()) if (peer !== index) link.partitionFrom(sourceAddress(peer));
        if (other !== index) link.partitionFrom(sourceAddress(index));
      }
    };
    const cutClients = (index: number) => {
      const link = clientLinks[index];
      if (link === undefined) throw new Error('cutClients() needs a cluster started with links: true');
      link.partitionFrom('127.0.0.1');
    };
    const rejoin = () => {
      for (const link of [...busLinks, ...clientLinks]) link.heal();
    };
    const failed = async (index: number): Promise<boolean> => {
      const target = nodes[index] as RedisServer;
      const others = nodes.filter((node, other) => other !== index && node.process.running);
      const views = await Promise.all(
        others.map(async (node) => {
          const lines = (await bulkReply(node.port, ['CLUSTER', 'NODES'])).split('\n');
          return lines.some((line) => {
            const [, address, flags] = line.split(' ');
            return nodeAt(address) === target && (flags?.split(',').includes('fail') ?? false);
          });
        }),
      );
      return views.length > 0 && views.every(Boolean);
    };
    return {
      nodes,
      startupNodes: nodes.map((node) => ({ host: '127.0.0.1', port: node.port })),
      masterOf,
      isolate,
      cutClients,
      rejoin,
      failed,
      settled,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Waits until every running node of a cluster reports ok, knows every node, and every replica's link is up. */
async function clusterSettled(nodes: readonly RedisServer[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: string[] = [];
  for (;;) {
    const live = nodes.filter((node) => node.process.running);
    try {
      last = await Promise.all(
        live.map(async (node) => (await bulkReply(node.port, ['CLUSTER', 'INFO'])) + (await bulkReply(node.port, ['INFO', 'replication']))),
      );
      const ready = last.every(
        (info) =>
          info.includes('cluster_state:ok') &&
          info.includes(`cluster_known_nodes:${nodes.length}`) &&
          (!info.includes('role:slave') || info.includes('master_link_status:up')),
      );
      if (ready) return;
    } catch (error) {
      last = [String(error)];
    }
    if (Date.now() > deadline) throw new Error(`Redis Cluster did not settle:\n${last.join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The text of a bulk-string reply (CLUSTER NODES, INFO). */
async function bulkReply(port: number, args: readonly string[]): Promise<string> {
  const reply = await redisCommand(port, args, 2000);
  if (!reply.startsWith('$')) throw new Error(`redis ${args.join(' ')} on port ${port}: ${reply.trim()}`);
  return reply.slice(reply.indexOf('\r\n') + 2);
}

async function expectOk(port: number, args: readonly string[]): Promise<void> {
  const reply = await redisCommand(port, args);
  if (!reply.startsWith('+OK')) throw new Error(`redis ${args.join(' ')} on port ${port} failed: ${reply.trim()}`);
}
