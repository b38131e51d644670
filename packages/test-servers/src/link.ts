import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** Options of {@link startLink}. */
export interface LinkOptions {
  /** The loopback port the link forwards to. */
  readonly target: number;
  /** @default a free port picked by the system */
  readonly port?: number;
}

/**
 * A TCP link on loopback between clients and a server, that a test can make
 * fail the ways networks fail: connections reset, traffic dropped in either
 * direction (a partition that leaves sockets open), or delayed.
 */
export interface Link {
  /** Where clients connect instead of the server. */
  readonly port: number;
  /** Resets every open connection (both sides see ECONNRESET); new ones go through. */
  reset(): void;
  /**
   * Holds all traffic from now on, in both directions, with connections
   * left open: a partition shorter than TCP's own timeouts, during which
   * nothing arrives and nothing fails. {@link heal} delivers what was held,
   * in order, as TCP's retransmissions would.
   */
  partition(): void;
  /**
   * Holds, as {@link partition} does, only the connections made from
   * `address` (a loopback address a server binds its outgoing connections
   * to): one peer cut off, the others' traffic flowing.
   */
  partitionFrom(address: string): void;
  /** Ends every partition: what was held is delivered and traffic flows again. */
  heal(): void;
  /** Delays every chunk by `ms` in both directions (`0` to stop), never out of order. */
  delay(ms: number): void;
  /**
   * Points the link at another loopback port, as a failover moves an
   * address to a promoted replica: open connections are reset, new ones go
   * to `target`.
   */
  retarget(target: number): void;
  /** Connections open through the link now. */
  readonly connections: number;
  /** Closes the link and every connection through it. */
  close(): Promise<void>;
}

/**
 * Starts a fault-injecting TCP link to `target` on 127.0.0.1. Loopback only:
 * it never forwards anywhere else.
 */
/** One connection through a link: what it holds while it is cut off, in order. */
interface Pair {
  readonly client: Socket;
  readonly server: Socket;
  /** Where the connection came from. */
  readonly source: string;
  readonly held: Array<{ to: Socket; chunk: Buffer }>;
}

export function startLink(options: LinkOptions): Promise<Link> {
  const pairs = new Set<Pair>();
  let partitioned = false;
  const cutSources = new Set<string>();
  let delayMs = 0;
  let target = options.target;
  const send = (pair: Pair, to: Socket, chunk: Buffer) => {
    if (to.destroyed) return;
    if (partitioned || cutSources.has(pair.source) || pair.held.length > 0) pair.held.push({ to, chunk });
    else to.write(chunk);
  };
  const forward = (pair: Pair, from: Socket, to: Socket) => {
    // Delayed chunks leave in the order they came, whatever the delay was when each came (changing it never
    // reorders the stream).
    const queue: Array<{ due: number; chunk: Buffer }> = [];
    let timer: NodeJS.Timeout | undefined;
    const pump = () => {
      timer = undefined;
      const now = performance.now();
      while (queue.length > 0 && (queue[0]?.due ?? 0) <= now) send(pair, to, (queue.shift() as { chunk: Buffer }).chunk);
      if (queue.length > 0) timer = setTimeout(pump, Math.max(0, (queue[0]?.due ?? now) - now));
    };
    from.on('data', (chunk: Buffer) => {
      if (delayMs === 0 && queue.length === 0) return send(pair, to, chunk);
      const due = Math.max(performance.now() + delayMs, queue.at(-1)?.due ?? 0);
      queue.push({ due, chunk });
      if (timer === undefined) timer = setTimeout(pump, Math.max(0, due - performance.now()));
    });
  };
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: target });
    const pair: Pair = { client, server: upstream, source: client.remoteAddress ?? '', held: [] };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    forward(pair, client, upstream);
    forward(pair, upstream, client);
  });
  /** Resets every open connection: both sides see ECONNRESET. */
  const resetAll = () => {
    for (const pair of [...pairs]) {
      pair.client.resetAndDestroy();
      pair.server.resetAndDestroy();
      pairs.delete(pair);
    }
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      const address = server.address();
      if (typeof address !== 'object' || address === null) return reject(new Error('the link has no address'));
      resolve({
        port: address.port,
        reset: resetAll,
        partition() {
          partitioned = true;
        },
        partitionFrom(address: string) {
          cutSources.add(address);
        },
        heal() {
          partitioned = false;
          cutSources.clear();
          for (const pair of pairs) for (const { to, chunk } of pair.held.splice(0)) if (!to.destroyed) to.write(chunk);
        },
        delay(ms: number) {
          delayMs = ms;
        },
        retarget(port: number) {
          target = port;
          resetAll();
        },
        get connections() {
          return pairs.size;
        },
        close() {
          for (const pair of pairs) {
            pair.client.destroy();
            pair.server.destroy();
          }
          pairs.clear();
          return new Promise<void>((done) => server.close(() => done()));
        },
      });
    });
  });
}
