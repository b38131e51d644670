/**
 * Compaction: removing old tombstones as `nats kv compact` does, with the
 * newest removed marker recorded first as the horizon in the companion
 * stream, so a watch resumed from before it fails with `CursorExpired`
 * instead of missing a delete.
 */
import type { StreamInfo } from '@nats-io/jetstream';
import type { StreamedMessage } from './codec.js';
import { consume } from './consumer.js';
import type { NatsDriver } from './driver.js';
import { ensureMetaStream } from './ttl-index.js';

/**
 * Removes tombstones (delete and purge markers) older than `olderThanMs`.
 *
 * @returns how many tombstones were removed, and the horizon after it
 */
export async function compact(driver: NatsDriver, olderThanMs: number): Promise<{ removedTombstones: number; horizon: number }> {
  const cutoff = Date.now() - olderThanMs;
  const doomed: StreamedMessage[] = [];
  const controller = new AbortController();
  const signal = AbortSignal.any([controller.signal, driver.closing.signal]);
  const head = (await driver.streamInfo()).state.last_seq;
  try {
    for await (const message of consume(driver, undefined, undefined, true, signal)) {
      if (message === 'caught-up') break;
      if (message.kind !== 'message') continue;
      if (message.seq > head) break;
      if (message.op !== 'put' && message.timeMs <= cutoff) doomed.push(message);
      if (message.pending === 0) break;
    }
  } finally {
    controller.abort();
  }
  const previous = await driver.horizon();
  if (doomed.length === 0) return { removedTombstones: 0, horizon: previous };
  const horizon = Math.max(previous, ...doomed.map((message) => message.seq));
  await ensureMetaStream(driver);
  await driver.call(undefined, () =>
    driver.parts.client.publish(driver.subjects.horizon, new TextEncoder().encode(String(horizon)), { timeout: driver.parts.timeoutMs }),
  );
  for (const marker of doomed) {
    // Removes the marker and anything older on its subject, never a newer write.
    await driver.call(marker.key, () =>
      driver.parts.manager.streams.purge(driver.subjects.stream, { filter: driver.subjects.record(marker.key), seq: marker.seq + 1 }),
    );
  }
  return { removedTombstones: doomed.length, horizon };
}

/**
 * The horizon the server's own marker expiry sets: a stream with
 * `subject_delete_marker_ttl` removes each limit marker that long after
 * writing it, so changes older than that may be gone without a trace and a
 * watch resumed from before them fails with `CursorExpired`. Buckets weft
 * creates keep their markers for years (compaction removes them, recording
 * its horizon); buckets made with a short `--marker-ttl` get this bound.
 * `0` when nothing can have been removed yet (the stream is younger than the
 * marker TTL), without a request. `info` is a fresh stream info when the
 * caller has one; otherwise the one read at open serves for the settings.
 */
export async function markerHorizon(driver: NatsDriver, info?: StreamInfo): Promise<number> {
  const known = info ?? driver.parts.info;
  const markerTtlNs = known.config.subject_delete_marker_ttl ?? 0;
  if (!(markerTtlNs > 0)) return 0;
  const now = Date.parse(info?.ts ?? '') || Date.now();
  // A second of slack for the server's removal timer and for clocks.
  const cutoff = now - markerTtlNs / 1_000_000 - 1000;
  if (Date.parse(known.created) >= cutoff) return 0;
  const first = await driver.call(undefined, () =>
    driver.parts.manager.direct.getMessage(driver.subjects.stream, { start_time: new Date(cutoff).toISOString() }),
  );
  if (first !== null) return first.seq - 1;
  return (info ?? (await driver.streamInfo())).state.last_seq;
}
