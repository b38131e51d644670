import { createHash } from 'node:crypto';

/** A Lua script with its SHA-1, run with `EVALSHA` and loaded with `EVAL` when the server lacks it. */
export interface RedisScript {
  readonly lua: string;
  readonly sha: string;
}

export function redisScript(lua: string): RedisScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/** A command argument: text or bytes. */
export type RedisArgument = string | Buffer;

/**
 * What the driver asks of a Redis client, one implementation per client
 * library (ioredis, node-redis), standalone or cluster alike. Every key a
 * bucket uses carries its hash tag, so a command's first key routes it.
 * Errors are the library's own; the driver maps them with `toKvError`.
 */
export interface RedisConnection {
  /** The client library, for messages. */
  readonly library: 'ioredis' | 'node-redis';
  /** `HMGET` with binary replies; `null` for a missing field or key. */
  hashFields(key: string, fields: readonly string[]): Promise<Array<Buffer | null>>;
  /** `HMGET` of many keys in one round trip: binary replies, or text ones when `binary` is false. */
  hashFieldsOfMany(keys: readonly string[], fields: readonly string[], binary: boolean): Promise<Array<Array<Buffer | string | null>>>;
  /**
   * Runs a script: `EVALSHA`, or `EVAL` on its first use on this connection
   * and when the server answers `NOSCRIPT` (after a restart, a failover or
   * `SCRIPT FLUSH`). Bulk strings come back as Buffers when `binary` is set.
   */
  runScript(script: RedisScript, keys: readonly string[], args: readonly RedisArgument[], binary: boolean): Promise<unknown>;
  /**
   * `WAIT replicas timeoutMs` on the connection to the node that serves
   * `key` (the one its scripts ran on): how many replicas acknowledged every
   * write that connection sent so far.
   */
  waitForReplicas(key: string, replicas: number, timeoutMs: number): Promise<number>;
  /** `ZRANGEBYLEX key low high LIMIT 0 count`. */
  rangeByLex(key: string, low: string, high: string, count: number): Promise<string[]>;
  /** Pages of the keys matching `pattern`, `SCAN`ned on every master. */
  scanMasters(pattern: string): AsyncGenerator<string[]>;
  /** `UNLINK` of keys that share one hash tag. */
  unlink(keys: readonly string[]): Promise<void>;
  /** A connection of its own, named `name`, for a watch's blocking reads. */
  waker(name: string): Waker;
  /** Closes the client if the backend opened it; a caller-owned client stays open. */
  close(): Promise<void>;
}

/** A watch's connection that sits in `XREAD BLOCK` to learn of new stream entries. */
export interface Waker {
  /** Resolves when the stream has an entry after `after`, or after `blockMs`. */
  waitForEntry(stream: string, after: string, blockMs: number): Promise<unknown>;
  /** Tears the connection down at once, ending a wait in progress. */
  disconnect(): void;
}

/** Whether a server error says the script is not loaded. */
function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/**
 * `runScript` over a client's way of sending `EVAL` and `EVALSHA`: the first
 * call of each script on a connection is an `EVAL`, which loads it; later
 * ones are `EVALSHA`, sent again as `EVAL` when the server answers
 * `NOSCRIPT` (it lost its script cache: a restart, a failover, `SCRIPT FLUSH`).
 */
export function scriptRunner(
  send: (command: 'EVAL' | 'EVALSHA', scriptOrSha: string, rest: RedisArgument[], binary: boolean) => Promise<unknown>,
): RedisConnection['runScript'] {
  const loaded = new Set<string>();
  return (script, keys, args, binary) => {
    const rest: RedisArgument[] = [String(keys.length), ...keys, ...args];
    if (!loaded.has(script.sha)) {
      return send('EVAL', script.lua, rest, binary).then((reply) => {
        loaded.add(script.sha);
        return reply;
      });
    }
    return send('EVALSHA', script.sha, rest, binary).catch((error: unknown) => {
      if (!isNoScript(error)) throw error;
      return send('EVAL', script.lua, rest, binary);
    });
  };
}
