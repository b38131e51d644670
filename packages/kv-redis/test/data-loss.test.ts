/**
 * A server that forgot acknowledged writes and took new ones at once: an
 * older copy of the bucket put back (DUMP and RESTORE of its keys, as a
 * failover to a replica that missed the last writes would leave it), then
 * a write of the same key within about a millisecond. With ids chosen by
 * `XADD *` (the clock's millisecond, then a count from the copy's last id)
 * the new write could take the forgotten write's id, and with it its
 * version and cursor: a compare-and-swap naming the forgotten write then
 * applied to the new one, and a watch resumed after it went on past the
 * new one. Change-stream ids now start at a random sequence in each
 * millisecond and step by random amounts, so a forgotten id is not handed
 * out again. The attack runs many rounds; each round's times are printed.
 */
import { KvError, KvErrorCode, type WatchCursor, type WatchEvent } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import { WatchReader } from '@weft/kv-testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketKeys, dropBucket, redisMissing, standalone } from './helpers.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const millisecondOf = (id: string) => id.split('-')[0];

describe.skipIf(redisMissing !== undefined)('a Redis server that forgot acknowledged writes and took new ones at once', () => {
  let fixture: Awaited<ReturnType<typeof standalone>>;
  beforeAll(async () => {
    fixture = await standalone();
  });
  afterAll(async () => {
    fixture?.raw.disconnect();
    await fixture?.server.stop();
  });

  it('never hands a forgotten write’s version or cursor to a new write', async () => {
    const { raw } = fixture;
    const bucket = 'forgetful';
    const store = await openRedisKv({ url: fixture.server.url, bucket });
    let sameMillisecond = 0;
    const rounds = 40;
    try {
      for (let round = 0; round < rounds; round++) {
        const kept = await store.put('doc', bytes(`kept ${round}`));
        const watch = new WatchReader(store, { prefixes: ['doc'] });
        const synced = (await watch.untilSynced()).at(-1) as WatchEvent;
        await watch.stop();
        const keys = await bucketKeys(raw, bucket);
        const copies = await Promise.all(keys.map(async (key) => ({ key, dump: await raw.dumpBuffer(key), ttl: await raw.pttl(key) })));
        const putBack = raw.pipeline();
        for (const key of keys) putBack.del(key);
        for (const { key, dump, ttl } of copies) if (dump !== null) putBack.restore(key, Math.max(0, ttl), dump, 'REPLACE');
        // The write the server forgets, the copy put back and the key written again at once, as a new master that
        // just took over would be written to.
        const lost = await store.update('doc', bytes('lost'), kept);
        await putBack.exec();
        const current = await store.update('doc', bytes(`after the loss ${round}`), kept);
        if (millisecondOf(current) === millisecondOf(lost)) sameMillisecond++;
        // The cursor a watch that read the forgotten write holds (`<stream id>@<epoch>`).
        const seenCursor = `${lost}@${synced.cursor.split('@')[1]}` as WatchCursor;

        expect(current, `round ${round}: the new write took the forgotten write's version`).not.toBe(lost);
        const refused = await store.update('doc', bytes('over a forgotten write'), lost).then(
          () => undefined,
          (error: unknown) => error,
        );
        expect(KvError.is(refused, KvErrorCode.RevisionMismatch), `round ${round}: ${String(refused)}`).toBe(true);
        const resumed = new WatchReader(store, { from: seenCursor });
        const failure = await resumed.failure();
        expect(KvError.is(failure, KvErrorCode.CursorExpired), `round ${round}: resumed after a forgotten write: ${String(failure)}`).toBe(
          true,
        );
      }
      console.log(`[redis] ${rounds} rounds: the new write came in the forgotten write's millisecond in ${sameMillisecond}`);
    } finally {
      await store.close();
      await dropBucket(raw, bucket);
    }
  });
});
