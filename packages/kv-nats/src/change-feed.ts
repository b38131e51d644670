import type { StreamInfo } from '@nats-io/jetstream';
import type { ChangeFeedItem, ChangeRequest } from '@weft/kv/backend';
import { epochOf, type NatsPosition, stampOf, startOfStream, versionOf } from './codec.js';
import { type ConsumedMessage, type ConsumerStart, consume } from './consumer.js';
import type { NatsDriver } from './driver.js';

/**
 * The feed of one watch on an ephemeral consumer: the last message of every
 * matching subject (when not resuming), then every message after it. Each
 * consumer (re)creation reports the stream's bounds, so the watch loop
 * checks the resume point against the compaction horizon, the stream's own
 * limits, the bucket's incarnation, and whether the server still holds the
 * message it read last (`lost`: a server that forgot acknowledged writes).
 */
export async function* changeFeed(
  driver: NatsDriver,
  { from, prefixes, signal }: ChangeRequest<NatsPosition>,
): AsyncGenerator<ChangeFeedItem<NatsPosition>> {
  let position = from ?? startOfStream;
  for await (const item of consume(driver, prefixes, from, false, signal)) {
    if (item === 'caught-up') yield { type: 'through', position };
    else if (item.kind === 'start') yield boundsOf(item);
    else {
      const change = changeOf(item);
      position = change.position;
      yield change;
    }
  }
}

function boundsOf(start: ConsumerStart): ChangeFeedItem<NatsPosition> {
  const { info, reading, horizon, lost } = start;
  return {
    type: 'bounds',
    epoch: epochOf(info.created),
    reading,
    head: { seq: info.state.last_seq, stamp: stampOf(info.state.last_ts) },
    horizon: { seq: Math.max(horizon, limitsHorizon(info)), stamp: 0 },
    lost,
  };
}

/**
 * KV streams lose messages only to per-key history limits and purge rollups,
 * which always leave a newer message for the key. Stream-wide limits (age,
 * count, bytes) remove changes outright: below the first sequence left,
 * nothing can be resumed.
 */
function limitsHorizon(info: StreamInfo): number {
  const config = info.config;
  const lossy = config.max_age > 0 || config.max_msgs > 0 || config.max_bytes > 0;
  return lossy ? Math.max(0, info.state.first_seq - 1) : 0;
}

type Change = Extract<ChangeFeedItem<NatsPosition>, { type: 'change' }>;

function changeOf(message: ConsumedMessage): Change {
  // Literals of one shape each, not spreads of a shared base: this runs once per change per watch.
  const { seq, key, op } = message;
  const position = { seq, stamp: message.timeMs };
  if (op === 'put') {
    return {
      type: 'change',
      position,
      key,
      op,
      value: message.data,
      version: versionOf(seq, op, message.expiresAt, message.writeId),
      expiresAt: message.expiresAt,
    };
  }
  if (op === 'expire') return { type: 'change', position, key, op };
  return { type: 'change', position, key, op, version: versionOf(seq, op) };
}
