import type { Cluster, Redis } from 'ioredis';
import { type RedisConnection, scriptRunner, type Waker } from './connection.js';
import { keySlot } from './layout.js';

/** An ioredis `Redis` or `Cluster` client. */
export type IoredisClient = Redis | Cluster;

/**
 * The driver's view of a caller's ioredis client, used as the caller
 * configured it and left open when the handle closes.
 */
export function ioredisConnection(client: IoredisClient): RedisConnection {
  // Not `instanceof`: the user's client may come from another copy of ioredis (another major) than this package's.
  const cluster = (client as { isCluster?: boolean }).isCluster === true;
  const stopSettling = settleUnansweredOnClose(client, cluster);
  const runScript = scriptRunner((command, scriptOrSha, rest, binary) =>
    binary ? client.callBuffer(command, scriptOrSha, ...rest) : client.call(command, scriptOrSha, ...rest),
  );
  return {
    library: 'ioredis',
    hashFields: (key, fields) => client.hmgetBuffer(key, ...fields),
    async hashFieldsOfMany(keys, fields, binary) {
      if (keys.length === 0) return [];
      const command = binary ? 'hmgetBuffer' : 'hmget';
      const results = (await client.pipeline(keys.map((key) => [command, key, ...fields])).exec()) ?? [];
      return results.map(([error, value]) => {
        if (error) throw error;
        return value as Array<Buffer | string | null>;
      });
    },
    runScript,
    async waitForReplicas(key, replicas, timeoutMs) {
      // On a cluster, WAIT goes to the connection of the master that serves the key's slot: the one its scripts ran on.
      const node = cluster ? masterOf(client as Cluster, key) : (client as Redis);
      return Number(await node.call('WAIT', replicas, timeoutMs));
    },
    rangeByLex: (key, low, high, count) => client.zrangebylex(key, low, high, 'LIMIT', 0, count),
    async *scanMasters(pattern) {
      const nodes = cluster ? (client as Cluster).nodes('master') : [client as Redis];
      for (const node of nodes) {
        let cursor = '0';
        do {
          const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          cursor = next;
          if (found.length > 0) yield found;
        } while (cursor !== '0');
      }
    },
    async unlink(keys) {
      if (keys.length > 0) await client.unlink(...keys);
    },
    waker(name) {
      // The connection sits in XREAD BLOCK, so the server does not see a polite close until the block ends:
      // tear it down at once when the watch ends (disconnectTimeout) instead of after ioredis' default 2 s.
      // A blocked read is safe to send again after a reconnect (it changes nothing), unlike the writes of the main
      // connection: re-sending it keeps the wait alive across a restart instead of dropping it unsettled.
      const duplicate: IoredisClient = cluster
        ? (client as Cluster).duplicate(undefined, {
            redisOptions: { connectionName: name, disconnectTimeout: 1, autoResendUnfulfilledCommands: true },
            lazyConnect: false,
          })
        : (client as Redis).duplicate({
            connectionName: name,
            lazyConnect: false,
            maxRetriesPerRequest: null,
            disconnectTimeout: 1,
            autoResendUnfulfilledCommands: true,
          });
      return ioredisWaker(duplicate);
    },
    async close() {
      // The client is the caller's: it stays open.
      stopSettling();
    },
  };
}

/** ioredis' queue of commands sent on a connection and waiting for their replies (not in its typings). */
interface SentCommands {
  readonly commandQueue?: { toArray(): Array<{ command: { reject(error: Error): void } }> };
}

/**
 * With `autoResendUnfulfilledCommands: false` (how the docs advise users to
 * make their clients: a re-sent create or update would misreport its own success),
 * ioredis drops the commands that were waiting for replies when a connection
 * closes and reconnects within `maxRetriesPerRequest`, without settling
 * them: a write in flight across a Redis restart would never settle. This
 * rejects them when the connection closes, as ioredis does when it gives up
 * (`Connection is closed.`, which the backend reports as `Indeterminate` for a
 * write). Connections that re-send their unanswered commands are left alone.
 *
 * @returns a function that removes the listeners
 */
function settleUnansweredOnClose(client: IoredisClient, cluster: boolean): () => void {
  const watched: Array<[Redis, () => void]> = [];
  const watch = (connection: Redis) => {
    if (connection.options.autoResendUnfulfilledCommands !== false) return;
    const onClose = () => {
      for (const item of (connection as unknown as SentCommands).commandQueue?.toArray() ?? []) {
        item.command.reject(new Error('Connection is closed.'));
      }
    };
    connection.on('close', onClose);
    watched.push([connection, onClose]);
  };
  if (!cluster) {
    watch(client as Redis);
    return () => {
      for (const [connection, onClose] of watched) connection.off('close', onClose);
    };
  }
  for (const node of (client as Cluster).nodes('all')) watch(node);
  const onNode = (node: Redis) => watch(node);
  client.on('+node', onNode);
  return () => {
    client.off('+node', onNode);
    for (const [connection, onClose] of watched) connection.off('close', onClose);
  };
}

/**
 * A watch's blocking connection. Its failures surface through the wait (and
 * its deadline), never as unhandled `error` events; a wait also ends when
 * the connection closes, so the watch reads again at once after a restart
 * instead of when the re-sent block ends.
 */
function ioredisWaker(client: IoredisClient): Waker {
  client.on('error', () => undefined);
  let closed: (() => void) | undefined;
  client.on('close', () => closed?.());
  return {
    waitForEntry(stream: string, after: string, blockMs: number) {
      return new Promise<unknown>((resolve, reject) => {
        closed = () => resolve(null);
        client.xread('COUNT', 1, 'BLOCK', blockMs, 'STREAMS', stream, after).then(resolve, reject);
      }).finally(() => {
        closed = undefined;
      });
    },
    disconnect: () => client.disconnect(),
  };
}

/** The connection ioredis keeps to the master that serves `key`'s slot now. */
function masterOf(cluster: Cluster, key: string): Redis {
  const address = (cluster as unknown as { slots: ReadonlyArray<readonly string[] | undefined> }).slots[keySlot(key)]?.[0];
  const node = cluster.nodes('master').find((candidate) => `${candidate.options.host}:${candidate.options.port}` === address);
  if (node === undefined) throw new Error(`no master is known for the slot of '${key}' (${address ?? 'unassigned'})`);
  return node;
}
