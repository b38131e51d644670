import type { WatchCursor } from '@weft/kv';
import { bucketGone } from './change-log.js';
import type { FdbDriver } from './driver.js';
import { order } from './driver.js';
import { commitVersionOf, decodeRecord, decodeVersionValue, encodeLogEntry, fromHex, toHex, versionAtCommit } from './layout.js';
import { done, runWrite } from './transactions.js';

/** How long a write id is kept for recognising a retried write (far longer than any retry loop). */
const writeMarkerRetentionMs = 10 * 60 * 1000;

/**
 * Turns entries whose TTL has passed into `expire` events, at most `limit`
 * in one transaction.
 *
 * @returns how many entries expired
 */
export function sweepExpired(driver: FdbDriver, limit: number): Promise<number> {
  const { layout, clock } = driver;
  return runWrite(driver, 'sweepExpired', undefined, async (tn) => {
    const now = clock.now();
    const [start, end] = layout.expiredRange(now);
    const due = await tn.getRange(start, end, { limit });
    let expired = 0;
    for (const [indexKey] of due) {
      const { key, expiresAt } = layout.parseExpiry(indexKey);
      tn.clear(indexKey);
      const raw = await tn.get(layout.record(key));
      const record = raw === undefined ? undefined : decodeRecord(raw, key);
      // An index entry left behind by a later write of the key has nothing to expire.
      if (record === undefined || record.op !== 'put' || record.expiresAt !== expiresAt) continue;
      tn.clear(layout.record(key));
      if (record.chunks > 0) tn.clearRange(...layout.chunkRange(key));
      tn.setVersionstampedKey(layout.log, order(expired), encodeLogEntry('expire', key));
      expired++;
    }
    if (expired > 0) tn.setVersionstampedValue(layout.head, order(expired - 1));
    return done(expired, due.length > 0);
  });
}

/**
 * The retention job: trims the change log up to `through` (clamped to the
 * head; default: entries older than `historyRetentionMs`) and advances the
 * horizon; also forgets write ids older than ten minutes.
 *
 * @returns the horizon cursor after trimming
 */
export async function trimHistory(driver: FdbDriver, through: WatchCursor | undefined): Promise<WatchCursor> {
  const cutoffAsked = through === undefined ? undefined : fromHex(through, 'cursor');
  const { layout, clock } = driver;
  const retention = driver.settings.historyRetentionMs;
  const horizon = await runWrite(driver, 'trimHistory', undefined, async (tn) => {
    const head = decodeVersionValue(await tn.get(layout.head), 'head');
    const current = decodeVersionValue(await tn.get(layout.horizon), 'horizon');
    if (head === undefined || current === undefined) throw bucketGone(driver.bucket);
    tn.clearRange(...layout.writeMarkersBefore(clock.now() - writeMarkerRetentionMs));
    // FoundationDB versions advance about 1,000,000 per second.
    let cutoff = cutoffAsked ?? (retention > 0 ? versionAtCommit(commitVersionOf(head) - BigInt(retention) * 1000n) : current);
    if (Buffer.compare(cutoff, head) > 0) cutoff = head;
    if (Buffer.compare(cutoff, current) <= 0) return done(current, true);
    tn.clearRange(layout.log, layout.logAfter(cutoff));
    tn.set(layout.horizon, cutoff);
    return done(cutoff, true);
  });
  return toHex(horizon);
}

/** Deletes the whole bucket (records, chunks, log, indexes, head, horizon) in one transaction. */
export async function destroyBucket(driver: FdbDriver): Promise<void> {
  const prefix = driver.layout.prefix;
  await runWrite(driver, 'destroyBucket', undefined, async (tn) => {
    tn.clearRange(prefix, Buffer.concat([prefix, Buffer.from([0xff])]));
    return done(undefined, true);
  });
}
