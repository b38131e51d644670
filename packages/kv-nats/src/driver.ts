import {
  JetStreamApiCodes,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type MsgRequest,
  type StoredMsg,
  type StreamInfo,
} from '@nats-io/jetstream';
import { type MsgHdrs, headers as makeHeaders, type NatsConnection } from '@nats-io/nats-core';
import { unrefTimer } from '@weft/common';
import { type KvCapabilities, type KvEntry, KvError, type KvRecord, keyMatchesPrefix, type Version } from '@weft/kv';
import {
  alreadyExists,
  type ChangeRequest,
  Deadlines,
  type KvCommitMutation,
  type KvDriver,
  KvErrorCode,
  type KvMutation,
  type KvMutationKind,
  kvError,
  pause,
  revisionMismatch,
} from '@weft/kv/backend';
import { changeFeed } from './change-feed.js';
import {
  BucketSubjects,
  epochOf,
  expired,
  expiresHeader,
  expiryOf,
  keyHeader,
  type NatsPosition,
  natsCursors,
  operationOf,
  type ParsedVersion,
  parseVersion,
  rollupHeader,
  type StreamedMessage,
  serverTtl,
  ttlHeader,
  versionOf,
  WriteIds,
  writeIdHeader,
  writeIdOf,
} from './codec.js';
import { ConnectionGate } from './connection-gate.js';
import { consume, fetchStallMs, filterSubjects } from './consumer.js';
import { backend, toKvError } from './errors.js';
import { markerHorizon } from './horizon.js';
import { lastMessages, lastMessagesUpTo } from './last-messages.js';
import { confirmLeader } from './leader.js';
import {
  atomicBatchSince,
  compareVersions,
  conditionalWritesUnsupported,
  nativeTtlUnavailable,
  parseServerVersion,
  type ServerVersion,
} from './server-version.js';
import { publishTtlIndexEntry, settleLapsed, sweepExpired, writeExpireMarker } from './ttl-index.js';
import { VouchedVersions } from './vouched.js';

/** What {@link openNatsKv} hands the driver. */
export interface NatsParts {
  readonly connection: NatsConnection;
  readonly owned: boolean;
  readonly manager: JetStreamManager;
  readonly client: JetStreamClient;
  readonly bucket: string;
  readonly version: ServerVersion;
  readonly info: StreamInfo;
  readonly timeoutMs: number;
  readonly watchOutageMs: number;
  readonly sweepIntervalMs: number;
  readonly expireBeforeNextWrite: boolean;
}

/** How long close() waits for running watches to delete their consumers. */
const releaseWaitMs = 2000;

/** How often a conditional publish is tried again while the leader cannot decide it (about 2 s in all). */
const maxUndecidedRetries = 60;
/**
 * Waits before asking a replicated stream's leader again after its undecided
 * answer (10164: another write to the subject is in flight, nothing was
 * written); throws `unsettled()` once it answered so `maxUndecidedRetries`
 * times in a row.
 */
async function awaitDecision(undecided: number, unsettled: () => KvError): Promise<void> {
  if (undecided >= maxUndecidedRetries) throw unsettled();
  await pause(Math.min(50, 1 + undecided * 2));
}

/** Batch direct gets of last messages for many subjects (ADR-31), since nats-server 2.11. */
const batchDirectGetSince = parseServerVersion('2.11.0');

/** Keys per batch direct get: one request, its answers streamed back. */
const batchReadKeys = 256;

/** How many times in a row a commit is sent again after deletes of its keys raced it. */
const maxTombstoneRaces = 50;

/**
 * The NATS driver: records are plain KV messages on the bucket's stream,
 * compare-and-swap is expected-last-subject-sequence, reads are the stream
 * leader's message get of a subject's last message (read-your-writes), and
 * listings and watches run on ephemeral consumers (`consumer.ts`).
 */
export class NatsDriver implements KvDriver<NatsPosition> {
  readonly backend = backend;
  readonly bucket: string;
  readonly capabilities: KvCapabilities;
  readonly cursors = natsCursors;
  readonly parts: NatsParts;
  /**
   * The front's backstop behind the client's own request timeouts: a read,
   * write or listing step that has not settled after `timeoutMs` plus the
   * time a fetch may take before it is presumed lost.
   */
  readonly deadlines: Deadlines;
  readonly subjects: BucketSubjects;
  /** Identifies the stream's incarnation at open. */
  readonly epoch: string;
  readonly nativeMultiFilter: boolean;
  /**
   * Whether fetches are limited by bytes (`max_bytes`). nats-server 2.9
   * skips the message that would pass a fetch's byte limit (seen on 2.9.10:
   * one message lost per page), so older servers get pages counted in
   * messages, sized from the largest message seen.
   */
  readonly fetchByBytes: boolean;
  /** Whether TTLs are the server's own (see {@link nativeTtlUnavailable}) instead of emulated with sweepers. */
  readonly nativeTtl: boolean;
  /** The bucket takes atomic batches: `commit` runs on them. */
  readonly atomicBatch: boolean;
  /**
   * `getMany` reads many keys per request: a batch direct get of their last
   * messages (nats-server 2.11+, `allow_direct`), on a one-replica stream,
   * whose only replica answers as its leader would. A replicated stream's
   * direct gets may be answered by a follower behind the leader, so there
   * each key is read from the leader on its own, as `get` reads it.
   */
  readonly batchReads: boolean;
  /** Whether the server serialises conditional publishes on this stream (see {@link conditionalWritesUnsupported}). */
  readonly conditionalWrites: boolean;
  /**
   * The stream has more than one replica: what its leader reads, and the
   * refusals it decides alone, are trusted only once it is confirmed to have
   * heard from a quorum recently (see {@link confirmLeader}).
   */
  readonly replicated: boolean;
  /** Aborted when the handle closes. */
  readonly closing = new AbortController();
  /** The ids of the puts this handle writes. */
  readonly writeIds = new WriteIds();
  /** Requests wait here while the connection is down (see {@link ConnectionGate}). */
  readonly gate: ConnectionGate;
  /** Settle once each running listing or watch has deleted its consumer; close() waits for them before it disconnects. */
  readonly consumersReleased = new Set<Promise<void>>();
  #closed = false;
  #sweeper: NodeJS.Timeout | undefined;
  #sweeping: Promise<number> | undefined;
  /** Versions a compare-and-swap may use without reading the key first. */
  readonly #vouched: VouchedVersions;
  /** Set once the companion stream is known to exist. */
  metaStreamReady = false;
  /** Set by a sweep that found no TTL index entry at all. */
  ttlIndexEmpty = false;
  /** The last error of the background sweeper, if its latest run failed. */
  lastSweepError: KvError | undefined;

  constructor(parts: NatsParts) {
    this.parts = parts;
    this.gate = new ConnectionGate(parts.connection);
    this.deadlines = new Deadlines(parts.timeoutMs + fetchStallMs);
    this.bucket = parts.bucket;
    this.subjects = new BucketSubjects(parts.bucket);
    this.epoch = epochOf(parts.info.created);
    this.nativeMultiFilter = compareVersions(parts.version, parseServerVersion('2.10.0')) >= 0;
    this.fetchByBytes = compareVersions(parts.version, parseServerVersion('2.11.0')) >= 0;
    const config = parts.info.config;
    this.conditionalWrites = conditionalWritesUnsupported(parts.version, config.num_replicas) === undefined;
    this.nativeTtl = nativeTtlUnavailable(parts.version, config) === undefined;
    this.atomicBatch =
      compareVersions(parts.version, atomicBatchSince) >= 0 && (config as { allow_atomic?: boolean }).allow_atomic === true;
    this.batchReads = compareVersions(parts.version, batchDirectGetSince) >= 0 && config.allow_direct === true && config.num_replicas === 1;
    this.replicated = config.num_replicas > 1;
    this.#vouched = new VouchedVersions(this.gate, parts.connection, parts.info);
    // Headers and the subject travel in the same message; keep room for them below the server's limit.
    const serverLimit = (parts.connection.info?.max_payload ?? 1024 * 1024) - 1024;
    const streamLimit = config.max_msg_size > 0 ? config.max_msg_size - 1024 : Number.POSITIVE_INFINITY;
    this.capabilities = Object.freeze({
      // The server expires natively; the emulation's sweeper writes its expire markers with compare-and-swap.
      ttl: this.nativeTtl || this.conditionalWrites,
      purge: true,
      multiPrefixWatch: this.nativeMultiFilter ? 'native' : 'emulated',
      maxValueBytes: Math.max(0, Math.min(serverLimit, streamLimit)),
      readYourWrites: true,
      history: config.max_msgs_per_subject > 0 ? config.max_msgs_per_subject : Number.POSITIVE_INFINITY,
      // Without the option, unconditional writes do not read the key first: one over a passed, unswept TTL replaces
      // it without an expire. The marker is written with compare-and-swap. With one version per key the write
      // that follows it removes the marker from the stream, so a watch may never see it.
      expireBeforeNextWrite: parts.expireBeforeNextWrite && this.conditionalWrites && config.max_msgs_per_subject !== 1,
      // Atomic batch publish (2.12+) on a stream that allows it; at most 1000 messages a batch (the server's limit).
      commit: this.atomicBatch ? { maxOps: 1000, maxBytes: 8 * 1024 * 1024 } : false,
    });
    if (parts.sweepIntervalMs > 0 && this.conditionalWrites) {
      this.#sweeper = setInterval(() => {
        if (this.#sweeping !== undefined) return;
        this.#sweeping = sweepExpired(this).finally(() => {
          this.#sweeping = undefined;
        });
        this.#sweeping.then(
          () => {
            this.lastSweepError = undefined;
            // With native TTLs the sweeper only drains what the emulation indexed before; it stops once that is done.
            if (this.nativeTtl && this.ttlIndexEmpty) clearInterval(this.#sweeper);
          },
          (error: unknown) => {
            if (!this.#closed) this.lastSweepError = toKvError(error, 'sweepExpired', undefined, false);
          },
        );
      }, parts.sweepIntervalMs);
      unrefTimer(this.#sweeper);
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    const record = await this.entry(key);
    return record?.op === 'put' ? { key, value: record.value, version: record.version } : undefined;
  }

  async getMany(keys: readonly string[]): Promise<(KvEntry | undefined)[]> {
    if (!this.batchReads && this.replicated) {
      // Each key from the leader, and one confirmation of the leader for them all.
      const generation = this.#vouched.generation;
      const [messages] = await Promise.all([
        Promise.all(keys.map((key) => this.#leaderMessage(key))),
        confirmLeader(this, keys[0], 'getMany'),
      ]);
      return keys.map((key, index) => this.#liveEntry(key, messages[index], generation));
    }
    if (!this.batchReads) return Promise.all(keys.map((key) => this.get(key)));
    const generation = this.#vouched.generation;
    const unique = [...new Set(keys)];
    const found = new Map<string, StreamedMessage>();
    for (let start = 0; start < unique.length; start += batchReadKeys) {
      const subjects = unique.slice(start, start + batchReadKeys).map((key) => this.subjects.record(key));
      const messages = await lastMessages(this, subjects);
      if (messages === undefined) throw new Error(`a batch read of ${subjects.length} keys was refused as too many`);
      for await (const message of messages) found.set(message.key, message);
    }
    return keys.map((key) => this.#liveEntry(key, found.get(key), generation));
  }

  /** What `get` gives for a key whose last message is `message`: a live, unexpired value, or nothing. */
  #liveEntry(key: string, message: StreamedMessage | undefined, generation: number): KvEntry | undefined {
    if (message === undefined || message.op !== 'put' || expired(message)) return undefined;
    return { key, value: message.data, version: this.#vouched.vouch(key, liveVersionOf(message), generation) };
  }

  async entry(key: string): Promise<KvRecord | undefined> {
    const generation = this.#vouched.generation;
    const message = await this.lastMessage(key);
    // A passed TTL reads as never written, before and after the sweeper has marked it.
    if (message === undefined || message.op === 'expire' || expired(message)) return undefined;
    if (message.op === 'put')
      return { key, op: 'put', value: message.data, version: this.#vouched.vouch(key, liveVersionOf(message), generation) };
    return { key, op: message.op, version: versionOf(message.seq, message.op) };
  }

  async *list(prefix: string | undefined, { values }: { readonly values: boolean }): AsyncGenerator<KvEntry> {
    const controller = new AbortController();
    const signal = AbortSignal.any([controller.signal, this.closing.signal]);
    // The listing is of the bucket as of now: it ends at today's last sequence even while writes go on.
    const head = (await this.streamInfo()).state.last_seq;
    if (this.batchReads && values) {
      // The last message of every key up to the head, in batch direct gets: no consumer at all.
      const snapshot = await lastMessagesUpTo(this, filterSubjects(this, prefix === undefined ? undefined : [prefix]), head);
      if (snapshot !== undefined) {
        for await (const message of snapshot) {
          const entry = listedEntry(message, prefix);
          if (entry !== undefined) yield entry;
        }
        return;
      }
    }
    // A replicated stream's consumer may sit on a follower that lags: it lists that follower's last messages, then
    // what the follower applies after. A key listed again means the listing already gave an older value for it.
    const listed = this.replicated ? new Set<string>() : undefined;
    try {
      for await (const message of consume(this, prefix === undefined ? undefined : [prefix], undefined, !values, signal, false)) {
        if (message === 'caught-up' || (message.kind === 'message' && message.seq > head)) return;
        if (message.kind !== 'message') continue;
        if (listed !== undefined) {
          if (listed.has(message.key)) {
            throw kvError(
              KvErrorCode.OperationFailed,
              backend,
              `the listing read a replica behind the stream's leader and gave an older value of '${message.key}' than the current one; list again`,
              { key: message.key, retryable: true },
            );
          }
          listed.add(message.key);
        }
        const entry = listedEntry(message, prefix);
        if (entry !== undefined) yield entry;
      }
    } finally {
      controller.abort();
    }
  }

  refusal(kind: KvMutationKind): string | undefined {
    if (this.conditionalWrites || kind === 'put' || kind === 'delete' || kind === 'purge') return undefined;
    return conditionalWritesUnsupported(this.parts.version, this.parts.info.config.num_replicas);
  }

  async mutate(mutation: KvMutation): Promise<Version> {
    const generation = this.#vouched.generation;
    return this.#vouched.vouch(mutation.key, await this.#mutate(mutation), generation);
  }

  async #mutate(mutation: KvMutation): Promise<Version> {
    const { key } = mutation;
    switch (mutation.kind) {
      case 'put': {
        await settleLapsed(this, key);
        const { headers, id } = this.#written();
        return versionOf(await this.publish(key, mutation.value, 'put', undefined, undefined, headers), 'put', 0, id);
      }
      case 'create':
        return this.#create(key, mutation.value);
      case 'update': {
        const seq = await this.#expectedLiveSeq(key, mutation.expected);
        const { headers, id } = this.#written();
        const published = this.publish(key, mutation.value, 'update', { lastSubjectSequence: seq }, undefined, headers);
        return versionOf(await this.#compared(key, mutation.expected, published, id), 'put', 0, id);
      }
      case 'delete':
        await settleLapsed(this, key);
        return versionOf(await this.publish(key, new Uint8Array(0), 'delete', undefined, 'DEL'), 'delete');
      case 'deleteWithVersion': {
        const seq = await this.#expectedLiveSeq(key, mutation.expected);
        // The marker carries a write id too: an attempt that landed though its answer was lost is recognised.
        const { headers, id } = this.#written();
        const published = this.publish(key, new Uint8Array(0), 'deleteWithVersion', { lastSubjectSequence: seq }, 'DEL', headers);
        return versionOf(await this.#compared(key, mutation.expected, published, id), 'delete');
      }
      case 'putWithTtl': {
        // The put carries its expiry to the millisecond in a header, and reads hide a passed TTL at once. A native
        // bucket also gives the server its TTL, in whole seconds and never shorter, and the server removes the put
        // and writes an expiry marker; otherwise an entry in the companion stream indexes it for the sweepers,
        // written first, so a put with a TTL is never left without one.
        const expiresAt = Date.now() + Math.max(1, Math.ceil(mutation.ttlMs));
        if (!this.nativeTtl) await publishTtlIndexEntry(this, key, expiresAt);
        await settleLapsed(this, key);
        const { headers, id } = this.#written();
        headers.set(expiresHeader, String(expiresAt));
        if (this.nativeTtl) headers.set(ttlHeader, serverTtl(mutation.ttlMs));
        return versionOf(await this.publish(key, mutation.value, 'putWithTtl', undefined, undefined, headers), 'put', expiresAt, id);
      }
      case 'purge':
        await settleLapsed(this, key);
        return versionOf(await this.publish(key, new Uint8Array(0), 'purge', undefined, 'PURGE'), 'purge');
    }
  }

  /**
   * One atomic batch (ADR-50): every message carries its precondition as an
   * expected last subject sequence, the server checks them all against the
   * stream before the batch and stores every message or none, at consecutive
   * sequences. Preconditions a read can decide (a live value under a create,
   * a tombstone or lapsed version expected) are refused before anything is
   * sent; when the server refuses the batch, the keys are read again to name
   * the first operation whose precondition failed.
   */
  async commit(mutations: readonly KvCommitMutation[]): Promise<Version[]> {
    if (!this.nativeTtl && mutations.some((mutation) => mutation.kind === 'putWithTtl')) {
      throw kvError(
        KvErrorCode.Unsupported,
        backend,
        'putWithTtl in a commit needs the server to hold TTLs (a bucket with native TTL): this bucket emulates them',
        { key: mutations.find((mutation) => mutation.kind === 'putWithTtl')?.key },
      );
    }
    if (mutations.length === 1) return [await this.mutate(mutations[0] as KvCommitMutation)];
    for (const { key } of mutations) await settleLapsed(this, key);
    // A create expects the sequence of the key's tombstone (or none); another tombstone written before the batch
    // lands makes the server refuse it though every precondition still holds: read again and send again.
    for (let attempt = 0; attempt < maxTombstoneRaces; attempt++) {
      const generation = this.#vouched.generation;
      const versions = await this.#commitOnce(mutations);
      if (versions !== undefined)
        return versions.map((version, index) => this.#vouched.vouch((mutations[index] as KvCommitMutation).key, version, generation));
    }
    throw kvError(
      KvErrorCode.Timeout,
      backend,
      `the commit lost ${maxTombstoneRaces} races against deletes of its keys in a row; nothing was written`,
      { key: mutations[0]?.key, retryable: true },
    );
  }

  /** One attempt of a commit: its versions, or `undefined` when the server refused it though every precondition holds again. */
  async #commitOnce(mutations: readonly KvCommitMutation[]): Promise<Version[] | undefined> {
    let expected: Array<number | undefined>;
    try {
      expected = await Promise.all(mutations.map((mutation) => this.#commitExpectation(mutation)));
    } catch (error) {
      // A read decided a precondition fails: name the first operation whose precondition fails, in op order.
      if (KvError.is(error, KvErrorCode.AlreadyExists) || KvError.is(error, KvErrorCode.RevisionMismatch))
        throw (await this.#commitRefusal(mutations, error)) ?? error;
      throw error;
    }
    const messages = mutations.map((mutation, index) => {
      const deletes = mutation.kind === 'delete' || mutation.kind === 'deleteWithVersion';
      const { headers, id } = deletes ? { headers: makeHeaders(), id: undefined } : this.#written();
      let value: Uint8Array = new Uint8Array(0);
      let expiresAt = 0;
      if (deletes) headers.set(keyHeader, 'DEL');
      else value = mutation.value;
      if (mutation.kind === 'putWithTtl') {
        expiresAt = Date.now() + Math.max(1, Math.ceil(mutation.ttlMs));
        headers.set(expiresHeader, String(expiresAt));
        headers.set(ttlHeader, serverTtl(mutation.ttlMs));
      }
      const seq = expected[index];
      if (seq !== undefined) headers.set('Nats-Expected-Last-Subject-Sequence', String(seq));
      return { subject: this.subjects.record(mutation.key), value, headers, expiresAt, id };
    });
    for (let undecided = 0; ; undecided++) {
      let ack: { seq?: number; count?: number; error?: { err_code?: number; description?: string } };
      if (!this.gate.up) await this.gate.ready(this.parts.timeoutMs, mutations[0]?.key);
      try {
        ack = await this.#sendBatch(messages);
      } catch (error) {
        throw toKvError(error, 'commit', mutations[0]?.key, true);
      }
      const code = ack.error?.err_code;
      if (code === undefined && typeof ack.seq === 'number' && ack.count === messages.length) {
        const base = ack.seq - messages.length + 1;
        return mutations.map((mutation, index) => {
          if (mutation.kind === 'delete' || mutation.kind === 'deleteWithVersion') return versionOf(base + index, 'delete');
          const { expiresAt, id } = messages[index] as (typeof messages)[number];
          return versionOf(base + index, 'put', expiresAt, id);
        });
      }
      if (code === JetStreamApiCodes.StreamWrongLastSequenceUnknown) {
        // Undecided while another write to one of the keys is in flight: nothing was stored, ask again.
        await awaitDecision(undecided, () =>
          kvError(
            KvErrorCode.Timeout,
            backend,
            'the server could not decide the commit while other writes to its keys were in flight; nothing was written',
            { key: mutations[0]?.key, retryable: true },
          ),
        );
        continue;
      }
      if (code === JetStreamApiCodes.StreamWrongLastSequence) {
        const refusal = await this.#commitRefusal(mutations, ack.error);
        if (refusal !== undefined) throw refusal;
        return undefined;
      }
      throw kvError(
        KvErrorCode.OperationFailed,
        backend,
        `the server refused the commit: ${ack.error?.description ?? JSON.stringify(ack)}`,
        {
          key: mutations[0]?.key,
        },
      );
    }
  }

  /**
   * Sends an atomic batch (ADR-50): the first message as a request (the
   * server answers it empty, or with an error), the middle ones published,
   * the last with `Nats-Batch-Commit`; returns the server's answer to it.
   */
  async #sendBatch(messages: ReadonlyArray<{ subject: string; value: Uint8Array; headers: MsgHdrs }>) {
    const connection = this.parts.connection;
    const id = globalThis.crypto.randomUUID();
    const options = { timeout: this.parts.timeoutMs };
    for (const [index, message] of messages.entries()) {
      message.headers.set('Nats-Batch-Id', id);
      message.headers.set('Nats-Batch-Sequence', String(index + 1));
      if (index === messages.length - 1) message.headers.set('Nats-Batch-Commit', '1');
    }
    const [first, ...rest] = messages as [(typeof messages)[number], ...typeof messages];
    const last = rest.pop() as (typeof messages)[number];
    const started = await connection.request(first.subject, first.value, { ...options, headers: first.headers });
    if (started.data.length > 0) return started.json<{ error?: { err_code?: number; description?: string } }>();
    for (const message of rest) connection.publish(message.subject, message.value, { headers: message.headers });
    const reply = await connection.request(last.subject, last.value, { ...options, headers: last.headers });
    return reply.json<{ seq?: number; count?: number; error?: { err_code?: number; description?: string } }>();
  }

  /** The expected last subject sequence of a commit's mutation, or none; throws when a read already decides it fails. */
  async #commitExpectation(mutation: KvCommitMutation): Promise<number | undefined> {
    const { key } = mutation;
    switch (mutation.kind) {
      case 'create': {
        const current = await this.lastMessage(key);
        if (current !== undefined && current.op === 'put' && !expired(current)) {
          throw alreadyExists(backend, key, liveVersionOf(current));
        }
        return current?.seq ?? 0;
      }
      case 'update':
      case 'deleteWithVersion':
        return this.#expectedLiveSeq(key, mutation.expected);
      default:
        return undefined;
    }
  }

  /** The error of a commit the server refused: the first operation whose precondition fails on a fresh read, if one does. */
  async #commitRefusal(mutations: readonly KvCommitMutation[], cause: unknown): Promise<KvError | undefined> {
    for (const mutation of mutations) {
      const { key } = mutation;
      if (mutation.kind === 'create') {
        const current = await this.lastMessage(key);
        if (current !== undefined && current.op === 'put' && !expired(current)) {
          return alreadyExists(backend, key, liveVersionOf(current));
        }
      } else if (mutation.kind === 'update' || mutation.kind === 'deleteWithVersion') {
        const live = await this.#liveVersion(key);
        if (live !== mutation.expected) return revisionMismatch(backend, key, mutation.expected, live, cause);
      }
    }
    // Every precondition holds on a fresh read (a tombstone was written under a create): no refusal.
    return undefined;
  }

  changes(request: ChangeRequest<NatsPosition>) {
    return changeFeed(this, request);
  }

  toKvError(error: unknown, operation: string): KvError {
    return toKvError(error, operation, undefined, false);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    this.closing.abort();
    await this.#sweeping?.catch(() => undefined);
    // Ended watches delete their consumers over this connection: let them, for a bounded time, before it closes.
    const giveUp = new AbortController();
    await Promise.race([Promise.all(this.consumersReleased), pause(releaseWaitMs, giveUp.signal)]);
    giveUp.abort();
    if (this.parts.owned) await this.parts.connection.close().catch(() => undefined);
  }

  /** The sweeper's run, shared with the background job so two never overlap on one handle. */
  sweepNow(): Promise<number> {
    return sweepExpired(this);
  }

  /**
   * The horizon recorded by compaction: watches resumed from a cursor below
   * it fail with `CursorExpired`. `0` when the bucket was never compacted.
   */
  async horizon(): Promise<number> {
    const stored = await this.call(undefined, async () => {
      try {
        return await this.parts.manager.streams.getMessage(this.subjects.metaStream, { last_by_subj: this.subjects.horizon });
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound) return null;
        throw error;
      }
    });
    return stored === null ? 0 : Number(new TextDecoder().decode(stored.data)) || 0;
  }

  /**
   * Below this, a watch cannot resume: the compaction horizon, or what the
   * server's marker expiry may have removed (see {@link markerHorizon}).
   */
  async resumeHorizon(info?: StreamInfo): Promise<number> {
    const [compacted, markers] = await Promise.all([this.horizon(), markerHorizon(this, info)]);
    return Math.max(compacted, markers);
  }

  /** The key's last message, read from the stream's leader (a replicated stream's leader confirmed). */
  async lastMessage(key: string): Promise<StreamedMessage | undefined> {
    if (!this.replicated) return this.#leaderMessage(key);
    const [message] = await Promise.all([this.#leaderMessage(key), confirmLeader(this, key, 'read')]);
    return message;
  }

  async #leaderMessage(key: string): Promise<StreamedMessage | undefined> {
    const stored = await this.call(key, () =>
      this.parts.manager.streams.getMessage(this.subjects.stream, { last_by_subj: this.subjects.record(key) }),
    );
    return stored === null ? undefined : this.#decodeStored(stored, key);
  }

  /**
   * The sequence of the first message at or after `from` whose subject
   * matches one of `filters`, as the stream's leader holds them (confirmed
   * on a replicated stream), or `undefined` when there is none.
   */
  async firstMatching(from: number, filters: readonly string[]): Promise<number | undefined> {
    const next = (filter: string) =>
      this.call(undefined, () =>
        // The leader's message get takes `next_by_subj` (nats-server 2.9+); nats.js types only the direct get's.
        this.parts.manager.streams.getMessage(this.subjects.stream, { seq: from, next_by_subj: filter } as unknown as MsgRequest),
      );
    const [found] = await Promise.all([
      Promise.all(filters.map(next)),
      this.replicated ? confirmLeader(this, undefined, 'watch') : undefined,
    ]);
    const seqs = found.flatMap((stored) => (stored === null ? [] : [stored.seq]));
    return seqs.length === 0 ? undefined : Math.min(...seqs);
  }

  /** The message at `seq`, if the stream still holds one there (of any key). */
  async messageAt(seq: number): Promise<StreamedMessage | undefined> {
    const stored = await this.call(undefined, () => this.parts.manager.streams.getMessage(this.subjects.stream, { seq }));
    if (stored === null) return undefined;
    const prefix = this.subjects.recordPrefix;
    return this.#decodeStored(stored, stored.subject.startsWith(prefix) ? stored.subject.slice(prefix.length) : stored.subject);
  }

  #decodeStored(stored: StoredMsg, key: string): StreamedMessage {
    const timeMs = stored.time.getTime();
    return {
      seq: stored.seq,
      key,
      writeId: writeIdOf(stored.header),
      op: operationOf(stored.header),
      expiresAt: expiryOf(stored.header, timeMs),
      data: new Uint8Array(stored.data),
      pending: 0,
      timeMs,
    };
  }

  async streamInfo(): Promise<StreamInfo> {
    return this.call(undefined, () => this.parts.manager.streams.info(this.subjects.stream));
  }

  async publish(
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
    // JetStream answering that it is not available (no stream listening yet on a node that just learned of it, a
    // leader election) stored nothing: asked again, within the handle's deadline.
    const started = performance.now();
    let unavailable = 0;
    for (let undecided = 0; ; undecided++) {
      if (!this.gate.up) await this.gate.ready(this.parts.timeoutMs, key);
      try {
        const ack = await this.parts.client.publish(this.subjects.record(key), value, {
          ...(expect === undefined ? {} : { expect }),
          ...(headers === undefined ? {} : { headers }),
          timeout: this.parts.timeoutMs,
        });
        return ack.seq;
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown) {
          await awaitDecision(undecided, () =>
            kvError(
              KvErrorCode.Timeout,
              backend,
              `the server could not decide the expected version ${expect?.lastSubjectSequence ?? '?'} while other writes to the key were in flight; nothing was written`,
              { key, cause: error, retryable: true },
            ),
          );
          continue;
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
        const failure = toKvError(error, operation, key, true);
        if (
          failure.code === KvErrorCode.NotConnected &&
          failure.retryable &&
          !this.#closed &&
          performance.now() - started < this.parts.timeoutMs
        ) {
          unavailable++;
          await pause(Math.min(100, unavailable * 10));
          continue;
        }
        throw failure;
      }
    }
  }

  async call<T>(key: string | undefined, call: () => Promise<T>): Promise<T> {
    if (this.#closed) throw kvError(KvErrorCode.Closed, backend, `the handle on bucket '${this.bucket}' is closed`);
    if (!this.gate.up) await this.gate.ready(this.parts.timeoutMs, key);
    try {
      return await call();
    } catch (error) {
      throw toKvError(error, 'read', key, false);
    }
  }

  /** Headers for a put: its write id, which its version names. */
  #written(): { headers: MsgHdrs; id: string } {
    const headers = makeHeaders();
    const id = this.writeIds.next();
    headers.set(writeIdHeader, id);
    return { headers, id };
  }

  async #create(key: string, value: Uint8Array): Promise<Version> {
    // Compare-and-swap against the key's latest message (none: sequence 0). A mismatch only says that
    // something was written meanwhile, perhaps another tombstone: read again and decide, and answer
    // AlreadyExists only when the latest record is a live, unexpired value.
    let expectedSeq = 0;
    for (;;) {
      const { headers, id } = this.#written();
      try {
        return versionOf(await this.publish(key, value, 'create', { lastSubjectSequence: expectedSeq }, undefined, headers), 'put', 0, id);
      } catch (error) {
        if (!KvError.is(error, KvErrorCode.RevisionMismatch)) throw error;
      }
      const current = await this.lastMessage(key);
      // This very create, applied by an attempt whose answer was lost (see #compared).
      if (current !== undefined && current.op === 'put' && current.writeId === id) return versionOf(current.seq, 'put', 0, id);
      if (current !== undefined && current.op === 'put' && !expired(current)) {
        throw alreadyExists(backend, key, liveVersionOf(current));
      }
      // A passed TTL not swept yet: its expire marker goes first (the next round trip creates over the marker).
      if (current !== undefined && expired(current)) await writeExpireMarker(this, key, current.seq, 'create');
      expectedSeq = current?.seq ?? 0;
    }
  }

  /**
   * The sequence a compare-and-swap expects for a version of a live value;
   * tombstone and lapsed versions can never match. A version that names a
   * write is checked against the key's last message first: the server
   * checks sequences only, and one that forgot the write hands its sequence
   * to a later one.
   */
  async #expectedLiveSeq(key: string, expected: Version): Promise<number> {
    const parsed = parseVersion(expected, key);
    if (parsed.op !== 'put' || (parsed.expiresAt > 0 && parsed.expiresAt <= Date.now())) {
      throw revisionMismatch(backend, key, expected, await this.#liveVersion(key));
    }
    if (parsed.writeId !== undefined && !this.#vouched.has(key, expected)) {
      // Only another write at the version's own sequence is refused here; any other difference the server's own
      // compare-and-swap decides (a read that a partitioned leader answers late must not refuse a current version).
      const current = await this.lastMessage(key);
      if (current !== undefined && current.seq === parsed.seq && !names(parsed, current)) {
        throw revisionMismatch(backend, key, expected, liveVersion(current));
      }
    }
    return parsed.seq;
  }

  /**
   * A compare-and-swap write; when the server refuses it, the error names
   * the version found, as on every backend. A refusal of a write sent again
   * (its first answer lost, or "unavailable" from a leader that was being
   * replaced while the write it had proposed still committed) may be the
   * write itself in the way: when the key's last message carries this
   * write's id, the write applied, and that is its outcome.
   */
  async #compared(key: string, expected: Version, published: Promise<number>, writeId: string): Promise<number> {
    try {
      return await published;
    } catch (error) {
      if (!KvError.is(error, KvErrorCode.RevisionMismatch)) throw error;
      const current = await this.lastMessage(key);
      if (current !== undefined && current.writeId === writeId) return current.seq;
      throw revisionMismatch(backend, key, expected, liveVersion(current), error);
    }
  }

  /** The key's live version now, or `undefined` (only for error messages: a mismatch was already decided). */
  async #liveVersion(key: string): Promise<Version | undefined> {
    return liveVersion(await this.lastMessage(key));
  }
}

/** What a listing of `prefix` gives for a key's last message: a live, unexpired value under the prefix, or nothing. */
function listedEntry(message: StreamedMessage, prefix: string | undefined): KvEntry | undefined {
  if (message.op === 'put' && !expired(message) && keyMatchesPrefix(message.key, prefix)) {
    return { key: message.key, value: message.data, version: liveVersionOf(message) };
  }
  return undefined;
}

/** The version of a put message. */
function liveVersionOf(message: StreamedMessage): Version {
  return versionOf(message.seq, 'put', message.expiresAt, message.writeId);
}

/** The version of a key's last message when it is a live value, else `undefined`. */
function liveVersion(message: StreamedMessage | undefined): Version | undefined {
  return message !== undefined && message.op === 'put' && !expired(message) ? liveVersionOf(message) : undefined;
}

/** Whether a version that names a write names this message: its sequence, write id and expiry, and it is live. */
function names(parsed: ParsedVersion, message: StreamedMessage): boolean {
  return (
    message.op === 'put' &&
    !expired(message) &&
    message.seq === parsed.seq &&
    message.writeId === parsed.writeId &&
    message.expiresAt === parsed.expiresAt
  );
}
