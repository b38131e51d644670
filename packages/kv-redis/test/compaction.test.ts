/**
 * Compaction of a churned bucket: the records deleted and purged keys leave
 * behind are removed, the bucket stops growing, and nothing a user relies on
 * changes: reads, writes, compare-and-swap, listings, and watches resumed
 * from before the compaction.
 */
import { openRedisKv } from '@weft/kv-redis';
import { describe, expect, it } from 'vitest';
import { bucketKeys, bytes, decode, redisMissing, standalone } from './helpers.js';

describe.skipIf(redisMissing !== undefined)('redis compaction', () => {
  it('removes the tombstones of churned keys; watches resumed from before still see every delete', async () => {
    const { server, raw } = await standalone();
    const store = await openRedisKv({ url: server.url, bucket: 'churn', sweepIntervalMs: 0 });
    try {
      await store.put('kept', bytes('k'));
      const start = await store.put('marker', bytes('m'));
      const startCursor = (await firstCursorAt(store, start)) as string;
      for (let index = 0; index < 300; index++) {
        await store.put(`churn.${index}`, bytes(String(index)));
        if (index % 2 === 0) await store.delete(`churn.${index}`);
        else await store.purge(`churn.${index}`);
      }
      // Deleted, then written again: its record is live and must stay.
      await store.delete('kept');
      await store.put('kept', bytes('again'));
      const before = (await bucketKeys(raw, 'churn')).filter((key) => key.includes(':r:')).length;
      expect(before).toBe(302);

      expect(await store.compact({ olderThanMs: 0 })).toEqual({ removedTombstones: 300 });
      const records = (await bucketKeys(raw, 'churn')).filter((key) => key.includes(':r:'));
      expect(records.sort()).toEqual(['weft:{churn}:r:kept', 'weft:{churn}:r:marker']);
      expect(await raw.zcard('weft:{churn}:tomb')).toBe(0);

      expect(await store.entry('churn.0')).toBeUndefined();
      expect(decode((await store.get('kept'))?.value ?? new Uint8Array())).toBe('again');
      // Absent and deleted are the same to writes: create succeeds, a stale CAS is refused.
      await store.create('churn.0', bytes('new'));
      await expect(store.update('churn.1', bytes('x'), start)).rejects.toMatchObject({ code: 'RevisionMismatch' });

      // The change stream still carries every delete and purge after the compaction.
      const seen = new Map<string, string>();
      for await (const event of store.watch({ from: startCursor as never, prefixes: ['churn'] })) {
        if (event.type === 'synced') break;
        seen.set(event.key, event.type);
      }
      expect(seen.size).toBe(300);
      expect(seen.get('churn.0')).toBe('put');
      expect(seen.get('churn.2')).toBe('delete');
      expect(seen.get('churn.1')).toBe('purge');
    } finally {
      await store.close();
      raw.disconnect();
      await server.stop();
    }
  });

  it('keeps tombstones younger than olderThanMs', async () => {
    const { server, raw } = await standalone();
    const store = await openRedisKv({ url: server.url, bucket: 'young', sweepIntervalMs: 0 });
    try {
      await store.put('a', bytes('1'));
      await store.delete('a');
      expect(await store.compact({ olderThanMs: 3_600_000 })).toEqual({ removedTombstones: 0 });
      expect((await store.entry('a'))?.op).toBe('delete');
      await expect(store.compact({ olderThanMs: -1 })).rejects.toMatchObject({ code: 'InvalidArgument' });
    } finally {
      await store.close();
      raw.disconnect();
      await server.stop();
    }
  });
});

/** The cursor of the put that returned `version`, read by a state-sync watch. */
async function firstCursorAt(store: Awaited<ReturnType<typeof openRedisKv>>, version: string): Promise<string | undefined> {
  for await (const event of store.watch({ prefixes: ['marker'] })) {
    if (event.type === 'put' && event.version === version) return event.cursor;
    if (event.type === 'synced') return undefined;
  }
  return undefined;
}
