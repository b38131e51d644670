import { pause } from '@weft/kv/backend';
import { type RedisArgument, type RedisConnection, scriptRunner, type Waker } from './connection.js';

/**
 * node-redis' per-command options, as far as the backend sets them: which
 * JavaScript type each RESP reply type becomes.
 */
export interface NodeRedisCommandOptions {
  readonly typeMapping?: object;
  readonly timeout?: number;
}

/**
 * A node-redis 5 or 6 client (`createClient()` of `redis` or `@redis/client`),
 * described by the members the backend uses, so that a user's client of
 * either major type-checks without this package depending on node-redis.
 */
export interface NodeRedisClient {
  readonly isOpen: boolean;
  sendCommand(args: ReadonlyArray<RedisArgument>, options?: NodeRedisCommandOptions): Promise<unknown>;
  duplicate(overrides?: { name?: string }): NodeRedisClient;
  connect(): Promise<unknown>;
  destroy(): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** A node-redis 5 or 6 cluster client (`createCluster()`), described by the members the backend uses. */
export interface NodeRedisCluster {
  readonly isOpen: boolean;
  readonly masters: ReadonlyArray<object>;
  nodeClient(node: never): Promise<NodeRedisClient>;
  sendCommand(
    firstKey: RedisArgument | undefined,
    isReadonly: boolean | undefined,
    args: ReadonlyArray<RedisArgument>,
    options?: NodeRedisCommandOptions,
  ): Promise<unknown>;
  duplicate(overrides?: { defaults?: { name?: string } }): NodeRedisCluster;
  connect(): Promise<unknown>;
  destroy(): void;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** RESP's bulk string type (`$`), mapped to Buffers for binary replies. */
const bulkString = 36;
// No timeout of node-redis' own (node-redis 6 gives every command 5 s by default): the handle's deadlines bound each
// operation, and a blocked XREAD waits longer than that on purpose. node-redis 6 arms an AbortSignal.timeout per
// command for it, which cut its pipelined rate to a fifth here.
const binaryReplies: NodeRedisCommandOptions = { typeMapping: { [bulkString]: Buffer }, timeout: 0 };
// Explicitly empty: a client made with `withTypeMapping` must not turn the backend's text replies into Buffers.
const textReplies: NodeRedisCommandOptions = { typeMapping: {}, timeout: 0 };

/** Whether `client` is a node-redis client or cluster (ioredis clients have no `isOpen`). */
export function isNodeRedis(client: object): client is NodeRedisClient | NodeRedisCluster {
  return 'isOpen' in client && 'sendCommand' in client;
}

/** What keeps a node-redis client from serving a bucket, or undefined when nothing does. */
export function nodeRedisProblem(client: NodeRedisClient | NodeRedisCluster): string | undefined {
  if (typeof (client as { withTypeMapping?: unknown }).withTypeMapping !== 'function') {
    return 'this node-redis client is older than 5 (no per-command type mapping): use node-redis 5 or 6, or ioredis';
  }
  if (!client.isOpen) return 'the node-redis client is not connected: call `await client.connect()` before opening the bucket';
  const prefix = (client as { _keyPrefix?: unknown })._keyPrefix;
  if (prefix !== undefined && prefix !== '') {
    return 'a client with keyPrefix is not supported: the scripts build keys on the server (use the namespace option)';
  }
  return undefined;
}

/** How long closing an owned client waits for the commands in flight to be answered before it cuts the connection. */
const closeGraceMs = 1000;

/**
 * The driver's view of a node-redis client, standalone or cluster: raw
 * commands through `sendCommand` with a type mapping per call (Buffers only
 * where the backend reads bytes), the client's own pipelining (the commands
 * of one tick leave in one write), and a duplicate per watch for
 * `XREAD BLOCK`. A caller's client stays open when the handle closes; an
 * `owned` one (the backend made it) is closed with it.
 */
export function nodeRedisConnection(client: NodeRedisClient | NodeRedisCluster, owned = false): RedisConnection {
  const cluster = 'masters' in client;
  // Every command of the backend names a key of one bucket first, which routes it on a cluster.
  const send = cluster
    ? (args: RedisArgument[], options: NodeRedisCommandOptions) =>
        (client as NodeRedisCluster).sendCommand(routingKey(args), false, args, options)
    : (args: RedisArgument[], options: NodeRedisCommandOptions) => (client as NodeRedisClient).sendCommand(args, options);
  return {
    library: 'node-redis',
    hashFields: (key, fields) => send(['HMGET', key, ...fields], binaryReplies) as Promise<Array<Buffer | null>>,
    hashFieldsOfMany(keys, fields, binary) {
      // Commands issued in one tick go out as one pipeline.
      const options = binary ? binaryReplies : textReplies;
      return Promise.all(keys.map((key) => send(['HMGET', key, ...fields], options) as Promise<Array<Buffer | string | null>>));
    },
    runScript: scriptRunner((command, scriptOrSha, rest, binary) =>
      send([command, scriptOrSha, ...rest], binary ? binaryReplies : textReplies),
    ),
    async waitForReplicas(key, replicas, timeoutMs) {
      const args = ['WAIT', String(replicas), String(timeoutMs)];
      // On a cluster, the key routes WAIT to the master that ran the bucket's scripts, over the same connection.
      const reply = cluster
        ? await (client as NodeRedisCluster).sendCommand(key, false, args, textReplies)
        : await (client as NodeRedisClient).sendCommand(args, textReplies);
      return Number(reply);
    },
    rangeByLex: (key, low, high, count) =>
      send(['ZRANGEBYLEX', key, low, high, 'LIMIT', '0', String(count)], textReplies) as Promise<string[]>,
    async *scanMasters(pattern) {
      const nodes = cluster
        ? await Promise.all((client as NodeRedisCluster).masters.map((master) => (client as NodeRedisCluster).nodeClient(master as never)))
        : [client as NodeRedisClient];
      for (const node of nodes) {
        let cursor = '0';
        do {
          const [next, found] = (await node.sendCommand(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000'], textReplies)) as [
            string,
            string[],
          ];
          cursor = next;
          if (found.length > 0) yield found;
        } while (cursor !== '0');
      }
    },
    async unlink(keys) {
      if (keys.length > 0) await send(['UNLINK', ...keys], textReplies);
    },
    waker(name) {
      // The cluster's node options are the user's (credentials, TLS) with the name added.
      const defaults = (client as { _options?: { defaults?: object } })._options?.defaults;
      const duplicate = cluster
        ? (client as NodeRedisCluster).duplicate({ defaults: { ...defaults, name } })
        : (client as NodeRedisClient).duplicate({ name });
      return nodeRedisWaker(duplicate);
    },
    async close() {
      // A caller's client stays open.
      if (!owned) return;
      // close() waits for every command in flight: against a paused server they would never be answered.
      const closing = (client as { close?: () => Promise<void> }).close?.();
      if (closing !== undefined) {
        const giveUp = new AbortController();
        await Promise.race([closing.catch(() => undefined), pause(closeGraceMs, giveUp.signal)]);
        giveUp.abort();
      }
      destroyQuietly(client);
    },
  };
}

/** A script's first key (after the script and the key count), or a command's first argument. */
function routingKey(args: RedisArgument[]): RedisArgument | undefined {
  const command = args[0];
  if (command === 'EVAL' || command === 'EVALSHA') return args[2] === '0' ? undefined : args[3];
  return args[1];
}

/** Destroys a node-redis client, which refuses to be destroyed twice. */
export function destroyQuietly(client: NodeRedisClient | NodeRedisCluster): void {
  try {
    client.destroy();
  } catch {
    // already closed
  }
}

function nodeRedisWaker(client: NodeRedisClient | NodeRedisCluster): Waker {
  const cluster = 'masters' in client;
  let ended = false;
  // Destroyed, not closed: a polite close would wait for the blocked read to end.
  const destroy = () => destroyQuietly(client);
  // The duplicate reconnects by the client's own strategy; its failures surface through the blocked read.
  client.on('error', () => undefined);
  const connecting = client.connect().then(
    () => undefined,
    () => undefined,
  );
  return {
    waitForEntry(stream, after, blockMs) {
      const args = ['XREAD', 'COUNT', '1', 'BLOCK', String(blockMs), 'STREAMS', stream, after];
      // A cluster refuses commands until it knows its slots.
      return connecting.then(() =>
        cluster ? client.sendCommand(stream, false, args, textReplies) : client.sendCommand(args, textReplies),
      );
    },
    disconnect() {
      if (ended) return;
      ended = true;
      // Destroyed once its connect settles: a client destroyed while it connects can still finish connecting and
      // keep that connection (node-redis 5 then refuses a second destroy), and a cluster destroyed while it
      // discovers its nodes keeps the node connections it opens afterwards. A connect that does not settle (the
      // server is down and the client retries) is cut after a second.
      const fallback = setTimeout(destroy, 1000);
      void connecting.then(() => {
        clearTimeout(fallback);
        destroy();
      });
    },
  };
}
