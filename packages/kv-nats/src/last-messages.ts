import type { DirectLastFor, StoredMsg } from '@nats-io/jetstream';
import { KvError } from '@weft/kv';
import { KvErrorCode, kvError } from '@weft/kv/backend';
import { expiryOf, operationOf, type StreamedMessage, writeIdOf } from './codec.js';
import type { NatsDriver } from './driver.js';
import { backend } from './errors.js';

/**
 * How often one page is asked again after the connection was cut while it
 * came (each cut loses what the server had sent on it).
 */
const maxPageCuts = 3;
/** The least a consumer's fetch may bring, and what a message's headers and subject may add to its value. */
const readBytesFloor = 4 * 1024 * 1024;
const envelopeBytes = 64 * 1024;

/**
 * The bytes one fetch may bring: bounded, so a page of large values never
 * exceeds what the server lets a connection have pending (`max_pending`,
 * 64 MiB by default) and gets the connection cut as a slow consumer; at
 * least one value of the largest size the bucket takes (`maxValueBytes`),
 * with its headers.
 */
export function readBytes(maxValueBytes: number): number {
  return Math.max(readBytesFloor, maxValueBytes + envelopeBytes);
}
/** Subjects nats-server lists in one batch direct get of last messages; more is refused (413). */
export const maxBatchSubjects = 1024;

/** One page of last messages, and how many matching subjects remain after it. */
export interface LastMessagesPage {
  readonly messages: readonly StreamedMessage[];
  readonly pending: number;
}

/**
 * The last message, up to sequence `upTo` (0: the stream's last), of every
 * subject matching `subjects` (wildcards allowed) from sequence `from` on,
 * in stream order: one batch direct get (ADR-31, nats-server 2.11+; the
 * caller checks the capability) of about {@link readBytes} (the server
 * stops once it has sent that much). A page cut short ends with subjects
 * still pending: ask again from the sequence after its last message.
 * `too-many` when more than {@link maxBatchSubjects} subjects match: the
 * caller lists another way.
 *
 * A connection cut while the page comes (the server cuts a slow consumer;
 * a server restarts) loses what the server had sent on it: the page is
 * asked again once the connection is back. nats.js ends a batch that has
 * not ended 5 s after it was asked for (its subscription's timeout):
 * `Timeout`, retryable.
 */
async function lastMessagesPage(
  driver: NatsDriver,
  subjects: readonly string[],
  upTo: number,
  from: number,
): Promise<LastMessagesPage | 'too-many'> {
  for (let cuts = 0; ; cuts++) {
    const generation = driver.gate.generation;
    try {
      return await readPage(driver, subjects, upTo, from);
    } catch (error) {
      if (driver.gate.generation === generation || cuts >= maxPageCuts || !KvError.is(error) || !error.retryable) throw error;
    }
  }
}

async function readPage(
  driver: NatsDriver,
  subjects: readonly string[],
  upTo: number,
  from: number,
): Promise<LastMessagesPage | 'too-many'> {
  const recordPrefix = driver.subjects.recordPrefix;
  return driver.call(undefined, async () => {
    const request = {
      multi_last: [...subjects],
      batch: maxBatchSubjects,
      max_bytes: readBytes(driver.capabilities.maxValueBytes),
      ...(upTo > 0 ? { up_to_seq: upTo } : {}),
      // The server takes a start sequence with `multi_last`; nats.js types only the other fields.
      ...(from > 0 ? { seq: from } : {}),
    } as DirectLastFor;
    const answers = await driver.parts.manager.direct.getLastMessagesFor(driver.subjects.stream, request);
    const messages: StreamedMessage[] = [];
    let pending = 0;
    const forget = driver.gate.onInterruption(() => {
      answers.stop(kvError(KvErrorCode.NotConnected, backend, 'read: the connection was cut while a batch read came', { retryable: true }));
    });
    try {
      for await (const stored of answers) {
        pending = Number(stored.header.get('Nats-Num-Pending')) || 0;
        messages.push(decodeLast(stored, recordPrefix, pending));
      }
    } catch (error) {
      if (status(error) === 413) return 'too-many';
      // Nothing matches: the server answers 404 "no results" instead of a batch. A 404 after messages is a
      // message the server failed to load: an error, never a shorter page.
      if (!(status(error) === 404 && messages.length === 0)) throw error;
    } finally {
      forget();
    }
    return { messages, pending };
  });
}

/** The status code of a batch's ending error (nats.js's JetStreamStatusError), if it has one. */
function status(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'number' ? code : typeof code === 'string' && /^\d+$/.test(code) ? Number(code) : undefined;
}

function decodeLast(stored: StoredMsg, recordPrefix: string, pending: number): StreamedMessage {
  const timeMs = stored.time.getTime();
  const subject = stored.subject;
  return {
    seq: stored.seq,
    key: subject.startsWith(recordPrefix) ? subject.slice(recordPrefix.length) : subject,
    writeId: writeIdOf(stored.header),
    op: operationOf(stored.header),
    expiresAt: expiryOf(stored.header, timeMs),
    data: new Uint8Array(stored.data),
    pending,
    timeMs,
  };
}

/**
 * The last message of every subject matching `subjects` up to sequence
 * `upTo` (0: the stream's last), in stream order, page after page;
 * `undefined` when more than {@link maxBatchSubjects} subjects match (the
 * caller lists with a consumer).
 */
export async function lastMessages(
  driver: NatsDriver,
  subjects: readonly string[],
  upTo = 0,
): Promise<AsyncIterable<StreamedMessage> | undefined> {
  const first = await lastMessagesPage(driver, subjects, upTo, 0);
  if (first === 'too-many') return undefined;
  return (async function* () {
    let page: LastMessagesPage = first;
    for (;;) {
      yield* page.messages;
      const last = page.messages.at(-1);
      if (page.pending === 0 || last === undefined) return;
      const next = await lastMessagesPage(driver, subjects, upTo, last.seq + 1);
      // The same subjects up to the same sequence: the count cannot grow.
      if (next === 'too-many') throw new Error(`the server refused the rest of a batch read up to sequence ${upTo} as too many`);
      page = next;
    }
  })();
}

/** {@link lastMessages} up to the stream's head `head`, of which nothing is read for an empty stream (`head` 0). */
export async function lastMessagesUpTo(
  driver: NatsDriver,
  subjects: readonly string[],
  head: number,
): Promise<AsyncIterable<StreamedMessage> | undefined> {
  return head === 0 ? (async function* () {})() : lastMessages(driver, subjects, head);
}
