import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  type StreamInfo,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import {
  ClosedConnectionError,
  connect,
  type MsgHdrs,
  headers as makeHeaders,
  type NatsConnection,
  NoRespondersError,
  nanos,
  nuid,
  TimeoutError,
} from '@nats-io/transport-node';
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
import { compareVersions, conditionalWritesUnsupported, parseServerVersion, type ServerVersion } from './server-version.js';

const backend = 'nats';

/** Bucket settings used when {@link NatsKvOptions.create} asks for the bucket to be created. */
export interface NatsBucketOptions {
  /** Versions kept per key (1-64). @default 1 */
  readonly history?: number;
  /** Replicas of the bucket's stream in a cluster. @default 1 */
  readonly replicas?: number;
  /** Largest value the bucket accepts; `-1` for the server's limit. @default -1 */
  readonly maxValueSize?: number;
  /** Largest size of the whole bucket; `-1` for unlimited. @default -1 */
  readonly maxBytes?: number;
  /** @default 'file' */
  readonly storage?: 'file' | 'memory';
}

/** Options of {@link openNatsKv}. Give `servers` or `connection`. */
export interface NatsKvOptions {
  /** Server URL(s); the backend opens (and later closes) its own connection, reconnecting forever. */
  readonly servers?: string | readonly string[];
  /** A caller-owned connection; `close()` leaves it open. */
  readonly connection?: NatsConnection;
  /** The bucket, `[A-Za-z0-9_-]+` (a JetStream KV bucket). */
  readonly bucket: string;
  /** Create the bucket with these settings if it does not exist; without it the bucket must exist. */
  readonly create?: NatsBucketOptions | true;
  /** How long a request may wait for the server, in milliseconds. @default 5000 */
  readonly timeoutMs?: number;
  /**
   * How often this handle turns passed TTLs into `expire` events; `0`
   * disables its sweeper (another handle's, or `sweepExpired()`, must run).
   * @default 1000
   */
  readonly sweepIntervalMs?: number;
  /**
   * Writes the `expire` marker of a passed TTL that no sweeper has removed
   * yet before any put, delete, purge or putWithTtl of its key, so watchers
   * see `expire` before the write (`capabilities.expireBeforeNextWrite`). It
   * costs a read before each of those writes; set it on every handle that
   * writes the bucket. Without it such a write replaces the entry with no
   * `expire` event (the entry still reads as absent once its TTL passed).
   * @default false
   */
  readonly expireBeforeNextWrite?: boolean;
}

const keyHeader = 'KV-Operation';
const rollupHeader = 'Nats-Rollup';
/** On a put with a TTL: when it expires, in epoch milliseconds. */
const expiresHeader = 'Weft-Expires';
/** On the delete marker the sweeper writes for a passed TTL: `expire`. */
const weftOpHeader = 'Weft-Op';
const pageSize = 256;
const fetchExpiresMs = 5000;
const fetchHeartbeatMs = 1000;
/** How long a fetch may go without a message or its end before the consumer is presumed lost. */
const fetchStallMs = fetchExpiresMs * 2;

/**
 * Opens a handle on a NATS JetStream KV bucket. Values are plain KV values:
 * the `nats` CLI and other KV clients read what weft writes, and weft reads
 * what they write.
 *
 * @throws {KvError} `InvalidArgument` for bad options, `ConnectionFailed` when NATS cannot be reached,
 *   `OperationFailed` when the bucket does not exist and `create` was not given
 */
export async function openNatsKv(options: NatsKvOptions): Promise<NatsKvStore> {
  const bucket = options.bucket;
  if (typeof bucket !== 'string' || !/^[A-Za-z0-9_-]+$/.test(bucket)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `a bucket name must match [A-Za-z0-9_-]+, got ${describeArgument(bucket)}`);
  }
  if ((options.servers === undefined) === (options.connection === undefined)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, 'give exactly one of servers or connection');
  }
  const timeoutMs = options.timeoutMs ?? 5000;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 100) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `timeoutMs must be at least 100, got ${describeArgument(timeoutMs)}`);
  }
  const sweepIntervalMs = options.sweepIntervalMs ?? 1000;
  if (!Number.isSafeInteger(sweepIntervalMs) || sweepIntervalMs < 0) {
    throw kvError(
      KvErrorCode.InvalidArgument,
      backend,
      `sweepIntervalMs must be an integer of at least 0, got ${describeArgument(sweepIntervalMs)}`,
    );
  }
  const create = options.create === true ? {} : options.create;
  if (create?.history !== undefined && !(Number.isInteger(create.history) && create.history >= 1 && create.history <= 64)) {
    throw kvError(KvErrorCode.InvalidArgument, backend, `history must be an integer from 1 to 64, got ${describeArgument(create.history)}`);
  }

  let connection: NatsConnection;
  const owned = options.connection === undefined;
  if (options.connection !== undefined) {
    connection = options.connection;
  } else {
    const servers = typeof options.servers === 'string' ? [options.servers] : [...(options.servers ?? [])];
    try {
      connection = await connect({
        servers,
        name: `weft-kv:${bucket}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        timeout: timeoutMs,
      });
    } catch (error) {
      throw kvError(KvErrorCode.ConnectionFailed, backend, `cannot connect to NATS at ${servers.join(', ')}: ${messageOf(error)}`, {
        cause: error,
      });
    }
  }
  try {
    const version = parseServerVersion(connection.info?.version ?? '0.0.0');
    const manager = await jetstreamManager(connection, { timeout: timeoutMs });
    const client = jetstream(connection, { timeout: timeoutMs });
    if (create !== undefined) {
      await new Kvm(client).create(bucket, {
        history: create.history ?? 1,
        replicas: create.replicas ?? 1,
        maxValueSize: create.maxValueSize ?? -1,
        max_bytes: create.maxBytes ?? -1,
        ...(create.storage === 'memory' ? { storage: 'memory' as never } : {}),
      });
    }
    let info: StreamInfo;
    try {
      info = await manager.streams.info(streamName(bucket));
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) {
        throw kvError(KvErrorCode.OperationFailed, backend, `bucket '${bucket}' does not exist; pass create to create it`, {
          cause: error,
        });
      }
      throw error;
    }
    const expireBeforeNextWrite = options.expireBeforeNextWrite === true;
    return new NatsKvStore({
      connection,
      owned,
      manager,
      client,
      bucket,
      version,
      info,
      timeoutMs,
      sweepIntervalMs,
      expireBeforeNextWrite,
    });
  } catch (error) {
    if (owned) await connection.close().catch(() => undefined);
    throw toKvError(error, 'open', undefined, false);
  }
}

function streamName(bucket: string): string {
  return `KV_${bucket}`;
}

/** The companion stream holding weft's own bookkeeping for a bucket (the compaction horizon). */
export function metaStreamName(bucket: string): string {
  return `WEFT_${bucket}`;
}

interface Parts {
  readonly connection: NatsConnection;
  readonly owned: boolean;
  readonly manager: JetStreamManager;
  readonly client: JetStreamClient;
  readonly bucket: string;
  readonly version: ServerVersion;
  readonly info: StreamInfo;
  readonly timeoutMs: number;
  readonly sweepIntervalMs: number;
  readonly expireBeforeNextWrite: boolean;
}

type Delivery = { readonly policy: 'last-per-subject' } | { readonly policy: 'after'; readonly seq: number };

interface StreamedMessage {
  readonly seq: number;
  readonly key: string;
  /** `expire` is a delete marker the sweeper wrote for a passed TTL. */
  readonly op: 'put' | 'delete' | 'purge' | 'expire';
  /** A put's TTL, in epoch milliseconds (0 for none). */
  readonly expiresAt: number;
  readonly data: Uint8Array;
  /** Messages still pending on the consumer after this one. */
  readonly pending: number;
  /** When the server stored it, in epoch milliseconds. */
  readonly timeMs: number;
}

/** A handle on a NATS KV bucket. See {@link openNatsKv}. */
export class NatsKvStore implements KvStore {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  /** The server version detected at open, e.g. `2.9.10`. */
  readonly serverVersion: string;
  readonly #parts: Parts;
  readonly #stream: string;
  readonly #subjectPrefix: string;
  /** Identifies the stream's incarnation: a deleted and recreated bucket gets a new one, so old cursors expire. */
  readonly #epoch: string;
  readonly #nativeMultiFilter: boolean;
  /** Whether the server serialises conditional publishes on this stream (see {@link conditionalWritesUnsupported}). */
  readonly #conditionalWrites: boolean;
  readonly #closing = new AbortController();
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  #sweeping: Promise<number> | undefined;
  #metaStreamReady = false;
  /** The last error of the background sweeper, if its latest run failed. */
  lastSweepError: KvError | undefined;

  /** @internal use {@link openNatsKv} */
  constructor(parts: Parts) {
    this.#parts = parts;
    this.bucket = parts.bucket;
    this.#stream = streamName(parts.bucket);
    this.#subjectPrefix = `$KV.${parts.bucket}.`;
    this.serverVersion = parts.version.text;
    this.#epoch = Date.parse(parts.info.created).toString(36);
    this.#nativeMultiFilter = compareVersions(parts.version, parseServerVersion('2.10.0')) >= 0;
    const config = parts.info.config;
    this.#conditionalWrites = conditionalWritesUnsupported(parts.version, config.num_replicas) === undefined;
    // Headers and the subject travel in the same message; keep room for them below the server's limit.
    const serverLimit = (parts.connection.info?.max_payload ?? 1024 * 1024) - 1024;
    const streamLimit = config.max_msg_size > 0 ? config.max_msg_size - 1024 : Number.POSITIVE_INFINITY;
    this.capabilities = Object.freeze({
      // The TTL sweeper writes its expire markers with compare-and-swap.
      ttl: this.#conditionalWrites,
      purge: true,
      multiPrefixWatch: this.#nativeMultiFilter ? 'native' : 'emulated',
      maxValueBytes: Math.max(0, Math.min(serverLimit, streamLimit)),
      readYourWrites: true,
      history: config.max_msgs_per_subject > 0 ? config.max_msgs_per_subject : Number.POSITIVE_INFINITY,
      // Without the option, unconditional writes do not read the key first: one over a passed, unswept TTL replaces
      // it without an expire. The marker is written with compare-and-swap.
      expireBeforeNextWrite: parts.expireBeforeNextWrite && this.#conditionalWrites,
    });
    if (parts.sweepIntervalMs > 0 && this.#conditionalWrites) {
      this.#sweeper = setInterval(() => {
        if (this.#sweeping !== undefined) return;
        this.#sweeping = this.sweepExpired().finally(() => {
          this.#sweeping = undefined;
        });
        this.#sweeping.then(
          () => {
            this.lastSweepError = undefined;
          },
          (error: unknown) => {
            if (!this.#closed) this.lastSweepError = toKvError(error, 'sweepExpired', undefined, false);
          },
        );
      }, parts.sweepIntervalMs);
      this.#sweeper.unref();
    }
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const record = await this.entry(key);
    return record?.op === 'put' ? { key, value: record.value, version: record.version } : undefined;
  }

  async entry(key: string): Promise<KvRecord | undefined> {
    this.#assertOpen();
    assertValidKey(key, backend);
    const message = await this.#lastMessage(key);
    // A passed TTL reads as never written, before and after the sweeper has marked it.
    if (message === undefined || message.op === 'expire' || expired(message)) return undefined;
    if (message.op === 'put') return { key, op: 'put', value: message.data, version: versionOf(message.seq, 'put', message.expiresAt) };
    return { key, op: message.op, version: versionOf(message.seq, message.op) };
  }

  keys(prefix?: string): AsyncIterable<string> {
    const listing = this.#listing(prefix, true);
    return {
      async *[Symbol.asyncIterator]() {
        for await (const entry of listing) yield entry.key;
      },
    };
  }

  scan(prefix?: string): AsyncIterable<KvEntry> {
    return this.#listing(prefix, false);
  }

  async put(key: string, value: Uint8Array): Promise<Version> {
    this.#assertWritable(key, value);
    await this.#settleLapsed(key);
    return versionOf(await this.#publish(key, value, 'put'), 'put');
  }

  async create(key: string, value: Uint8Array): Promise<Version> {
    this.#assertWritable(key, value);
    this.#assertConditionalWrites(key);
    // Compare-and-swap against the key's latest message (none: sequence 0). A mismatch only says that
    // something was written meanwhile, perhaps another tombstone: read again and decide, and answer
    // AlreadyExists only when the latest record is a live, unexpired value.
    let expectedSeq = 0;
    for (;;) {
      try {
        return versionOf(await this.#publish(key, value, 'create', { lastSubjectSequence: expectedSeq }), 'put');
      } catch (error) {
        if (!KvError.is(error, KvErrorCode.RevisionMismatch)) throw error;
      }
      const current = await this.#lastMessage(key);
      if (current !== undefined && current.op === 'put' && !expired(current)) {
        throw kvError(KvErrorCode.AlreadyExists, backend, 'a live value already exists', { key });
      }
      // A passed TTL not swept yet: its expire marker goes first (the next round trip creates over the marker).
      if (current !== undefined && expired(current)) await this.#writeExpireMarker(key, current.seq, 'create');
      expectedSeq = current?.seq ?? 0;
    }
  }

  async update(key: string, value: Uint8Array, expected: Version): Promise<Version> {
    this.#assertWritable(key, value);
    this.#assertConditionalWrites(key);
    const seq = this.#expectedLiveSeq(key, expected);
    return versionOf(await this.#publish(key, value, 'update', { lastSubjectSequence: seq }), 'put');
  }

  async delete(key: string): Promise<Version> {
    this.#assertOpen();
    assertValidKey(key, backend);
    await this.#settleLapsed(key);
    return versionOf(await this.#publish(key, new Uint8Array(0), 'delete', undefined, 'DEL'), 'delete');
  }

  async deleteWithVersion(key: string, expected: Version): Promise<Version> {
    this.#assertOpen();
    assertValidKey(key, backend);
    this.#assertConditionalWrites(key);
    const seq = this.#expectedLiveSeq(key, expected);
    return versionOf(await this.#publish(key, new Uint8Array(0), 'deleteWithVersion', { lastSubjectSequence: seq }, 'DEL'), 'delete');
  }

  /**
   * Writes `value` with a TTL. The put carries its expiry in a header, and an
   * entry in the bucket's companion stream indexes it for the sweepers, which
   * replace a passed TTL with a delete marker (an `expire` event). Reads hide
   * a passed TTL at once, by this client's clock.
   */
  async putWithTtl(key: string, value: Uint8Array, ttlMs: number): Promise<Version> {
    this.#assertWritable(key, value);
    this.#assertConditionalWrites(key);
    assertTtl(ttlMs, backend, key);
    const expiresAt = Date.now() + Math.max(1, Math.ceil(ttlMs));
    // The index entry first: a put with a TTL is never left without one for the sweepers to find.
    await this.#ensureMetaStream();
    await this.#call(key, () =>
      this.#parts.client.publish(this.#ttlSubject(key), new TextEncoder().encode(String(expiresAt)), { timeout: this.#parts.timeoutMs }),
    );
    await this.#settleLapsed(key);
    const headers = makeHeaders();
    headers.set(expiresHeader, String(expiresAt));
    return versionOf(await this.#publish(key, value, 'putWithTtl', undefined, undefined, headers), 'put', expiresAt);
  }

  /**
   * Turns every entry whose TTL has passed into an `expire` event now (the
   * background sweeper calls this every `sweepIntervalMs`): a delete marker
   * written only if the entry is still the key's latest message.
   *
   * @returns how many entries expired
   */
  async sweepExpired(): Promise<number> {
    this.#assertOpen();
    const due: Array<{ key: string; expiresAt: number; seq: number }> = [];
    const now = Date.now();
    for (const entry of await this.#ttlIndex()) if (entry.expiresAt <= now) due.push(entry);
    let expiredCount = 0;
    for (const entry of due) {
      const current = await this.#lastMessage(entry.key);
      if (current !== undefined && current.op === 'put' && current.expiresAt === entry.expiresAt) {
        if (await this.#writeExpireMarker(entry.key, current.seq, 'sweepExpired')) expiredCount++;
      }
      // Removes this index entry only, never a newer one written for the key since.
      await this.#call(entry.key, () =>
        this.#parts.manager.streams.purge(metaStreamName(this.bucket), { filter: this.#ttlSubject(entry.key), seq: entry.seq + 1 }),
      );
    }
    return expiredCount;
  }

  /** With `expireBeforeNextWrite`: writes the expire marker of the key's passed, unswept TTL, if it has one. */
  async #settleLapsed(key: string): Promise<void> {
    if (!this.capabilities.expireBeforeNextWrite) return;
    const current = await this.#lastMessage(key);
    if (current !== undefined && expired(current)) await this.#writeExpireMarker(key, current.seq, 'settleExpired');
  }

  /**
   * Replaces the key's latest message, `seq` (a put whose TTL passed), with an
   * expire marker, by compare-and-swap on it. False when something was
   * written meanwhile: the newer write replaced the value, nothing to expire.
   */
  async #writeExpireMarker(key: string, seq: number, operation: string): Promise<boolean> {
    const headers = makeHeaders();
    headers.set(keyHeader, 'DEL');
    headers.set(weftOpHeader, 'expire');
    try {
      await this.#publish(key, new Uint8Array(0), operation, { lastSubjectSequence: seq }, undefined, headers);
      return true;
    } catch (error) {
      if (!KvError.is(error, KvErrorCode.RevisionMismatch)) throw error;
      return false;
    }
  }

  async purge(key: string): Promise<Version> {
    this.#assertOpen();
    assertValidKey(key, backend);
    await this.#settleLapsed(key);
    return versionOf(await this.#publish(key, new Uint8Array(0), 'purge', undefined, 'PURGE'), 'purge');
  }

  compareCursors(a: WatchCursor, b: WatchCursor): number {
    return parseCursor(a).seq - parseCursor(b).seq;
  }

  watch(options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    this.#assertOpen();
    const prefixes = normalizePrefixes(options.prefixes, backend);
    const from = options.from === undefined ? undefined : parseCursor(options.from);
    assertSignal(options.signal, backend);
    const signal = options.signal === undefined ? this.#closing.signal : AbortSignal.any([options.signal, this.#closing.signal]);
    return { [Symbol.asyncIterator]: () => this.#watch(prefixes, from, signal) };
  }

  /** Ephemeral consumers on the bucket's stream right now (what running watches and listings hold on the server). */
  async consumerCount(): Promise<number> {
    const info = await this.#call(undefined, () => this.#parts.manager.streams.info(this.#stream));
    return info.state.consumer_count;
  }

  /**
   * The horizon recorded by {@link NatsKvStore.compact}: watches resumed from
   * a cursor below it fail with `CursorExpired`. `0` when the bucket was never compacted.
   */
  async horizon(): Promise<number> {
    const stored = await this.#call(undefined, async () => {
      try {
        return await this.#parts.manager.streams.getMessage(metaStreamName(this.bucket), { last_by_subj: this.#horizonSubject });
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return null;
        throw error;
      }
    });
    return stored === null ? 0 : Number(new TextDecoder().decode(stored.data)) || 0;
  }

  /**
   * Removes tombstones (delete and purge markers) older than `olderThanMs`,
   * as `nats kv compact` does, so deleted keys stop taking space. The newest
   * removed marker becomes the horizon, recorded durably before anything is
   * removed, so a watch resumed from before it fails with `CursorExpired`
   * instead of missing a delete.
   *
   * @returns how many tombstones were removed
   */
  async compact(options: { olderThanMs?: number } = {}): Promise<{ removedTombstones: number; horizon: number }> {
    this.#assertOpen();
    const olderThanMs = options.olderThanMs ?? 30 * 60 * 1000;
    const cutoff = Date.now() - olderThanMs;
    const doomed: StreamedMessage[] = [];
    const controller = new AbortController();
    const signal = AbortSignal.any([controller.signal, this.#closing.signal]);
    const head = (await this.#streamInfo()).state.last_seq;
    try {
      for await (const message of this.#consume(undefined, { policy: 'last-per-subject' }, true, signal)) {
        if (message === 'caught-up' || message.seq > head) break;
        if (message.op !== 'put' && message.timeMs <= cutoff) doomed.push(message);
        if (message.pending === 0) break;
      }
    } finally {
      controller.abort();
    }
    const previous = await this.horizon();
    if (doomed.length === 0) return { removedTombstones: 0, horizon: previous };
    const horizon = Math.max(previous, ...doomed.map((message) => message.seq));
    await this.#recordHorizon(horizon);
    for (const marker of doomed) {
      // Removes the marker and anything older on its subject, never a newer write.
      await this.#call(marker.key, () =>
        this.#parts.manager.streams.purge(this.#stream, { filter: this.#subjectPrefix + marker.key, seq: marker.seq + 1 }),
      );
    }
    return { removedTombstones: doomed.length, horizon };
  }

  get #horizonSubject(): string {
    return `$WEFT.${this.bucket}.horizon`;
  }

  async #recordHorizon(horizon: number): Promise<void> {
    await this.#ensureMetaStream();
    await this.#call(undefined, () =>
      this.#parts.client.publish(this.#horizonSubject, new TextEncoder().encode(String(horizon)), { timeout: this.#parts.timeoutMs }),
    );
  }

  /** The companion stream `WEFT_<bucket>`: the compaction horizon and the TTL index, one message per subject. */
  async #ensureMetaStream(): Promise<void> {
    if (this.#metaStreamReady) return;
    const { manager } = this.#parts;
    const name = metaStreamName(this.bucket);
    await this.#call(undefined, async () => {
      try {
        await manager.streams.info(name);
      } catch (error) {
        if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
        try {
          await manager.streams.add({
            name,
            subjects: [`$WEFT.${this.bucket}.>`],
            max_msgs_per_subject: 1,
            num_replicas: this.#parts.info.config.num_replicas,
          });
        } catch (addError) {
          // Another handle created it first.
          if (!(addError instanceof JetStreamApiError && addError.code === 10058)) throw addError;
        }
      }
    });
    this.#metaStreamReady = true;
  }

  #ttlSubject(key: string): string {
    return `$WEFT.${this.bucket}.ttl.${key}`;
  }

  /** Every TTL index entry of the bucket, read with a short-lived consumer on the companion stream. */
  async #ttlIndex(): Promise<Array<{ key: string; expiresAt: number; seq: number }>> {
    const { manager, client } = this.#parts;
    const stream = metaStreamName(this.bucket);
    const prefix = `$WEFT.${this.bucket}.ttl.`;
    const name = `weft_ttl_${nuid.next()}`;
    let created: ConsumerInfo;
    try {
      // One cheap request when no key has a TTL: the consumer below is created only when there are entries.
      const info = await manager.streams.info(stream, { subjects_filter: `${prefix}>` });
      if (Object.keys(info.state.subjects ?? {}).length === 0) return [];
      created = await manager.consumers.add(stream, {
        name,
        ack_policy: AckPolicy.None,
        mem_storage: true,
        num_replicas: 1,
        inactive_threshold: nanos(30_000),
        filter_subject: `${prefix}>`,
        deliver_policy: DeliverPolicy.LastPerSubject,
      });
    } catch (error) {
      if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return [];
      throw toKvError(error, 'sweepExpired', undefined, false);
    }
    const entries: Array<{ key: string; expiresAt: number; seq: number }> = [];
    try {
      let pending = created.num_pending;
      const consumer = await client.consumers.get(stream, name);
      while (pending > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(pending, 1000), expires: fetchExpiresMs });
        let received = 0;
        for await (const message of batch) {
          received++;
          pending = message.info.pending;
          const expiresAt = Number(new TextDecoder().decode(message.data));
          if (Number.isSafeInteger(expiresAt) && message.subject.startsWith(prefix)) {
            entries.push({ key: message.subject.slice(prefix.length), expiresAt, seq: message.info.streamSequence });
          }
        }
        if (received === 0) break;
      }
    } catch (error) {
      throw toKvError(error, 'sweepExpired', undefined, false);
    } finally {
      await manager.consumers.delete(stream, name).catch(() => undefined);
    }
    return entries;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.#closing.abort();
    await this.#sweeping?.catch(() => undefined);
    if (this.#parts.owned) await this.#parts.connection.close().catch(() => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async *#watch(
    prefixes: string[] | undefined,
    from: { seq: number; epoch: string } | undefined,
    signal: AbortSignal,
  ): AsyncGenerator<WatchEvent> {
    this.#assertOpen();
    if (from !== undefined && from.epoch !== this.#epoch) {
      throw kvError(KvErrorCode.CursorExpired, backend, `the cursor is from an earlier incarnation of bucket '${this.bucket}'; re-list`);
    }
    const head = await this.#streamInfo();
    let synced = false;
    let syncedAt = head.state.last_seq;
    if (from !== undefined) {
      this.#assertResumable(from.seq, head, await this.horizon());
      syncedAt = Math.max(from.seq, head.state.last_seq);
    }
    const delivery: Delivery = from === undefined ? { policy: 'last-per-subject' } : { policy: 'after', seq: from.seq };
    const syncedEvent = (): WatchEvent => ({ type: 'synced', cursor: cursorOf(syncedAt, this.#epoch) });
    try {
      for await (const message of this.#consume(prefixes, delivery, false, signal)) {
        if (message === 'caught-up') {
          if (!synced) {
            synced = true;
            yield syncedEvent();
          }
          continue;
        }
        // Everything up to the head as of the start has been delivered once a later message shows up,
        // so `synced` cannot be held back by a steady stream of new writes.
        if (!synced && message.seq > syncedAt) {
          synced = true;
          yield syncedEvent();
        }
        // The state-sync listing shows live values only: tombstones up to its snapshot are not changes.
        const inListing = from === undefined && !synced;
        if (keyMatchesAnyPrefix(message.key, prefixes) && !(inListing && (message.op !== 'put' || expired(message)))) {
          yield eventOf(message, this.#epoch);
        }
        if (!synced && message.pending === 0) {
          synced = true;
          yield syncedEvent();
        }
      }
      this.#assertOpen();
    } catch (error) {
      throw toKvError(error, 'watch', undefined, false);
    }
  }

  #assertResumable(seq: number, info: StreamInfo, horizon: number): void {
    if (seq < horizon) {
      throw kvError(KvErrorCode.CursorExpired, backend, `tombstones after cursor ${seq} were compacted away (horizon ${horizon}); re-list`);
    }
    if (Date.parse(info.created).toString(36) !== this.#epoch) {
      throw kvError(KvErrorCode.CursorExpired, backend, `bucket '${this.bucket}' was recreated; re-list`);
    }
    if (seq > info.state.last_seq) {
      throw kvError(
        KvErrorCode.CursorExpired,
        backend,
        `cursor ${seq} is ahead of the bucket (last sequence ${info.state.last_seq}); re-list`,
      );
    }
    // KV streams lose messages only to per-key history limits and purge rollups, which always leave a newer
    // message for the key. Stream-wide limits (age, count, bytes) remove changes outright.
    const config = info.config;
    const lossy = config.max_age > 0 || config.max_msgs > 0 || config.max_bytes > 0;
    if (lossy && seq + 1 < info.state.first_seq) {
      throw kvError(
        KvErrorCode.CursorExpired,
        backend,
        `changes after cursor ${seq} may have been removed by the stream's limits (first sequence ${info.state.first_seq}); re-list`,
      );
    }
  }

  /**
   * Streams messages from an ephemeral consumer this watch owns, recreating it
   * from the last delivered sequence after any failure (a server restart, a
   * lost consumer, a gap in delivery) and deleting it when iteration ends.
   * Yields `'caught-up'` whenever the consumer has nothing pending.
   */
  async *#consume(
    prefixes: string[] | undefined,
    delivery: Delivery,
    headersOnly: boolean,
    signal: AbortSignal,
  ): AsyncGenerator<StreamedMessage | 'caught-up'> {
    const { manager, client } = this.#parts;
    let position = delivery.policy === 'after' ? delivery.seq : 0;
    let initial = delivery.policy === 'last-per-subject';
    let consumerName: string | undefined;
    let failures = 0;
    try {
      while (!signal.aborted) {
        try {
          if (consumerName !== undefined) {
            const stale = consumerName;
            consumerName = undefined;
            void manager.consumers.delete(this.#stream, stale).catch(() => undefined);
          }
          const info = await this.#streamInfo();
          if (!initial && position > 0) this.#assertResumable(position, info, await this.horizon());
          const name = `weft_${nuid.next()}`;
          const config: Partial<ConsumerConfig> = {
            name,
            ack_policy: AckPolicy.None,
            mem_storage: true,
            num_replicas: 1,
            inactive_threshold: nanos(30_000),
            headers_only: headersOnly,
            ...this.#filter(prefixes),
            ...(initial
              ? { deliver_policy: DeliverPolicy.LastPerSubject }
              : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: position + 1 }),
          };
          const created = await manager.consumers.add(this.#stream, config);
          consumerName = name;
          if (created.num_pending === 0) {
            // Nothing matched up to the head as of creation, so the head is where this consumer stands.
            position = Math.max(position, info.state.last_seq);
            initial = false;
            yield 'caught-up';
          }
          const consumer = await client.consumers.get(this.#stream, name);
          let expectedDelivery = 1;
          for (;;) {
            if (signal.aborted) return;
            const batch = await consumer.fetch({
              max_messages: pageSize,
              expires: fetchExpiresMs,
              idle_heartbeat: fetchHeartbeatMs,
            });
            const stop = () => batch.stop();
            signal.addEventListener('abort', stop, { once: true });
            // A fetch whose server went away can wait forever across a reconnect; a stalled fetch recreates the consumer.
            let stalled = false;
            let watchdog: ReturnType<typeof setTimeout> | undefined;
            const arm = () => {
              watchdog = setTimeout(() => {
                stalled = true;
                batch.stop();
              }, fetchStallMs);
            };
            arm();
            let received = 0;
            try {
              for await (const message of batch) {
                clearTimeout(watchdog);
                try {
                  received++;
                  // A skipped delivery means a lost batch: start over from what was delivered.
                  if (message.info.deliverySequence !== expectedDelivery) throw new GapError();
                  expectedDelivery++;
                  failures = 0;
                  const seq = message.info.streamSequence;
                  const decoded = this.#decode(message, seq);
                  // After a restart of the listing, what was already delivered is skipped.
                  if (seq <= position) {
                    if (message.info.pending === 0) {
                      initial = false;
                      yield 'caught-up';
                    }
                    continue;
                  }
                  position = seq;
                  if (decoded !== undefined) yield decoded;
                  if (message.info.pending === 0) {
                    initial = false;
                    yield 'caught-up';
                  }
                } finally {
                  arm();
                }
              }
            } finally {
              clearTimeout(watchdog);
              signal.removeEventListener('abort', stop);
            }
            if (stalled) throw new StalledFetchError();
            if (received === 0 && !initial) yield 'caught-up';
            // A consumer that is catching up may be behind a compaction: make sure nothing it needs was removed.
            if (received === pageSize && !initial && position < (await this.horizon())) {
              this.#assertResumable(position, await this.#streamInfo(), await this.horizon());
            }
          }
        } catch (error) {
          if (signal.aborted) return;
          if (KvError.is(error, KvErrorCode.CursorExpired)) throw error;
          if (this.#parts.connection.isClosed()) {
            throw kvError(KvErrorCode.NotConnected, backend, 'the NATS connection was closed', { cause: error });
          }
          failures++;
          await sleep(Math.min(2000, 50 * 2 ** Math.min(failures, 6)), signal);
        }
      }
    } finally {
      if (consumerName !== undefined) {
        const name = consumerName;
        const giveUp = new AbortController();
        await Promise.race([manager.consumers.delete(this.#stream, name).catch(() => undefined), sleep(2000, giveUp.signal)]);
        giveUp.abort();
      }
    }
  }

  #filter(prefixes: string[] | undefined): Partial<ConsumerConfig> {
    if (prefixes === undefined) return { filter_subject: `${this.#subjectPrefix}>` };
    if (this.#nativeMultiFilter) {
      return { filter_subjects: prefixes.flatMap((prefix) => [this.#subjectPrefix + prefix, `${this.#subjectPrefix}${prefix}.>`]) };
    }
    // NATS 2.9 has one filter per consumer: filter on the prefixes' common parent, and the client filters the rest.
    const parents = prefixes.map((prefix) => prefix.split('.').slice(0, -1));
    const common: string[] = [];
    for (let index = 0; ; index++) {
      const token = parents[0]?.[index];
      if (token === undefined || parents.some((parent) => parent[index] !== token)) break;
      common.push(token);
    }
    return { filter_subject: `${this.#subjectPrefix}${common.map((token) => `${token}.`).join('')}>` };
  }

  #decode(message: JsMsg, seq: number): StreamedMessage | undefined {
    if (!message.subject.startsWith(this.#subjectPrefix)) return undefined;
    const key = message.subject.slice(this.#subjectPrefix.length);
    return {
      seq,
      key,
      op: operationOf(message.headers),
      expiresAt: expiryOf(message.headers),
      data: copy(message.data),
      pending: message.info.pending,
      timeMs: Math.floor(Number(message.info.timestampNanos) / 1_000_000),
    };
  }

  #listing(prefix: string | undefined, headersOnly: boolean): AsyncIterable<KvEntry> {
    this.#assertOpen();
    if (prefix !== undefined) assertValidPrefix(prefix, backend);
    const store = this;
    return {
      async *[Symbol.asyncIterator]() {
        const controller = new AbortController();
        const signal = AbortSignal.any([controller.signal, store.#closing.signal]);
        // The listing is of the bucket as of now: it ends at today's last sequence even while writes go on.
        const head = (await store.#streamInfo()).state.last_seq;
        try {
          for await (const message of store.#consume(
            prefix === undefined ? undefined : [prefix],
            { policy: 'last-per-subject' },
            headersOnly,
            signal,
          )) {
            if (message === 'caught-up' || message.seq > head) return;
            if (message.op === 'put' && !expired(message) && keyMatchesPrefix(message.key, prefix)) {
              yield { key: message.key, value: message.data, version: versionOf(message.seq, 'put', message.expiresAt) };
            }
            if (message.pending === 0) return;
          }
          store.#assertOpen();
        } finally {
          controller.abort();
        }
      },
    };
  }

  async #lastMessage(key: string): Promise<StreamedMessage | undefined> {
    const stored = await this.#call(key, () =>
      this.#parts.manager.streams.getMessage(this.#stream, { last_by_subj: this.#subjectPrefix + key }),
    );
    if (stored === null) return undefined;
    return {
      seq: stored.seq,
      key,
      op: operationOf(stored.header),
      expiresAt: expiryOf(stored.header),
      data: copy(stored.data),
      pending: 0,
      timeMs: stored.time.getTime(),
    };
  }

  async #streamInfo(): Promise<StreamInfo> {
    return this.#call(undefined, () => this.#parts.manager.streams.info(this.#stream));
  }

  async #publish(
    key: string,
    value: Uint8Array,
    operation: string,
    expect?: { lastSubjectSequence: number },
    marker?: 'DEL' | 'PURGE',
    given?: MsgHdrs,
  ): Promise<number> {
    let headers: MsgHdrs | undefined = given;
    if (marker !== undefined) {
      headers ??= makeHeaders();
      headers.set(keyHeader, marker);
      if (marker === 'PURGE') headers.set(rollupHeader, 'sub');
    }
    // A replicated stream's leader answers 10164 ("wrong last sequence", no number) when another write to the
    // subject is still in flight: it cannot tell yet whether the expectation holds, and nothing was written.
    // Taking that for a mismatch breaks linearizability (a later read may not see the in-flight write yet), so
    // the same conditional publish is tried again until the leader can decide.
    for (let undecided = 0; ; undecided++) {
      try {
        const ack = await this.#parts.client.publish(this.#subjectPrefix + key, value, {
          ...(expect === undefined ? {} : { expect }),
          ...(headers === undefined ? {} : { headers }),
          timeout: this.#parts.timeoutMs,
        });
        return ack.seq;
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown) {
          if (undecided < maxUndecidedRetries) {
            await sleep(Math.min(50, 1 + undecided * 2));
            continue;
          }
          throw kvError(
            KvErrorCode.Timeout,
            backend,
            `the server could not decide the expected version ${expect?.lastSubjectSequence ?? '?'} while other writes to the key were in flight; nothing was written`,
            { key, cause: error, retryable: true },
          );
        }
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequence) {
          throw kvError(
            KvErrorCode.RevisionMismatch,
            backend,
            `expected version ${expect?.lastSubjectSequence ?? '?'} is not the current one`,
            {
              key,
              cause: error,
            },
          );
        }
        throw toKvError(error, operation, key, true);
      }
    }
  }

  /** A version's sequence when it names a live value; tombstone versions can never match. */
  #expectedLiveSeq(key: string, expected: Version): number {
    const parsed = parseVersion(expected, key);
    if (parsed.op !== 'put') {
      throw kvError(KvErrorCode.RevisionMismatch, backend, `expected version ${expected} is a tombstone, not a live value`, { key });
    }
    if (parsed.expiresAt > 0 && parsed.expiresAt <= Date.now()) {
      throw kvError(KvErrorCode.RevisionMismatch, backend, `expected version ${expected} has expired`, { key });
    }
    return parsed.seq;
  }

  async #call<T>(key: string | undefined, call: () => Promise<T>): Promise<T> {
    this.#assertOpen();
    try {
      return await call();
    } catch (error) {
      throw toKvError(error, 'read', key, false);
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw kvError(KvErrorCode.Closed, backend, `the handle on bucket '${this.bucket}' is closed`);
  }

  #assertWritable(key: string, value: Uint8Array): void {
    this.#assertOpen();
    assertValidKey(key, backend);
    assertValue(value, this.capabilities.maxValueBytes, backend, key);
  }

  #assertConditionalWrites(key: string): void {
    if (this.#conditionalWrites) return;
    const reason = conditionalWritesUnsupported(this.#parts.version, this.#parts.info.config.num_replicas) as string;
    throw kvError(KvErrorCode.Unsupported, backend, reason, { key });
  }
}

class GapError extends Error {
  override readonly name = 'GapError';
  constructor() {
    super('a delivery was skipped; the consumer is recreated from the last delivered sequence');
  }
}

function operationOf(headers: MsgHdrs | undefined): 'put' | 'delete' | 'purge' | 'expire' {
  const operation = headers?.get(keyHeader);
  if (operation === 'DEL') return headers?.get(weftOpHeader) === 'expire' ? 'expire' : 'delete';
  if (operation === 'PURGE') return 'purge';
  return 'put';
}

/** A put's TTL from its header: 0 for none (or a header that is not a time). */
function expiryOf(headers: MsgHdrs | undefined): number {
  const text = headers?.get(expiresHeader);
  if (text === undefined || text === '') return 0;
  const value = Number(text);
  return Number.isSafeInteger(value) && value > 0 ? value : 0;
}

function expired(message: StreamedMessage): boolean {
  return message.op === 'put' && message.expiresAt > 0 && message.expiresAt <= Date.now();
}

function eventOf(message: StreamedMessage, epoch: string): WatchEvent {
  const cursor = cursorOf(message.seq, epoch);
  if (message.op === 'put') {
    return { type: 'put', key: message.key, value: message.data, version: versionOf(message.seq, 'put', message.expiresAt), cursor };
  }
  if (message.op === 'expire') return { type: 'expire', key: message.key, cursor };
  return { type: message.op, key: message.key, version: versionOf(message.seq, message.op), cursor };
}

/**
 * Versions are the stream sequence (what `nats kv` shows as the revision);
 * tombstones carry a suffix so CAS against a deleted key can never match, and
 * a put with a TTL carries its expiry, so CAS against it fails once it passed.
 */
function versionOf(seq: number, op: 'put' | 'delete' | 'purge', expiresAt = 0): Version {
  if (op === 'put') return (expiresAt > 0 ? `${seq}-t${expiresAt.toString(36)}` : String(seq)) as Version;
  return `${seq}-${op === 'delete' ? 'd' : 'p'}` as Version;
}

function parseVersion(version: unknown, key: string): { seq: number; op: 'put' | 'delete' | 'purge'; expiresAt: number } {
  if (typeof version === 'string') {
    const match = /^([1-9][0-9]{0,15})(?:(-d|-p)|-t([0-9a-z]{1,11}))?$/.exec(version);
    if (match !== null) {
      const op = match[2] === '-d' ? 'delete' : match[2] === '-p' ? 'purge' : 'put';
      return { seq: Number(match[1]), op, expiresAt: match[3] === undefined ? 0 : Number.parseInt(match[3], 36) };
    }
  }
  throw kvError(KvErrorCode.InvalidArgument, backend, `${describeArgument(version)} is not a version of the nats backend`, { key });
}

/** Cursors are `<stream sequence>@<epoch>`; the epoch ties them to one incarnation of the bucket's stream. */
function cursorOf(seq: number, epoch: string): WatchCursor {
  return `${seq}@${epoch}` as WatchCursor;
}

function parseCursor(cursor: unknown): { seq: number; epoch: string } {
  if (typeof cursor === 'string') {
    const match = /^(0|[1-9][0-9]{0,15})@([0-9a-z]{1,16})$/.exec(cursor);
    if (match !== null) return { seq: Number(match[1]), epoch: match[2] as string };
  }
  throw kvError(KvErrorCode.InvalidArgument, backend, `${describeArgument(cursor)} is not a cursor of the nats backend`);
}

function copy(value: Uint8Array): Uint8Array {
  return new Uint8Array(value);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** How often a conditional publish is tried again while the leader cannot decide it (about 2 s in all). */
const maxUndecidedRetries = 60;

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Maps a nats.js failure to a typed error; a publish without an answer is `Indeterminate`. */
export function toKvError(error: unknown, operation: string, key: string | undefined, isWrite: boolean): KvError {
  if (error instanceof KvError) return error;
  const extra = { key, cause: error };
  const message = messageOf(error);
  if (error instanceof TimeoutError || (error instanceof Error && /timeout/i.test(error.message))) {
    if (isWrite)
      return kvError(
        KvErrorCode.Indeterminate,
        backend,
        `${operation}: no acknowledgement in time; the write may or may not have been applied`,
        extra,
      );
    return kvError(KvErrorCode.Timeout, backend, `${operation}: NATS did not answer in time`, extra);
  }
  if (error instanceof NoRespondersError || (error instanceof JetStreamApiError && error.code === 503)) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: JetStream is not available right now (${message})`, {
      ...extra,
      retryable: true,
    });
  }
  if (error instanceof ClosedConnectionError)
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: the NATS connection is closed`, extra);
  if (error instanceof Error && /MAX_PAYLOAD|max payload|maximum payload/i.test(message)) {
    return kvError(KvErrorCode.ValueTooLarge, backend, `${operation}: ${message}`, extra);
  }
  return kvError(KvErrorCode.OperationFailed, backend, `${operation} failed: ${message}`, extra);
}

class StalledFetchError extends Error {
  override readonly name = 'StalledFetchError';
  constructor() {
    super('a fetch neither delivered nor ended in time; the consumer is recreated from the last delivered sequence');
  }
}
