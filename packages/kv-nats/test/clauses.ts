/**
 * Clauses only the NATS backend has, as conformance checks on a spawned
 * server (run by clauses.test.ts, and by the mutant set on mutated copies of
 * this package): resume horizons of buckets that lose messages to a size
 * limit, and of compaction.
 */
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { KvErrorCode, type WatchCursor } from '@weft/kv';
import type { NatsKvStore, openNatsKv } from '@weft/kv-nats';
import { bytes, type ConformanceCheck, expectKvError, WatchReader } from '@weft/kv-testkit';
import { expect } from 'vitest';
import { dropBucket, type NatsFixture } from './helpers.js';

/** Resumes a watch from `from` until it is synced; the error it fails with, if any. */
async function resume(store: NatsKvStore, from: WatchCursor): Promise<void> {
  const watch = new WatchReader(store, { from });
  try {
    await watch.untilSynced();
  } finally {
    await watch.stop();
  }
}

export function natsClauseChecks(open: typeof openNatsKv, fixture: NatsFixture): ConformanceCheck[] {
  return [
    {
      group: 'watch',
      name: 'a bucket that dropped old messages to its size limit (max_bytes, discard old) answers a cursor below them with CursorExpired',
      run: async (context) => {
        const bucket = `${context.bucket}sized`;
        const manager = await jetstreamManager(fixture.raw);
        // As another tool may make a bucket: a size limit that drops the oldest messages.
        await manager.streams.add({
          name: `KV_${bucket}`,
          subjects: [`$KV.${bucket}.>`],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          max_msgs_per_subject: 1,
          max_bytes: 8 * 1024,
          discard: DiscardPolicy.Old,
          allow_rollup_hdrs: true,
          allow_direct: true,
        });
        const store = await open({ servers: fixture.server.url, bucket, sweepIntervalMs: 0 });
        try {
          await store.put('first', bytes('1'));
          const watch = new WatchReader(store);
          const [first] = await watch.untilSynced();
          await watch.stop();
          for (let index = 0; index < 60; index++) await store.put(`filler.${index}`, new Uint8Array(400).fill(index));
          const info = await manager.streams.info(`KV_${bucket}`);
          expect(info.state.first_seq).toBeGreaterThan(2);
          const error = await expectKvError(() => resume(store, first?.cursor as WatchCursor), KvErrorCode.CursorExpired);
          expect(error.retryable).toBe(false);
        } finally {
          await store.close();
          await dropBucket(fixture.raw, bucket);
        }
      },
    },
    {
      group: 'watch',
      name: "compaction's horizon is the newest tombstone it removed: a cursor between two removed tombstones is CursorExpired",
      run: async (context) => {
        const store = (await context.open()) as NatsKvStore;
        await store.put('a', bytes('1'));
        await store.put('b', bytes('2'));
        await store.delete('a');
        // A cursor just after a's tombstone, before b's.
        const reader = new WatchReader(store);
        const events = await reader.untilSynced();
        await reader.stop();
        const synced = events.at(-1);
        await store.delete('b');
        await store.compact({ olderThanMs: 0 });
        await expectKvError(() => resume(store, synced?.cursor as WatchCursor), KvErrorCode.CursorExpired);
      },
    },
  ];
}
