import { get } from 'node:http';
import { join } from 'node:path';
import { findBinary, freePort, makeDataDir, missingBinary, removeDir, ServerProcess } from './process.js';

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Client port. @default a free port */
  readonly port?: number;
  /** JetStream store directory. @default a new temporary directory, removed by `stop()` */
  readonly storeDir?: string;
  /** Server name (JetStream clusters need unique names). @default derived from the port */
  readonly name?: string;
  /** Extra command-line arguments. */
  readonly args?: readonly string[];
}

/** A running `nats-server` with JetStream on 127.0.0.1. */
export interface NatsServer {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly monitorPort: number;
  readonly storeDir: string;
  /** The server's version, e.g. `2.9.10`, read from its monitoring endpoint. */
  readonly version: string;
  readonly process: ServerProcess;
  /** Stops it gracefully and removes a store directory it created. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would; the store directory stays for {@link NatsServer.restart}. */
  kill(): Promise<void>;
  /** Starts it again on the same port and store directory. */
  restart(): Promise<void>;
}

/** Why NATS tests cannot run here (one line naming what to install), or `undefined`. */
export function natsUnavailable(): string | undefined {
  return missingBinary('nats-server');
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
  const binary = findBinary('nats-server');
  if (binary === undefined) throw new Error(natsUnavailable());
  const port = options.port ?? (await freePort());
  const monitorPort = await freePort();
  const ownsStore = options.storeDir === undefined;
  const storeDir = options.storeDir ?? makeDataDir('nats');
  const name = options.name ?? `weft-nats-${port}`;
  const args = () => [
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
    monitorPort,
    storeDir,
    version: varz.version ?? 'unknown',
    process: serverProcess,
    stop: async () => {
      await serverProcess.stop();
      if (ownsStore) removeDir(storeDir);
    },
    kill: () => serverProcess.kill(),
    restart: async () => {
      await serverProcess.stop();
      await serverProcess.start();
    },
  };
}

/**
 * Starts `nats-server` with JetStream on a free loopback port with its own
 * store directory, and waits until JetStream answers.
 *
 * @throws when `nats-server` is not on PATH (see {@link natsUnavailable}) or does not start
 */
export function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  return launchNats(options);
}

/** A JetStream cluster of nodes on loopback. */
export interface NatsCluster {
  readonly nodes: readonly NatsServer[];
  /** Client URLs of every node, for a client's `servers` option. */
  readonly urls: readonly string[];
  /** Stops every node and removes their store directories. */
  stop(): Promise<void>;
}

/**
 * Starts a JetStream cluster of `nodes` servers (default 3) on loopback and
 * waits until every node is healthy (a meta leader is elected).
 */
export async function startNatsCluster(options: { nodes?: number; name?: string } = {}): Promise<NatsCluster> {
  const count = options.nodes ?? 3;
  const clusterName = options.name ?? `weft-${process.pid}`;
  const clusterPorts = await Promise.all(Array.from({ length: count }, () => freePort()));
  const nodes = await Promise.all(
    clusterPorts.map((clusterPort, index) =>
      launchNats(
        { name: `${clusterName}-n${index + 1}` },
        { clusterName, clusterPort, routes: clusterPorts.filter((other) => other !== clusterPort) },
      ),
    ),
  );
  return {
    nodes,
    urls: nodes.map((node) => node.url),
    stop: async () => {
      await Promise.all(nodes.map((node) => node.stop()));
    },
  };
}
