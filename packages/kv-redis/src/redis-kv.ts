import { createHash, randomBytes } from 'node:crypto';
import {
  type KvCapabilities,
  type KvEntry,
  KvError,
  KvErrorCode,
  type KvRecord,
  type KvStore,
  keyMatchesPrefix,
  type Version,
  type WatchCursor,
  type WatchEvent,
  type WatchOptions,
} from '@weft/kv';
import {
  assertSignal,
  assertTtl,
  assertValidKey,
  assertValidPrefix,
  assertValue,
  describeArgument,
  keyMatchesAnyPrefix,
  kvError,
  normalizePrefixes,
} from '@weft/kv/backend';
import { Cluster, type ClusterNode, Redis } from 'ioredis';
import { type MutationScript, mutationScripts, readChangesScript, sweepScript } from './scripts.js';

const backend = 'redis';

/** Options of {@link openRedisKv}. Give exactly one of `url`, `cluster` or `client`. */
export interface RedisKvOptions {
  /** A `redis://` URL; the backend opens (and later closes) its own connection. */
  readonly url?: string;
  /** Startup nodes of a Redis Cluster; the backend opens (and later closes) its own cluster client. */
  readonly cluster?: readonly ClusterNode[];
  /**
   * A caller-owned ioredis `Redis` or `Cluster` client; `close()` leaves it open.
   * It must not use `keyPrefix` (the scripts build keys server-side).
   */
  readonly client?: Redis | Cluster;
  /** The bucket, `[A-Za-z0-9_-]+`. */
  readonly bucket: string;
  /** First segment of every Redis key. @default 'weft' */
  readonly namespace?: string;
  /** @default 1048576 (1 MiB) */
  readonly maxValueBytes?: number;
  /**
   * Change-stream entries kept per bucket (each is a few dozen bytes: values
   * live only in the records). Older entries are trimmed, and watches resumed
   * from before the newest trimmed entry fail with `CursorExpired`.
   * @default 1000000
   */
  readonly maxHistoryEntries?: number;
  /**
   * How often this handle sweeps expired entries into `expire` events; `0`
   * disables its sweeper (another handle's, or `sweepExpired()`, must run).
   * @default 1000
   */
  readonly sweepIntervalMs?: number;
}

type Client = Redis | Cluster;
type ScriptCommand = (...args: Array<string | Buffer | number>) => Promise<unknown>;

const pageSize = 500;
const readBatch = 256;
const blockMs = 5000;

/**
 * Opens a handle on a Redis bucket: every mutation is one Lua script, watches
 * read the bucket's change stream, TTLs use Redis expiry plus an expiry index
 * swept into `expire` events.
 *
 * @throws {KvError} `InvalidArgument` for bad options, `ConnectionFailed` when Redis cannot be reached
 */
export async function openRedisKv(options: RedisKvOptions): Promise<RedisKvStore> {
  const bucket = options.bucket;
  if (typeof bucket !== 'string' || !/^[A-Za-z0-9_-]+$/.test(bucket)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `a bucket name must match [A-Za-z0-9_-]+, got ${describeArgument(bucket)}`);
  }
  const sources = [options.url, options.cluster, options.client].filter((source) => source !== undefined).length;
  if (sources !== 1) throw kvError(KvErrorCode.InvalidArgument, backend, 'give exactly one of url, cluster or client');
  const maxValueBytes = options.maxValueBytes ?? 1024 * 1024;
  const maxHistoryEntries = options.maxHistoryEntries ?? 1_000_000;
  const sweepIntervalMs = options.sweepIntervalMs ?? 1000;
  for (const [name, value, minimum] of [
    ['maxValueBytes', maxValueBytes, 0],
    ['maxHistoryEntries', maxHistoryEntries, 1],
    ['sweepIntervalMs', sweepIntervalMs, 0],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < minimum) {
      throw kvError(
        KvErrorCode.InvalidArgument,
        backend,
        `${name} must be an integer of at least ${minimum}, got ${describeArgument(value)}`,
      );
    }
  }
  if (maxValueBytes > 512 * 1024 * 1024)
    throw kvError(KvErrorCode.InvalidArgument, backend, 'maxValueBytes cannot exceed 512 MiB, the Redis limit');
  const namespace = options.namespace ?? 'weft';
  if (!/^[A-Za-z0-9_-]+$/.test(namespace)) throw kvError(KvErrorCode.InvalidArgument, backend, `a namespace must match [A-Za-z0-9_-]+`);

  const owned = options.client === undefined;
  let client: Client;
  if (options.client !== undefined) {
    client = options.client;
    if (client.options.keyPrefix) {
      throw kvError(KvErrorCode.InvalidArgument, backend, 'a client with keyPrefix is not supported: the scripts build keys on the server');
    }
  } else if (options.cluster !== undefined) {
    client = new Cluster([...options.cluster], { lazyConnect: true, redisOptions: { autoResendUnfulfilledCommands: false } });
  } else {
    // Unanswered commands are not re-sent after a reconnect: a re-sent create or update would misreport its own success.
    client = new Redis(options.url as string, { lazyConnect: true, autoResendUnfulfilledCommands: false });
  }
  // Failures surface through commands; an unhandled 'error' event would only log.
  if (owned) client.on('error', () => undefined);
  try {
    if (owned) {
      try {
        await client.connect();
      } catch (error) {
        throw kvError(
          KvErrorCode.ConnectionFailed,
          backend,
          `cannot connect to Redis: ${error instanceof Error ? error.message : String(error)}`,
          {
            cause: error,
          },
        );
      }
    }
    for (const [name, lua] of Object.entries(mutationScripts)) client.defineCommand(name, { numberOfKeys: 5, lua });
    client.defineCommand('weftSweep', { numberOfKeys: 5, lua: sweepScript });
    client.defineCommand('weftReadChanges', { numberOfKeys: 2, lua: readChangesScript });
    const store = new RedisKvStore(client, owned, bucket, namespace, { maxValueBytes, maxHistoryEntries, sweepIntervalMs });
    await store.sweepExpired();
    return store;
  } catch (error) {
    if (owned) client.disconnect();
    throw toKvError(error, 'open', undefined, false);
  }
}

interface Settings {
  readonly maxValueBytes: number;
  readonly maxHistoryEntries: number;
  readonly sweepIntervalMs: number;
}

interface StreamHead {
  readonly epoch: string;
  readonly lastId: string;
  /** Positions below this may have lost changes to trimming. */
  readonly horizon: string;
}

interface Change {
  readonly id: string;
  readonly key: string;
  readonly type: 'p' | 'd' | 'x' | 'e' | 's';
  readonly value: Buffer;
}

/** A handle on a Redis bucket. See {@link openRedisKv}. */
export class RedisKvStore implements KvStore {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  readonly #client: Client;
  readonly #owned: boolean;
  readonly #settings: Settings;
  readonly #keys: { record: string; log: string; expiries: string; index: string; meta: string };
  readonly #epochPrefix = randomBytes(6).toString('hex');
  #epochCounter = 0;
  readonly #closing = new AbortController();
  readonly #watchClients = new Set<Client>();
  readonly #loadedScripts = new Set<MutationScript>();
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  /** The last error of the background sweeper, if its latest run failed. */
  lastSweepError: KvError | undefined;

  /** @internal use {@link openRedisKv} */
  constructor(client: Client, owned: boolean, bucket: string, namespace: string, settings: Settings) {
    this.#client = client;
    this.#owned = owned;
    this.bucket = bucket;
    this.#settings = settings;
    const base = `${namespace}:{${bucket}}:`;
    this.#keys = { record: `${base}r:`, log: `${base}log`, expiries: `${base}exp`, index: `${base}idx`, meta: `${base}meta` };
    this.capabilities = Object.freeze({
      ttl: true,
      purge: true,
      multiPrefixWatch: 'emulated',
      maxValueBytes: settings.maxValueBytes,
      readYourWrites: true,
      history: 1,
      // Each mutation script settles a passed TTL of its key first.
      expireBeforeNextWrite: true,
    });
    if (settings.sweepIntervalMs > 0) {
      this.#sweeper = setInterval(() => {
        this.sweepExpired().then(
          () => {
            this.lastSweepError = undefined;
          },
          (error: unknown) => {
            this.lastSweepError = toKvError(error, 'sweep', undefined, false);
          },
        );
      }, settings.sweepIntervalMs);
      this.#sweeper.unref();
    }
  }

  /** The Redis keys this bucket uses: useful for inspection and operations tooling. */
  get redisKeys(): {
    readonly recordPrefix: string;
    readonly log: string;
    readonly expiries: string;
    readonly index: string;
    readonly meta: string;
  } {
    const { record, ...rest } = this.#keys;
    return { recordPrefix: record, ...rest };
  }

  get(key: string): Promise<KvEntry | undefined> {
    try {
      this.#assertOpen();
      assertValidKey(key, backend);
    } catch (error) {
      return Promise.reject(error);
    }
    // One promise step on top of the command's: at 100 reads in flight, each extra async hop costs several percent.
    return this.#client.hmgetBuffer(this.#keys.record + key, 'o', 'v', 'n').then(
      ([op, value, version]) => {
        if (op == null || op[0] !== 0x70 || op.length !== 1 || value == null || version == null) return undefined;
        return { key, value: copy(value), version: version.toString('latin1') as Version };
      },
      (error: unknown) => {
        throw toKvError(error, 'read', key, false);
      },
    );
  }

  async entry(key: string): Promise<KvRecord | undefined> {
    this.#assertOpen();
    assertValidKey(key, backend);
    const [op, value, version] = await this.#read(key, () => this.#client.hmgetBuffer(this.#keys.record + key, 'o', 'v', 'n'));
    if (op == null || version == null) return undefined;
    const versionText = version.toString() as Version;
    switch (op.toString()) {
      case 'p':
        return { key, op: 'put', value: copy(value ?? Buffer.alloc(0)), version: versionText };
      case 'd':
        return { key, op: 'delete', version: versionText };
      case 'x':
        return { key, op: 'purge', version: versionText };
      default:
        throw kvError(KvErrorCode.OperationFailed, backend, `the record has an unknown op '${op.toString()}'`, { key });
    }
  }

  keys(prefix?: string): AsyncIterable<string> {
    const entries = this.#list(prefix, false);
    return {
      async *[Symbol.asyncIterator]() {
        for await (const entry of entries) yield entry.key;
      },
    };
  }

  scan(prefix?: string): AsyncIterable<KvEntry> {
    return this.#list(prefix, true);
  }

  put(key: string, value: Uint8Array): Promise<Version> {
    return this.#mutate('weftPut', key, () => {
      this.#assertWritable(key, value);
      return [toBuffer(value)];
    });
  }

  create(key: string, value: Uint8Array): Promise<Version> {
    return this.#mutate('weftCreate', key, () => {
      this.#assertWritable(key, value);
      return [toBuffer(value)];
    });
  }

  update(key: string, value: Uint8Array, expected: Version): Promise<Version> {
    return this.#mutate('weftUpdate', key, () => {
      this.#assertWritable(key, value);
      return [toBuffer(value), parseStreamId(expected, 'version', key)];
    });
  }

  delete(key: string): Promise<Version> {
    return this.#mutate('weftDelete', key, () => {
      this.#assertOpen();
      assertValidKey(key, backend);
      return [];
    });
  }

  deleteWithVersion(key: string, expected: Version): Promise<Version> {
    return this.#mutate('weftDeleteIf', key, () => {
      this.#assertOpen();
      assertValidKey(key, backend);
      return [parseStreamId(expected, 'version', key)];
    });
  }

  putWithTtl(key: string, value: Uint8Array, ttlMs: number): Promise<Version> {
    return this.#mutate('weftPutTtl', key, () => {
      this.#assertWritable(key, value);
      assertTtl(ttlMs, backend, key);
      return [toBuffer(value), Math.max(1, Math.ceil(ttlMs))];
    });
  }

  purge(key: string): Promise<Version> {
    return this.#mutate('weftPurge', key, () => {
      this.#assertOpen();
      assertValidKey(key, backend);
      return [];
    });
  }

  /**
   * Turns every entry whose TTL has passed into an `expire` event now (the
   * background sweeper calls this every `sweepIntervalMs`).
   *
   * @returns how many entries expired
   */
  async sweepExpired(limit = 1000): Promise<number> {
    this.#assertOpen();
    const command = this.#command('weftSweep');
    const { record, log, expiries, index, meta } = this.#keys;
    const result = await command(
      `${record}-`,
      log,
      expiries,
      index,
      meta,
      '',
      this.#nextEpochCandidate(),
      this.#settings.maxHistoryEntries,
      record,
      limit,
    );
    return Number(result);
  }

  compareCursors(a: WatchCursor, b: WatchCursor): number {
    return compareStreamIds(parseCursor(a).id, parseCursor(b).id);
  }

  watch(options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    this.#assertOpen();
    const prefixes = normalizePrefixes(options.prefixes, backend);
    const from = options.from === undefined ? undefined : parseCursor(options.from);
    assertSignal(options.signal, backend);
    const signal = options.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal]);
    return { [Symbol.asyncIterator]: () => this.#watch(prefixes, from, signal) };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#closing.abort();
    for (const watchClient of this.#watchClients) watchClient.disconnect();
    if (this.#owned) {
      await this.#client.quit().catch(() => this.#client.disconnect());
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async *#watch(
    prefixes: string[] | undefined,
    from: { id: string; epoch: string } | undefined,
    signal: AbortSignal,
  ): AsyncGenerator<WatchEvent> {
    this.#assertOpen();
    // XREAD BLOCK on a connection of its own only wakes the loop; changes are read by a script on the main connection.
    const waker = this.#duplicate();
    this.#watchClients.add(waker);
    const stopWaker = () => waker.disconnect();
    signal.addEventListener('abort', stopWaker, { once: true });
    try {
      let head = await this.#head(signal);
      if (head === undefined) return this.#assertOpen();
      const epoch = head.epoch;
      let position: string;
      let syncedAt: string | undefined;
      if (from === undefined) {
        position = head.lastId;
        for await (const event of this.#listing(prefixes, position, epoch, signal)) yield event;
        if (signal.aborted) return this.#assertOpen();
        yield { type: 'synced', cursor: cursorOf(position, epoch) };
      } else {
        if (from.epoch !== epoch) {
          throw kvError(
            KvErrorCode.CursorExpired,
            backend,
            `cursor from an earlier incarnation of bucket '${this.bucket}' (its data was lost or reset); re-list`,
          );
        }
        position = from.id;
        syncedAt = head.lastId;
      }
      for (;;) {
        if (signal.aborted) return this.#assertOpen();
        const batch = await this.#readChanges(position, signal);
        if (batch === undefined) return this.#assertOpen();
        head = batch.head;
        this.#assertContinuous(epoch, position, head);
        for (const change of batch.changes) {
          position = change.id;
          if (change.type === 's' || !keyMatchesAnyPrefix(change.key, prefixes)) continue;
          if (signal.aborted) return this.#assertOpen();
          yield eventOf(change, epoch);
        }
        if (syncedAt !== undefined && (batch.changes.length === 0 || compareStreamIds(position, syncedAt) >= 0)) {
          // A batch may run past the head read at the start: `synced` then marks where delivery stands, keeping cursor order.
          if (compareStreamIds(position, syncedAt) < 0) position = syncedAt;
          syncedAt = undefined;
          yield { type: 'synced', cursor: cursorOf(position, epoch) };
        }
        // A short batch means the stream had nothing more: wait at once (XREAD returns at once if something came
        // meanwhile) instead of spending a round trip on a read that would come back empty.
        if (batch.changes.length < readBatch) await this.#waitForChange(waker, position, signal);
      }
    } catch (error) {
      if (signal.aborted && !KvError.is(error)) return this.#assertOpen();
      throw toKvError(error, 'watch', undefined, false);
    } finally {
      signal.removeEventListener('abort', stopWaker);
      this.#watchClients.delete(waker);
      waker.disconnect();
    }
  }

  /** A resumed position is gap-free only in the same epoch and with nothing after it trimmed away. */
  #assertContinuous(epoch: string, position: string, head: StreamHead): void {
    if (head.epoch !== epoch) {
      throw kvError(KvErrorCode.CursorExpired, backend, `bucket '${this.bucket}' lost its data (a restart without persistence?); re-list`);
    }
    if (compareStreamIds(position, head.lastId) > 0) {
      throw kvError(KvErrorCode.CursorExpired, backend, `cursor ${position} is ahead of the change stream (${head.lastId}); re-list`);
    }
    if (compareStreamIds(position, head.horizon) < 0) {
      throw kvError(
        KvErrorCode.CursorExpired,
        backend,
        `changes after cursor ${position} may have been trimmed from the change stream (horizon ${head.horizon}); re-list`,
      );
    }
  }

  /** The state-sync listing as of `snapshot`: live records written at or before it, in version order. */
  async *#listing(prefixes: string[] | undefined, snapshot: string, epoch: string, signal: AbortSignal): AsyncGenerator<WatchEvent> {
    const candidates: Array<{ key: string; version: string }> = [];
    for (const prefix of prefixes ?? [undefined]) {
      for await (const page of this.#indexPages(prefix)) {
        if (signal.aborted) return;
        const rows = await this.#pipeline(page.map((key) => ['hmget', this.#keys.record + key, 'o', 'n']));
        page.forEach((key, index) => {
          const [op, version] = (rows[index] ?? []) as Array<string | null>;
          if (op === 'p' && version != null && compareStreamIds(version, snapshot) <= 0) candidates.push({ key, version });
        });
      }
    }
    candidates.sort((a, b) => compareStreamIds(a.version, b.version));
    for (let start = 0; start < candidates.length; start += pageSize) {
      if (signal.aborted) return;
      const slice = candidates.slice(start, start + pageSize);
      const rows = await this.#pipeline(slice.map(({ key }) => ['hmgetBuffer', this.#keys.record + key, 'n', 'v']));
      for (const [index, { key, version }] of slice.entries()) {
        const [current, value] = (rows[index] ?? []) as Array<Buffer | null>;
        // Changed since the snapshot: the change stream delivers the newer state after `synced`.
        if (current?.toString() !== version || value == null) continue;
        yield { type: 'put', key, value: copy(value), version: version as Version, cursor: cursorOf(version, epoch) };
      }
    }
  }

  async *#indexPages(prefix: string | undefined): AsyncGenerator<string[]> {
    // Whole-token prefix p: the keys in [p, p/) are p itself, p.* and p-* (filtered out below).
    let low = prefix === undefined ? '-' : `[${prefix}`;
    const high = prefix === undefined ? '+' : `(${prefix}/`;
    for (;;) {
      const page = await this.#read(undefined, () => this.#client.zrangebylex(this.#keys.index, low, high, 'LIMIT', 0, pageSize));
      const matching = page.filter((key) => keyMatchesPrefix(key, prefix));
      if (matching.length > 0) yield matching;
      if (page.length < pageSize) return;
      low = `(${page[page.length - 1]}`;
    }
  }

  #list(prefix: string | undefined, withValues: boolean): AsyncIterable<KvEntry> {
    this.#assertOpen();
    if (prefix !== undefined) assertValidPrefix(prefix, backend);
    const store = this;
    return {
      async *[Symbol.asyncIterator]() {
        for await (const page of store.#indexPages(prefix)) {
          store.#assertOpen();
          const rows = await store.#pipeline(
            page.map((key) =>
              withValues ? ['hmgetBuffer', store.#keys.record + key, 'o', 'n', 'v'] : ['hmget', store.#keys.record + key, 'o', 'n'],
            ),
          );
          for (const [index, key] of page.entries()) {
            const [op, version, value] = (rows[index] ?? []) as Array<Buffer | string | null>;
            if (op?.toString() !== 'p' || version == null) continue;
            yield { key, value: value == null ? new Uint8Array(0) : copy(value as Buffer), version: version.toString() as Version };
          }
        }
      },
    };
  }

  async #pipeline(commands: Array<[string, ...string[]]>): Promise<unknown[]> {
    if (commands.length === 0) return [];
    const results = await this.#read(undefined, () => this.#client.pipeline(commands).exec());
    return (results ?? []).map(([error, value]) => {
      if (error) throw toKvError(error, 'read', undefined, false);
      return value;
    });
  }

  async #head(signal: AbortSignal): Promise<StreamHead | undefined> {
    const batch = await this.#readChanges('0-0', signal, 0);
    return batch?.head;
  }

  /** Reads changes after `position`, retrying through disconnects until the watch ends. */
  async #readChanges(
    position: string,
    signal: AbortSignal,
    count = readBatch,
  ): Promise<{ head: StreamHead; changes: Change[] } | undefined> {
    const command = this.#command('weftReadChangesBuffer');
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) return undefined;
      try {
        const reply = (await command(
          this.#keys.log,
          this.#keys.meta,
          position,
          count,
          this.#keys.record,
          this.#nextEpochCandidate(),
        )) as Buffer[];
        const head = { epoch: text(reply[0]), lastId: text(reply[1]), horizon: text(reply[2]) };
        const changes: Change[] = [];
        for (let index = 3; index + 3 < reply.length; index += 4) {
          changes.push({
            id: text(reply[index]),
            key: text(reply[index + 1]),
            type: text(reply[index + 2]) as Change['type'],
            value: reply[index + 3] ?? Buffer.alloc(0),
          });
        }
        return { head, changes };
      } catch (error) {
        const failure = toKvError(error, 'watch', undefined, false);
        if (!failure.retryable || this.#closed) throw failure;
        await sleep(Math.min(2000, 50 * 2 ** Math.min(attempt, 6)), signal);
      }
    }
  }

  async #waitForChange(waker: Client, position: string, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    try {
      await waker.xread('COUNT', 1, 'BLOCK', blockMs, 'STREAMS', this.#keys.log, position);
    } catch (error) {
      if (signal.aborted) return;
      // The next read retries through the disconnect and checks the epoch, so a reset cannot slip through.
      await sleep(100, signal);
      if (toKvError(error, 'watch', undefined, false).retryable) return;
      throw error;
    }
  }

  #duplicate(): Client {
    const connectionName = `weft-watch:${this.bucket}`;
    // The connection sits in XREAD BLOCK, so the server does not see a polite close until the block ends:
    // tear it down at once when the watch ends (disconnectTimeout) instead of after ioredis' default 2 s.
    if (this.#client instanceof Cluster) {
      return this.#client.duplicate(undefined, { redisOptions: { connectionName, disconnectTimeout: 1 }, lazyConnect: false });
    }
    return this.#client.duplicate({ connectionName, lazyConnect: false, maxRetriesPerRequest: null, disconnectTimeout: 1 });
  }

  #command(name: string): ScriptCommand {
    const command = (this.#client as unknown as Record<string, ScriptCommand | undefined>)[name];
    if (command === undefined) throw kvError(KvErrorCode.OperationFailed, backend, `script ${name} is not registered`);
    return command.bind(this.#client);
  }

  /**
   * Runs one mutation script. `prepare` checks the arguments (its errors
   * become rejections) and returns the script's extra arguments. Written as
   * plain promise steps: with 100 writes in flight, every extra async hop
   * costs a few percent of throughput.
   */
  #mutate(script: MutationScript, key: string, prepare: () => Array<Buffer | string | number>): Promise<Version> {
    let args: Array<Buffer | string | number>;
    let extra: Array<Buffer | string | number>;
    try {
      extra = prepare();
      const { record, log, expiries, index, meta } = this.#keys;
      args = [record + key, log, expiries, index, meta, key, this.#nextEpochCandidate(), this.#settings.maxHistoryEntries, ...extra];
    } catch (error) {
      return Promise.reject(error);
    }
    const settle = (reply: unknown): Version => {
      if (typeof reply === 'string') return reply as Version;
      const [code, current] = reply as [string, string];
      if (code === 'AlreadyExists') {
        throw kvError(KvErrorCode.AlreadyExists, backend, `a live value already exists (version ${current})`, { key });
      }
      throw kvError(
        KvErrorCode.RevisionMismatch,
        backend,
        `expected version ${String(extra.at(-1))}, found ${current === '' ? 'no live value' : `version ${current}`}`,
        { key },
      );
    };
    const fail = (error: unknown): never => {
      throw toKvError(error, operationNames[script], key, true);
    };
    // EVALSHA directly rather than through ioredis' defineCommand wrapper. The first call of each script is an
    // EVAL, which loads it; a server that lost its script cache (restart, failover) answers NOSCRIPT, and the
    // script is sent again.
    if (!this.#loadedScripts.has(script)) {
      return this.#client.eval(mutationScripts[script], 5, ...args).then((reply) => {
        this.#loadedScripts.add(script);
        return settle(reply);
      }, fail);
    }
    return this.#client.evalsha(scriptShas[script], 5, ...args).then(settle, (error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) return fail(error);
      return this.#client.eval(mutationScripts[script], 5, ...args).then(settle, fail);
    });
  }

  async #read<T>(key: string | undefined, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw toKvError(error, 'read', key, false);
    }
  }

  /**
   * A fresh candidate for every call: if the bucket's data vanished, whichever
   * call recreates it sets an epoch no earlier cursor carries.
   */
  #nextEpochCandidate(): string {
    this.#epochCounter++;
    return this.#epochPrefix + this.#epochCounter.toString(16);
  }

  #assertOpen(): void {
    if (this.#closed) throw kvError(KvErrorCode.Closed, backend, `the handle on bucket '${this.bucket}' is closed`);
  }

  #assertWritable(key: string, value: Uint8Array): void {
    this.#assertOpen();
    assertValidKey(key, backend);
    assertValue(value, this.#settings.maxValueBytes, backend, key);
  }
}

const scriptShas = Object.fromEntries(
  Object.entries(mutationScripts).map(([name, lua]) => [name, createHash('sha1').update(lua).digest('hex')]),
) as Record<MutationScript, string>;

const operationNames: Record<MutationScript, string> = {
  weftPut: 'put',
  weftPutTtl: 'putWithTtl',
  weftCreate: 'create',
  weftUpdate: 'update',
  weftDelete: 'delete',
  weftDeleteIf: 'deleteWithVersion',
  weftPurge: 'purge',
};

function eventOf(change: Change, epoch: string): WatchEvent {
  const cursor = cursorOf(change.id, epoch);
  const version = change.id as Version;
  switch (change.type) {
    case 'p':
      return { type: 'put', key: change.key, value: copy(change.value), version, cursor };
    case 'd':
      return { type: 'delete', key: change.key, version, cursor };
    case 'x':
      return { type: 'purge', key: change.key, version, cursor };
    default:
      return { type: 'expire', key: change.key, cursor };
  }
}

const streamIdPattern = /^(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})$/;

function parseStreamId(text: unknown, what: 'version' | 'cursor', key?: string): string {
  if (typeof text === 'string' && streamIdPattern.test(text)) return text;
  throw kvError(KvErrorCode.InvalidArgument, backend, `${describeArgument(text)} is not a ${what} of the redis backend`, { key });
}

/** Cursors are `<stream id>@<epoch>`; the epoch ties them to one incarnation of the bucket's data. */
function cursorOf(id: string, epoch: string): WatchCursor {
  return `${id}@${epoch}` as WatchCursor;
}

function parseCursor(cursor: unknown): { id: string; epoch: string } {
  if (typeof cursor === 'string') {
    const at = cursor.indexOf('@');
    const id = cursor.slice(0, at);
    const epoch = cursor.slice(at + 1);
    if (at > 0 && streamIdPattern.test(id) && /^[0-9a-f]{0,32}$/.test(epoch)) return { id, epoch };
  }
  throw kvError(KvErrorCode.InvalidArgument, backend, `${describeArgument(cursor)} is not a cursor of the redis backend`);
}

function compareStreamIds(a: string, b: string): number {
  const [aMs = '0', aSeq = '0'] = a.split('-');
  const [bMs = '0', bSeq = '0'] = b.split('-');
  if (aMs !== bMs) return aMs.length !== bMs.length ? aMs.length - bMs.length : aMs < bMs ? -1 : 1;
  if (aSeq === bSeq) return 0;
  return aSeq.length !== bSeq.length ? aSeq.length - bSeq.length : aSeq < bSeq ? -1 : 1;
}

function text(buffer: Buffer | undefined): string {
  return buffer === undefined || buffer === null ? '' : buffer.toString('latin1');
}

function toBuffer(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function copy(value: Uint8Array): Uint8Array {
  return Uint8Array.prototype.slice.call(value);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Maps an ioredis failure to a typed error; a write whose reply was lost is `Indeterminate`. */
export function toKvError(error: unknown, operation: string, key: string | undefined, isWrite: boolean): KvError {
  if (error instanceof KvError) return error;
  const name = error instanceof Error ? error.name : '';
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string } | undefined)?.code;
  const extra = { key, cause: error };
  if (name === 'MaxRetriesPerRequestError' || message.includes("Stream isn't writeable") || message.includes('enableOfflineQueue')) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: not connected to Redis (${message})`, extra);
  }
  if (message.includes('Connection is closed') || message.includes('Command timed out')) {
    if (isWrite)
      return kvError(
        KvErrorCode.Indeterminate,
        backend,
        `${operation}: the connection dropped before Redis answered; the write may or may not have been applied`,
        extra,
      );
    return kvError(
      message.includes('timed out') ? KvErrorCode.Timeout : KvErrorCode.NotConnected,
      backend,
      `${operation}: ${message}`,
      extra,
    );
  }
  if (
    code === 'ECONNREFUSED' ||
    code === 'ENOTFOUND' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT' ||
    name === 'ClusterAllFailedError'
  ) {
    return kvError(KvErrorCode.ConnectionFailed, backend, `${operation}: cannot reach Redis (${message})`, extra);
  }
  if (message.startsWith('LOADING') || message.startsWith('CLUSTERDOWN') || message.startsWith('TRYAGAIN')) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: Redis is not ready (${message})`, { ...extra, retryable: true });
  }
  return kvError(KvErrorCode.OperationFailed, backend, `${operation} failed: ${message}`, extra);
}
