import { createHash, randomBytes } from 'node:crypto';
import type { KvCapabilities, KvEntry, KvError, KvRecord, Version } from '@weft/kv';
import {
  alreadyExists,
  type ChangeRequest,
  copyBytes,
  type KvDriver,
  KvErrorCode,
  type KvMutation,
  kvError,
  revisionMismatch,
} from '@weft/kv/backend';
import { Cluster, type Redis } from 'ioredis';
import { changeFeed, indexPages } from './change-stream.js';
import { backend, toKvError } from './errors.js';
import type { BucketKeys } from './layout.js';
import { type MutationScript, mutationScripts } from './scripts.js';
import { parseStreamId, redisCursors } from './stream-ids.js';

export type Client = Redis | Cluster;
type ScriptCommand = (...args: Array<string | Buffer | number>) => Promise<unknown>;

export interface RedisSettings {
  readonly maxValueBytes: number;
  readonly maxHistoryEntries: number;
  readonly sweepIntervalMs: number;
}

const scriptOf: Record<KvMutation['kind'], MutationScript> = {
  put: 'weftPut',
  putWithTtl: 'weftPutTtl',
  create: 'weftCreate',
  update: 'weftUpdate',
  delete: 'weftDelete',
  deleteWithVersion: 'weftDeleteIf',
  purge: 'weftPurge',
};

const scriptShas = Object.fromEntries(
  Object.entries(mutationScripts).map(([name, lua]) => [name, createHash('sha1').update(lua).digest('hex')]),
) as Record<MutationScript, string>;

/**
 * The Redis driver: one Lua script per mutation (EVALSHA), reads as single
 * commands or pipelines, and the change stream as the watch feed.
 */
export class RedisDriver implements KvDriver<string> {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  readonly cursors = redisCursors;
  readonly client: Client;
  readonly keys: BucketKeys;
  readonly settings: RedisSettings;
  /** Connections of running watches, cut when the handle closes. */
  readonly watchClients = new Set<Client>();
  readonly #owned: boolean;
  readonly #epochPrefix = randomBytes(6).toString('hex');
  #epochCounter = 0;
  readonly #loadedScripts = new Set<MutationScript>();
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  /** The last error of the background sweeper, if its latest run failed. */
  lastSweepError: KvError | undefined;

  constructor(client: Client, owned: boolean, bucket: string, keys: BucketKeys, settings: RedisSettings) {
    this.client = client;
    this.#owned = owned;
    this.bucket = bucket;
    this.keys = keys;
    this.settings = settings;
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
        this.sweepExpired(1000).then(
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

  get closed(): boolean {
    return this.#closed;
  }

  get(key: string): Promise<KvEntry | undefined> {
    // One promise step on top of the command's: at 100 reads in flight, each extra async hop costs several percent.
    return this.client.hmgetBuffer(this.keys.record + key, 'o', 'v', 'n').then(
      ([op, value, version]) => {
        if (op == null || op[0] !== 0x70 || op.length !== 1 || value == null || version == null) return undefined;
        return { key, value: copyBytes(value), version: version.toString('latin1') as Version };
      },
      (error: unknown) => {
        throw toKvError(error, 'read', key, false);
      },
    );
  }

  async entry(key: string): Promise<KvRecord | undefined> {
    const [op, value, version] = await this.read(key, () => this.client.hmgetBuffer(this.keys.record + key, 'o', 'v', 'n'));
    if (op == null || version == null) return undefined;
    const versionText = version.toString() as Version;
    switch (op.toString()) {
      case 'p':
        return { key, op: 'put', value: copyBytes(value ?? Buffer.alloc(0)), version: versionText };
      case 'd':
        return { key, op: 'delete', version: versionText };
      case 'x':
        return { key, op: 'purge', version: versionText };
      default:
        throw kvError(KvErrorCode.OperationFailed, backend, `the record has an unknown op '${op.toString()}'`, { key });
    }
  }

  async *list(prefix: string | undefined, { values }: { readonly values: boolean }): AsyncGenerator<KvEntry> {
    for await (const page of indexPages(this, prefix)) {
      const rows = await this.pipeline(
        page.map((key) => (values ? ['hmgetBuffer', this.keys.record + key, 'o', 'n', 'v'] : ['hmget', this.keys.record + key, 'o', 'n'])),
      );
      for (const [index, key] of page.entries()) {
        const [op, version, value] = (rows[index] ?? []) as Array<Buffer | string | null>;
        if (op?.toString() !== 'p' || version == null) continue;
        yield { key, value: value == null ? new Uint8Array(0) : copyBytes(value as Buffer), version: version.toString() as Version };
      }
    }
  }

  /**
   * Runs the mutation's script. Written as plain promise steps: with 100
   * writes in flight, every extra async hop costs a few percent of throughput.
   */
  mutate(mutation: KvMutation): Promise<Version> {
    const { key } = mutation;
    const script = scriptOf[mutation.kind];
    let args: Array<Buffer | string | number>;
    let expected: string | undefined;
    try {
      const extra: Array<Buffer | string | number> = [];
      if ('value' in mutation) extra.push(toBuffer(mutation.value));
      if (mutation.kind === 'putWithTtl') extra.push(Math.max(1, Math.ceil(mutation.ttlMs)));
      if (mutation.kind === 'update' || mutation.kind === 'deleteWithVersion') {
        expected = parseStreamId(mutation.expected, 'version', key);
        extra.push(expected);
      }
      const { record, log, expiries, index, meta } = this.keys;
      args = [record + key, log, expiries, index, meta, key, this.nextEpochCandidate(), this.settings.maxHistoryEntries, ...extra];
    } catch (error) {
      return Promise.reject(error);
    }
    const settle = (reply: unknown): Version => {
      if (typeof reply === 'string') return reply as Version;
      const [code, current] = reply as [string, string];
      if (code === 'AlreadyExists') throw alreadyExists(backend, key, current);
      throw revisionMismatch(backend, key, String(expected), current === '' ? undefined : current);
    };
    const fail = (error: unknown): never => {
      throw toKvError(error, mutation.kind, key, true);
    };
    // EVALSHA directly rather than through ioredis' defineCommand wrapper. The first call of each script is an
    // EVAL, which loads it; a server that lost its script cache (restart, failover) answers NOSCRIPT, and the
    // script is sent again.
    if (!this.#loadedScripts.has(script)) {
      return this.client.eval(mutationScripts[script], 5, ...args).then((reply) => {
        this.#loadedScripts.add(script);
        return settle(reply);
      }, fail);
    }
    return this.client.evalsha(scriptShas[script], 5, ...args).then(settle, (error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) return fail(error);
      return this.client.eval(mutationScripts[script], 5, ...args).then(settle, fail);
    });
  }

  changes(request: ChangeRequest<string>) {
    return changeFeed(this, request);
  }

  toKvError(error: unknown, operation: string): KvError {
    return toKvError(error, operation, undefined, false);
  }

  /**
   * Turns every entry whose TTL has passed into an `expire` event now.
   *
   * @returns how many entries expired
   */
  async sweepExpired(limit: number): Promise<number> {
    const command = this.command('weftSweep');
    const { record, log, expiries, index, meta } = this.keys;
    const result = await command(
      `${record}-`,
      log,
      expiries,
      index,
      meta,
      '',
      this.nextEpochCandidate(),
      this.settings.maxHistoryEntries,
      record,
      limit,
    );
    return Number(result);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const watchClient of this.watchClients) watchClient.disconnect();
    if (this.#owned) {
      await this.client.quit().catch(() => this.client.disconnect());
    }
  }

  /** Deletes every Redis key of the bucket (records, tombstones, the change stream, the indexes and the epoch). */
  async destroy(): Promise<void> {
    const base = this.keys.meta.slice(0, -'meta'.length);
    const pattern = `${base.replace(/[*?[\]\\]/g, (character) => `\\${character}`)}*`;
    const nodes = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    await this.read(undefined, async () => {
      for (const node of nodes) {
        let cursor = '0';
        do {
          const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          cursor = next;
          // Every key of a bucket carries its hash tag, so one UNLINK takes a page even on a cluster.
          if (found.length > 0) await this.client.unlink(...found);
        } while (cursor !== '0');
      }
    });
  }

  async pipeline(commands: Array<[string, ...string[]]>): Promise<unknown[]> {
    if (commands.length === 0) return [];
    const results = await this.read(undefined, () => this.client.pipeline(commands).exec());
    return (results ?? []).map(([error, value]) => {
      if (error) throw toKvError(error, 'read', undefined, false);
      return value;
    });
  }

  async read<T>(key: string | undefined, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw toKvError(error, 'read', key, false);
    }
  }

  command(name: string): ScriptCommand {
    const command = (this.client as unknown as Record<string, ScriptCommand | undefined>)[name];
    if (command === undefined) throw kvError(KvErrorCode.OperationFailed, backend, `script ${name} is not registered`);
    return command.bind(this.client);
  }

  /** A connection of its own for a watch's blocking reads, torn down at once when the watch ends. */
  duplicate(): Client {
    const connectionName = `weft-watch:${this.bucket}`;
    // The connection sits in XREAD BLOCK, so the server does not see a polite close until the block ends:
    // tear it down at once when the watch ends (disconnectTimeout) instead of after ioredis' default 2 s.
    if (this.client instanceof Cluster) {
      return this.client.duplicate(undefined, { redisOptions: { connectionName, disconnectTimeout: 1 }, lazyConnect: false });
    }
    return this.client.duplicate({ connectionName, lazyConnect: false, maxRetriesPerRequest: null, disconnectTimeout: 1 });
  }

  /**
   * A fresh candidate for every call: if the bucket's data vanished, whichever
   * call recreates it sets an epoch no earlier cursor carries.
   */
  nextEpochCandidate(): string {
    this.#epochCounter++;
    return this.#epochPrefix + this.#epochCounter.toString(16);
  }
}

function toBuffer(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}
