import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

/**
 * Which nats-server to run: `system` is the one on PATH (Debian's 2.9 line
 * here), `current` the pinned current line and `previous` the pinned 2.12
 * line (the one Jepsen analysed, run by `WEFT_LONG=1`), each built by
 * `scripts/install-nats-server.sh [previous]` with `go install` into the
 * git-ignored `.cache/`.
 */
export type NatsLine = 'system' | 'current' | 'previous';

/** The pinned patch of the current nats-server line. */
export const currentNatsVersion = '2.15.3';

/** The pinned patch of the previous line, 2.12. */
export const previousNatsVersion = '2.12.15';

/** Where a pinned line's binary lives: `WEFT_NATS_SERVER_CURRENT` (or `_PREVIOUS`), else the repository's cache. */
export function pinnedNatsBinary(line: Exclude<NatsLine, 'system'>): string {
  const version = line === 'current' ? currentNatsVersion : previousNatsVersion;
  return (
    process.env[`WEFT_NATS_SERVER_${line.toUpperCase()}`] ??
    fileURLToPath(new URL(`../../../.cache/nats-server-v${version}/nats-server`, import.meta.url))
  );
}

/** Where the current line's binary lives. */
export function currentNatsBinary(): string {
  return pinnedNatsBinary('current');
}

function natsBinary(line: NatsLine): string | undefined {
  if (line === 'system') return findBinary('nats-server');
  const binary = pinnedNatsBinary(line);
  try {
    accessSync(binary, constants.X_OK);
    return binary;
  } catch {
    return undefined;
  }
}

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Which server line to run. @default 'system' */
  readonly line?: NatsLine;
  /** Client port. @default a free port */
  readonly port?: number;
  /** JetStream store directory. @default a new temporary directory, removed by `stop()` */
  readonly storeDir?: string;
  /** Server name (JetStream clusters need unique names). @default derived from the port */
  readonly name?: string;
  /** Extra command-line arguments. */
  readonly args?: readonly string[];
  /** Also listen for WebSocket clients (plain `ws://`, on a free loopback port): see {@link NatsServer.wsUrl}. */
  readonly websocket?: boolean;
}

/** A running `nats-server` with JetStream on 127.0.0.1. */
export interface NatsServer extends ServerControls {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  /** The `ws://` URL of its WebSocket listener, when started with `websocket: true`. */
  readonly wsUrl?: string;
  readonly monitorPort: number;
  readonly storeDir: string;
  /** The server's version, e.g. `2.9.10`, read from its monitoring endpoint. */
  readonly version: string;
  readonly process: ServerProcess;
  /** Stops it gracefully and removes a store directory it created. */
  stop(): Promise<void>;
}

export function natsUnavailable(line: NatsLine = 'system'): string | undefined {
  if (line === 'system') return missingBinary('nats-server');
  if (natsBinary(line) !== undefined) return undefined;
  const version = line === 'current' ? currentNatsVersion : previousNatsVersion;
  const script = line === 'current' ? 'bash scripts/install-nats-server.sh' : 'bash scripts/install-nats-server.sh previous';
  return `nats-server ${version} not found at ${pinnedNatsBinary(line)}: build it with \`${script}\` (needs Go) to run these tests`;
}

function httpJson(port: number, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const request = get({ host: '127.0.0.1', port, path, timeout: 2000 }, (response) => {
      let data = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        data += chunk;
      });
      response.on('end', () => {
        try {
          resolve({ status: response.statusCode ?? 0, body: JSON.parse(data) });
        } catch (error) {
          reject(error);
        }
      });
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', reject);
  });
}

interface ClusterSpec {
  readonly clusterName: string;
  readonly clusterPort: number;
  readonly routes: readonly number[];
}

async function launchNats(options: NatsServerOptions, cluster?: ClusterSpec): Promise<NatsServer> {
  const line = options.line ?? 'system';
  const binary = natsBinary(line);
  if (binary === undefined) throw new Error(natsUnavailable(line));
  const port = options.port ?? (await freePort());
  const monitorPort = await freePort();
  const ownsStore = options.storeDir === undefined;
  const storeDir = options.storeDir ?? makeDataDir('nats');
  const name = options.name ?? `weft-nats-${port}`;
  // The WebSocket listener has no command-line flag: it goes in a configuration file, the flags beside it.
  const wsPort = options.websocket === true ? await freePort() : undefined;
  const configFile = join(storeDir, 'websocket.conf');
  mkdirSync(storeDir, { recursive: true });
  if (wsPort !== undefined) writeFileSync(configFile, `websocket {\n  listen: "127.0.0.1:${wsPort}"\n  no_tls: true\n}\n`);
  const args = () => [
    ...(wsPort === undefined ? [] : ['-c', configFile]),
    ...['-a', '127.0.0.1', '-p', String(port), '-m', String(monitorPort), '-js', '-sd', storeDir, '-n', name],
    ...(cluster === undefined
      ? []
      : [
          '--cluster_name',
          cluster.clusterName,
          '--cluster',
          `nats://127.0.0.1:${cluster.clusterPort}`,
          '--routes',
          cluster.routes.map((route) => `nats://127.0.0.1:${route}`).join(','),
        ]),
    ...(options.args ?? []),
  ];
  const serverProcess = new ServerProcess({
    binary,
    args,
    logFile: join(storeDir, 'nats-server.log'),
    // A clustered node reports healthy only once JetStream has a meta leader.
    ready: async () => (await httpJson(monitorPort, '/healthz')).status === 200,
    readyTimeoutMs: 30_000,
  });
  await serverProcess.start();
  const varz = (await httpJson(monitorPort, '/varz')).body as { version?: string };
  return {
    name,
    port,
    url: `nats://127.0.0.1:${port}`,
    ...(wsPort === undefined ? {} : { wsUrl: `ws://127.0.0.1:${wsPort}` }),
    monitorPort,
    storeDir,
    version: varz.version ?? 'unknown',
    process: serverProcess,
    stop: async () => {
      await serverProcess.stop();
      if (ownsStore) removeDir(storeDir);
    },
    ...serverControls(serverProcess, storeDir, 'nats-server.log', 'nats'),
  };
}

/**
 * Starts `nats-server` with JetStream on a free loopback port with its own
 * store directory, and waits until JetStream answers.
 *
 * @throws when `nats-server` is not on PATH (see {@link natsUnavailable}) or does not start
 */
export function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  // A fixed port is the caller's: only picked ports are tried again.
  return options.port === undefined ? retryingPortClash(() => launchNats(options)) : launchNats(options);
}

/** A JetStream cluster of nodes on loopback. */
export interface NatsCluster {
  readonly nodes: readonly NatsServer[];
  /** Client URLs of every node, for a client's `servers` option. */
  readonly urls: readonly string[];
  /**
   * Cuts node `index` off from every other node (started with `links`):
   * the route traffic in both directions is held, connections stay open,
   * as a network partition shorter than TCP's timeouts leaves them.
   */
  isolate(index: number): void;
  /** Ends every partition {@link isolate} made, and every {@link delay}: what was held is delivered, in order. */
  rejoin(): void;
  /**
   * Delays all route traffic between nodes `a` and `b` by `ms`, both ways
   * (started with `links`): one replica falls behind the others.
   */
  delay(a: number, b: number, ms: number): void;
  /**
   * Waits until every node has routes to all the others and reports itself
   * healthy (caught up with the cluster's JetStream metadata and its
   * streams), as after a partition or a pause healed.
   */
  settled(): Promise<void>;
  /** Stops every node and removes their store directories. */
  stop(): Promise<void>;
}

let clusterCounter = 0;

/** Every node routed to every other and healthy (its monitoring endpoint's /healthz answers 200). */
async function settled(nodes: readonly NatsServer[]): Promise<void> {
  await Promise.all(nodes.map((node) => routedToAll(node, nodes.length - 1)));
  const started = Date.now();
  for (const node of nodes) {
    for (;;) {
      const { status } = await httpJson(node.monitorPort, '/healthz').catch(() => ({ status: 0 }));
      if (status === 200) break;
      if (Date.now() - started > 60_000) throw new Error(`nats-server ${node.name} is not healthy 60 s after the cluster settled`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Waits until `node` has routes to `others` distinct servers (its monitoring endpoint's /routez). */
async function routedToAll(node: NatsServer, others: number): Promise<void> {
  const started = Date.now();
  for (;;) {
    const { body } = await httpJson(node.monitorPort, '/routez').catch(() => ({ body: {} as Record<string, unknown> }));
    const routes = ((body as { routes?: Array<{ remote_id?: string }> }).routes ?? []).map((route) => route.remote_id);
    if (new Set(routes).size >= others) return;
    if (Date.now() - started > 30_000)
      throw new Error(`nats-server ${node.name} has routes to ${new Set(routes).size} of ${others} other nodes after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Starts a JetStream cluster of `nodes` servers (default 3) on loopback and
 * waits until every node is healthy (a meta leader is elected).
 */
export async function startNatsCluster(
  options: {
    nodes?: number;
    name?: string;
    line?: NatsLine;
    links?: boolean;
    /** Each node's store directory (node 0, 1, ...), instead of new temporary ones. */
    storeDir?: (node: number) => string;
    /** More command-line arguments for every node (a `-c` configuration file). */
    args?: readonly string[];
  } = {},
): Promise<NatsCluster> {
  const count = options.nodes ?? 3;
  const clusterName = options.name ?? `weft-${process.pid}-${++clusterCounter}`;
  // Ports are free when picked, but another process may take one before a node binds it: then try new ones.
  return retryingPortClash(async () => {
    const clusterPorts = await Promise.all(Array.from({ length: count }, () => freePort()));
    // With links, every route goes through a link of its own (from node i to node j), and no node advertises a
    // reachable route address, so no route bypasses them by gossip.
    const links: Array<{ from: number; to: number; link: Link }> = [];
    if (options.links === true) {
      for (const [from] of clusterPorts.entries()) {
        for (const [to, target] of clusterPorts.entries()) {
          if (from !== to) links.push({ from, to, link: await startLink({ target }) });
        }
      }
    }
    const routesOf = (index: number) =>
      options.links === true
        ? links.filter((entry) => entry.from === index).map((entry) => entry.link.port)
        : clusterPorts.filter((_, other) => other !== index);
    const launched = await Promise.allSettled(
      clusterPorts.map((clusterPort, index) =>
        launchNats(
          {
            name: `${clusterName}-n${index + 1}`,
            ...(options.line === undefined ? {} : { line: options.line }),
            ...(options.storeDir === undefined ? {} : { storeDir: options.storeDir(index) }),
            args: [...(options.links === true ? ['--cluster_advertise', '127.0.0.1:1'] : []), ...(options.args ?? [])],
          },
          { clusterName, clusterPort, routes: routesOf(index) },
        ),
      ),
    );
    const nodes = launched.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    const failure = launched.find((result): result is PromiseRejectedResult => result.status === 'rejected');
    const closeLinks = () => Promise.all(links.map((entry) => entry.link.close()));
    if (failure !== undefined) {
      await Promise.all(nodes.map((node) => node.stop()));
      await closeLinks();
      throw failure.reason;
    }
    // Healthy means a meta leader exists, which two nodes of three suffice for; a stream of three replicas can be
    // placed only once every node has a route to every other.
    try {
      await settled(nodes);
    } catch (error) {
      await Promise.all(nodes.map((node) => node.stop()));
      await closeLinks();
      throw error;
    }
    return {
      nodes,
      urls: nodes.map((node) => node.url),
      isolate(index: number) {
        if (links.length === 0) throw new Error('isolate() needs a cluster started with links: true');
        for (const entry of links) if (entry.from === index || entry.to === index) entry.link.partition();
      },
      rejoin() {
        for (const entry of links) {
          entry.link.heal();
          entry.link.delay(0);
        }
      },
      delay(a: number, b: number, ms: number) {
        if (links.length === 0) throw new Error('delay() needs a cluster started with links: true');
        for (const entry of links) {
          if ((entry.from === a && entry.to === b) || (entry.from === b && entry.to === a)) entry.link.delay(ms);
        }
      },
      settled: () => settled(nodes),
      stop: async () => {
        await Promise.all(nodes.map((node) => node.stop()));
        await closeLinks();
      },
    };
  });
}
