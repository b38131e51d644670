/**
 * Compaction: removing old tombstones as `nats kv compact` does, with the
 * newest removed marker recorded first as the horizon in the companion
 * stream, so a watch resumed from before it fails with `CursorExpired`
 * instead of missing a delete.
 */
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
