import { AckPolicy, type ConsumerConfig, DeliverPolicy, type JsMsg, type StreamInfo } from '@nats-io/jetstream';
import { nanos, nuid } from '@nats-io/nats-core';
import { KvError } from '@weft/kv';
import { backoffMs, KvErrorCode, kvError, messageOf, pause } from '@weft/kv/backend';
import { expiryOf, type NatsPosition, operationOf, type StreamedMessage, sameStamp, stampOf, writeIdOf } from './codec.js';
import type { NatsDriver } from './driver.js';
import { backend, GapError, LaggingConsumerError, StalledFetchError } from './errors.js';
import { lastMessagesUpTo, readBytes } from './last-messages.js';

/** Messages per fetch where the server cannot limit a fetch by bytes: as many as the byte budget allows. */
const maxPageMessages = 256;
const fetchExpiresMs = 5000;
const fetchHeartbeatMs = 1000;
/** How long a fetch may go without a message or its end before the consumer is presumed lost. */
export const fetchStallMs = fetchExpiresMs * 2;

/** A message of the bucket's stream, as a consumer delivered it. */
export type ConsumedMessage = StreamedMessage & { readonly kind: 'message' };

/**
 * The stream as a consumer found it when it was (re)created: `reading` is
 * the position it delivers after (`undefined` while it lists the last
 * message of every subject).
 */
export interface ConsumerStart {
  readonly kind: 'start';
  readonly info: StreamInfo;
  readonly reading: NatsPosition | undefined;
  /** The compaction horizon recorded in the companion stream. */
  readonly horizon: number;
  /** The message at `reading` is not the one read there: the server forgot it (see {@link forgotten}). */
  readonly lost: boolean;
}

/**
 * Streams messages from an ephemeral consumer the caller owns: the last
 * message of every subject (`from` undefined), or every message after
 * `from`. It is recreated from the last delivered sequence after any failure
 * (a server restart, a lost consumer, a gap in delivery) and deleted when
 * iteration ends; what an earlier consumer delivered is never repeated.
 * Yields a {@link ConsumerStart} at every (re)creation and while catching up
 * past the compaction horizon, and `'caught-up'` whenever the consumer has
 * nothing pending.
 */
export async function* consume(
  driver: NatsDriver,
  prefixes: readonly string[] | undefined,
  from: NatsPosition | undefined,
  headersOnly: boolean,
  signal: AbortSignal,
  /** Whether a first listing may come in batch direct gets (false once the caller found too many subjects for them). */
  lastInBatches = true,
): AsyncGenerator<ConsumedMessage | ConsumerStart | 'caught-up'> {
  const { manager, client, connection } = driver.parts;
  const stream = driver.subjects.stream;
  let position = from?.seq ?? 0;
  /** When the server stored the message at `position` (0: unknown). */
  let stamp = from?.stamp ?? 0;
  let initial = from === undefined;
  let consumerName: string | undefined;
  let failures = 0;
  let failingSince = 0;
  let maxBytes = readBytes(driver.capabilities.maxValueBytes);
  let release: () => void = () => undefined;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  driver.consumersReleased.add(released);
  /** The largest message seen (or the stream's average before any), for servers that cannot limit a fetch by bytes. */
  let largest = 0;
  const filter = filterOf(driver, prefixes);
  const filters = subjectsOf(filter);
  try {
    while (!signal.aborted) {
      try {
        if (consumerName !== undefined) {
          const stale = consumerName;
          consumerName = undefined;
          void manager.consumers.delete(stream, stale).catch(() => undefined);
        }
        const info = await driver.streamInfo();
        // The last sequence the leader held before this consumer was made. A one-replica consumer of a replicated
        // stream may sit on a follower that has not applied all of it yet, and counts then only what that follower
        // holds: it is caught up only once it passed this point or the leader holds nothing it must deliver up to it.
        const target = info.state.last_seq;
        let reachedTarget = !driver.replicated;
        const settled = async (): Promise<boolean> => {
          if (reachedTarget || position >= target) return true;
          const next = await driver.firstMatching(position + 1, filters);
          reachedTarget = next === undefined || next > target;
          return reachedTarget;
        };
        /** Moves the position to the stream's head as of `info`, once nothing up to it is left to deliver. */
        const standAtHead = () => {
          if (info.state.last_seq > position) {
            position = info.state.last_seq;
            stamp = stampOf(info.state.last_ts);
          }
        };
        if (initial) yield { kind: 'start', info, reading: undefined, horizon: 0, lost: false };
        else {
          const reading = { seq: position, stamp };
          const [horizon, lost] = await Promise.all([driver.resumeHorizon(info), forgotten(driver, reading, info)]);
          yield { kind: 'start', info, reading, horizon, lost };
        }
        // On a one-replica stream of 2.11+ with few enough subjects, the last message of every subject comes in
        // batch direct gets instead of a consumer's first deliveries; the consumer made next starts after them.
        if (initial && driver.batchReads && !headersOnly && lastInBatches) {
          const snapshot = await lastMessagesUpTo(driver, filters, info.state.last_seq);
          if (snapshot !== undefined) {
            for await (const message of snapshot) {
              // After a restart of the listing, what was already delivered is skipped.
              if (message.seq <= position) continue;
              position = message.seq;
              stamp = message.timeMs;
              yield { kind: 'message', ...message };
            }
            standAtHead();
            // Caught up once the consumer that goes on from here exists (and has delivered what it has pending).
            initial = false;
          }
        }
        const name = `weft_${nuid.next()}`;
        const config: Partial<ConsumerConfig> = {
          name,
          ack_policy: AckPolicy.None,
          mem_storage: true,
          num_replicas: 1,
          inactive_threshold: nanos(30_000),
          headers_only: headersOnly,
          ...filter,
          ...(initial
            ? { deliver_policy: DeliverPolicy.LastPerSubject }
            : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: position + 1 }),
        };
        const created = await manager.consumers.add(stream, config);
        consumerName = name;
        if (created.num_pending === 0 && (await settled())) {
          // Nothing matched up to the head as of creation, so the head is where this consumer stands.
          standAtHead();
          initial = false;
          yield 'caught-up';
        }
        const consumer = await client.consumers.get(stream, name);
        if (largest === 0) largest = info.state.messages > 0 ? Math.ceil(info.state.bytes / info.state.messages) : 0;
        let expectedDelivery = 1;
        for (;;) {
          if (signal.aborted) return;
          const batch = await consumer.fetch(
            driver.fetchByBytes
              ? { max_bytes: maxBytes, expires: fetchExpiresMs, idle_heartbeat: fetchHeartbeatMs }
              : {
                  max_messages: Math.max(1, Math.min(maxPageMessages, Math.floor(maxBytes / Math.max(1, largest)))),
                  expires: fetchExpiresMs,
                  idle_heartbeat: fetchHeartbeatMs,
                },
          );
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
          let pendingAfter = 0;
          try {
            for await (const message of batch) {
              clearTimeout(watchdog);
              try {
                received++;
                // A skipped delivery means a lost batch: start over from what was delivered.
                if (message.info.deliverySequence !== expectedDelivery) throw new GapError();
                expectedDelivery++;
                failures = 0;
                pendingAfter = message.info.pending;
                const size = message.data.length + message.subject.length + (message.headers === undefined ? 0 : 256);
                if (size > largest) largest = size;
                const seq = message.info.streamSequence;
                const decoded = decode(driver, message, seq);
                // After a restart of the listing, what was already delivered is skipped.
                if (seq <= position) {
                  if (message.info.pending === 0 && (await settled())) {
                    initial = false;
                    yield 'caught-up';
                  }
                  continue;
                }
                position = seq;
                stamp = stampOfNanos(message.info.timestampNanos);
                if (decoded !== undefined) yield decoded;
                if (message.info.pending === 0 && (await settled())) {
                  initial = false;
                  yield 'caught-up';
                }
              } finally {
                arm();
              }
            }
          } catch (error) {
            // The server ends a full byte-limited page with a status: the page is done. With nothing received, a
            // message is larger than the limit (written by another client than this handle's bucket allows): the
            // limit doubles.
            if (!isPageFull(error)) throw error;
            if (received === 0 && /exceeds maxbytes/i.test(messageOf(error))) maxBytes *= 2;
            continue;
          } finally {
            clearTimeout(watchdog);
            signal.removeEventListener('abort', stop);
          }
          if (stalled) throw new StalledFetchError();
          if (received === 0) {
            // Deliveries the server made that never arrived (a slow-consumer disconnect drops what the connection
            // had pending) leave no gap to see when they were the last ones: ask the consumer what it delivered.
            const state = await consumer.info();
            if (state.delivered.consumer_seq >= expectedDelivery) throw new GapError();
            // A whole fetch without a message while the leader holds one for it: its follower is not catching up.
            if (!(await settled())) throw new LaggingConsumerError();
            if (!initial) yield 'caught-up';
          }
          // A consumer that is catching up may be behind a compaction: make sure nothing it needs was removed.
          if (received > 0 && pendingAfter > 0 && !initial) {
            const horizon = await driver.resumeHorizon();
            if (position < horizon) {
              yield { kind: 'start', info: await driver.streamInfo(), reading: { seq: position, stamp }, horizon, lost: false };
            }
          }
        }
      } catch (error) {
        if (signal.aborted) return;
        if (KvError.is(error, KvErrorCode.CursorExpired)) throw error;
        if (connection.isClosed()) {
          throw kvError(KvErrorCode.NotConnected, backend, 'the NATS connection was closed', { cause: error });
        }
        if (failures === 0) failingSince = performance.now();
        const outage = performance.now() - failingSince;
        if (outage >= driver.parts.watchOutageMs) {
          throw kvError(
            KvErrorCode.Timeout,
            backend,
            `NATS has not delivered for ${Math.round(outage)} ms (watchOutageMs ${driver.parts.watchOutageMs}); resume from the last cursor: ${messageOf(error)}`,
            { cause: error },
          );
        }
        failures++;
        await pause(backoffMs(failures), signal);
      }
    }
  } finally {
    try {
      if (consumerName !== undefined) {
        const name = consumerName;
        const giveUp = new AbortController();
        await Promise.race([manager.consumers.delete(stream, name).catch(() => undefined), pause(2000, giveUp.signal)]);
        giveUp.abort();
      }
    } finally {
      driver.consumersReleased.delete(released);
      release();
    }
  }
}

/**
 * The statuses that end a byte-limited fetch whose page is done: the next
 * message would pass the byte limit, or the page holds its most messages.
 */
function isPageFull(error: unknown): boolean {
  // JetStreamStatusError is not exported by @nats-io/jetstream: recognised by its name and code.
  return (
    error instanceof Error &&
    error.name === 'JetStreamStatusError' &&
    (error as { code?: unknown }).code === 409 &&
    /exceeds maxbytes|batch completed/i.test(error.message)
  );
}

/** The subjects a listing or watch of `prefixes` reads (one filter on 2.9, which the client narrows). */
export function filterSubjects(driver: NatsDriver, prefixes: readonly string[] | undefined): string[] {
  return subjectsOf(filterOf(driver, prefixes));
}

function subjectsOf(filter: Partial<ConsumerConfig>): string[] {
  return filter.filter_subjects ?? (filter.filter_subject === undefined ? [] : [filter.filter_subject]);
}

function filterOf(driver: NatsDriver, prefixes: readonly string[] | undefined): Partial<ConsumerConfig> {
  const recordPrefix = driver.subjects.recordPrefix;
  if (prefixes === undefined) return { filter_subject: `${recordPrefix}>` };
  if (driver.nativeMultiFilter) {
    return { filter_subjects: prefixes.flatMap((prefix) => [recordPrefix + prefix, `${recordPrefix}${prefix}.>`]) };
  }
  // NATS 2.9 has one filter per consumer: filter on the prefixes' common parent, and the client filters the rest.
  const parents = prefixes.map((prefix) => prefix.split('.').slice(0, -1));
  const common: string[] = [];
  for (let index = 0; ; index++) {
    const token = parents[0]?.[index];
    if (token === undefined || parents.some((parent) => parent[index] !== token)) break;
    common.push(token);
  }
  return { filter_subject: `${recordPrefix}${common.map((token) => `${token}.`).join('')}>` };
}

/**
 * Whether the server forgot the message at `reading`: its stream ends
 * before it, or another message, stored at another time, holds its
 * sequence now. A message removed since (a key's history limit, a purge)
 * leaves nothing to compare: not counted as forgotten.
 */
async function forgotten(driver: NatsDriver, reading: NatsPosition, info: StreamInfo): Promise<boolean> {
  if (reading.seq === 0 || reading.stamp === 0) return false;
  if (reading.seq > info.state.last_seq) return true;
  const stored = await driver.messageAt(reading.seq);
  return stored !== undefined && !sameStamp(stored.timeMs, reading.stamp);
}

/** Milliseconds from the server's nanoseconds, exactly (a bigint from a delivered message). */
function stampOfNanos(nanos: bigint | number): number {
  return typeof nanos === 'bigint' ? Number(nanos / 1_000_000n) : Math.floor(nanos / 1_000_000);
}

function decode(driver: NatsDriver, message: JsMsg, seq: number): ConsumedMessage | undefined {
  const recordPrefix = driver.subjects.recordPrefix;
  if (!message.subject.startsWith(recordPrefix)) return undefined;
  const timeMs = stampOfNanos(message.info.timestampNanos);
  return {
    kind: 'message',
    seq,
    key: message.subject.slice(recordPrefix.length),
    writeId: writeIdOf(message.headers),
    op: operationOf(message.headers),
    expiresAt: expiryOf(message.headers, timeMs),
    data: new Uint8Array(message.data),
    pending: message.info.pending,
    timeMs,
  };
}
