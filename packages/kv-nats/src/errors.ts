import { JetStreamApiError } from '@nats-io/jetstream';
import { ClosedConnectionError, NoRespondersError, TimeoutError } from '@nats-io/nats-core';
import { KvError } from '@weft/kv';
import { KvErrorCode, kvError, messageOf } from '@weft/kv/backend';

export const backend = 'nats';

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
  // A restarting server answers before its JetStream is up, and a cluster answers 503 (10008, "JetStream system
  // temporarily unavailable") while it elects a meta leader: nothing was applied, and it will be soon.
  if (
    error instanceof NoRespondersError ||
    (error instanceof JetStreamApiError && (error.status === 503 || error.code === 10008)) ||
    (error instanceof Error && /jetstream (is )?not enabled|jetstream (is |system )?temporarily unavailable/i.test(message))
  ) {
    return kvError(KvErrorCode.NotConnected, backend, `${operation}: JetStream is not available right now (${message})`, {
      ...extra,
      retryable: true,
    });
  }
  // A cluster whose meta leader counts a node offline (for a while after a partition healed or a node restarted)
  // cannot place a stream on enough nodes: nothing was created, and it can be soon.
  if (error instanceof JetStreamApiError && error.code === 10005 && /offline/i.test(message)) {
    return kvError(KvErrorCode.OperationFailed, backend, `${operation}: the cluster cannot place the stream now (${message})`, {
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

/** A consumer skipped a delivery: it is recreated from the last delivered sequence. */
export class GapError extends Error {
  override readonly name = 'GapError';
  constructor() {
    super('a delivery was skipped; the consumer is recreated from the last delivered sequence');
  }
}

/** A fetch neither delivered nor ended in time: the consumer is recreated from the last delivered sequence. */
export class StalledFetchError extends Error {
  override readonly name = 'StalledFetchError';
  constructor() {
    super('a fetch neither delivered nor ended in time; the consumer is recreated from the last delivered sequence');
  }
}

/**
 * A consumer of a replicated stream delivered nothing for a whole fetch
 * while the stream's leader holds a message it must deliver: the follower
 * it sits on is not catching up (cut off, or lagging far behind). It is
 * recreated from the last delivered sequence, perhaps on another node.
 */
export class LaggingConsumerError extends Error {
  override readonly name = 'LaggingConsumerError';
  constructor() {
    super('the consumer delivered nothing the stream leader holds for it; it is recreated from the last delivered sequence');
  }
}
