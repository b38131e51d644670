/**
 * Clauses only the NATS backend has, as conformance checks on a spawned
 * server (run by clauses.test.ts, and by the mutant set on mutated copies of
 * this package): resume horizons of buckets that lose messages to a size
 * limit, and of compaction; where the backend emulates TTLs (NATS before
 * 2.11), the expire marker racing a write.
 */
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { KvErrorCode, type WatchCursor } from '@weft/kv';
import type { NatsKvStore, openNatsKv } from '@weft/kv-nats';
import { bytes, type ConformanceCheck, expectKvError, text, WatchReader } from '@weft/kv-testkit';
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

export function natsClauseChecks(
  open: typeof openNatsKv,
  fixture: NatsFixture,
  { emulatedTtl, atomicBatch = false }: { readonly emulatedTtl: boolean; readonly atomicBatch?: boolean },
): ConformanceCheck[] {
  return [
    lostAnswer(open, fixture),
    ...(emulatedTtl ? [expireMarkerRace(open, fixture)] : []),
    ...(atomicBatch ? [commitTombstoneRace(open, fixture)] : []),
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

/**
 * The sweeper reads a key's latest message, finds its TTL passed and writes
 * an expire marker; another client's write may land in between. The marker
 * must be conditional on the message the sweeper read, so that write
 * survives. The backend talks through a connection of the check's own,
 * which holds the marker's publish until another handle's write to the key
 * has been acknowledged: the interleaving happens every run.
 */
function expireMarkerRace(open: typeof openNatsKv, fixture: NatsFixture): ConformanceCheck {
  return {
    group: 'ttl',
    name: "the sweeper's expire marker is conditional on the message it read: a write landing between its read and its marker survives",
    run: async (context) => {
      const bucket = `${context.bucket}race`;
      const connection = await connect({ servers: fixture.server.url });
      const other = await open({ servers: fixture.server.url, bucket, create: true, sweepIntervalMs: 0 });
      const store = await open({ connection, bucket, sweepIntervalMs: 0 });
      const request = connection.request.bind(connection);
      let held = 0;
      Object.assign(connection, {
        request: async (subject: string, payload?: Uint8Array, options?: { headers?: { get(name: string): string } }) => {
          if (subject === `$KV.${bucket}.raced` && options?.headers?.get('Weft-Op') === 'expire') {
            held++;
            await other.put('raced', bytes('fresh'));
          }
          return request(subject, payload, options as never);
        },
      });
      try {
        await store.putWithTtl('raced', bytes('old'), 200);
        while ((await store.get('raced')) !== undefined) await new Promise((resolve) => setTimeout(resolve, 20));
        await store.sweepExpired();
        expect(held, 'expire markers the sweeper tried to write').toBe(1);
        expect(text((await store.get('raced'))?.value ?? bytes('(absent)'))).toBe('fresh');
        expect(text((await other.get('raced'))?.value ?? bytes('(absent)'))).toBe('fresh');
      } finally {
        await store.close();
        await other.close();
        await connection.close();
        await dropBucket(fixture.raw, bucket);
      }
    },
  };
}

/**
 * A commit's create expects the sequence of the key's tombstone; a delete of
 * the key landing before the batch writes a newer tombstone, and the server
 * refuses the batch though every precondition still holds (the key is still
 * absent). The commit must read again and send again. The backend talks
 * through a connection of the check's own, which holds the batch's first
 * message until another handle's delete is acknowledged, every run.
 */
export function commitTombstoneRace(open: typeof openNatsKv, fixture: NatsFixture): ConformanceCheck {
  return {
    group: 'commit',
    name: "a commit's create over a tombstone that a delete replaced just before the batch is sent again, not refused",
    run: async (context) => {
      const bucket = `${context.bucket}tomb`;
      const connection = await connect({ servers: fixture.server.url });
      const other = await open({ servers: fixture.server.url, bucket, create: true, sweepIntervalMs: 0 });
      const store = await open({ connection, bucket, sweepIntervalMs: 0 });
      const request = connection.request.bind(connection);
      let raced = 0;
      Object.assign(connection, {
        request: async (subject: string, payload?: Uint8Array, options?: { headers?: { get(name: string): string } }) => {
          if (subject === `$KV.${bucket}.k` && options?.headers?.get('Nats-Batch-Sequence') === '1' && raced === 0) {
            raced++;
            await other.delete('k');
          }
          return request(subject, payload, options as never);
        },
      });
      try {
        await other.delete('k');
        const [created] = await store.commit([
          { op: 'create', key: 'k', value: bytes('created') },
          { op: 'put', key: 'j', value: bytes('with it') },
        ]);
        expect(raced, 'deletes raced under the batch').toBe(1);
        expect((await other.get('k'))?.version).toBe(created);
        expect(text((await other.get('j'))?.value ?? bytes('(absent)'))).toBe('with it');
      } finally {
        await store.close();
        await other.close();
        await connection.close();
        await dropBucket(fixture.raw, bucket);
      }
    },
  };
}

/** Makes the next request to `subject` reach the server and then fail as unavailable, once. */
export function loseNextAnswer(connection: NatsConnection, subject: string): { lost: () => number } {
  const request = connection.request.bind(connection);
  let armed = true;
  let lost = 0;
  Object.assign(connection, {
    request: async (to: string, payload?: Uint8Array, options?: object) => {
      const reply = await request(to, payload, options as never);
      if (armed && to === subject) {
        armed = false;
        lost++;
        throw new Error('JetStream system temporarily unavailable');
      }
      return reply;
    },
  });
  return { lost: () => lost };
}

/**
 * An update whose first attempt applied but whose answer was lost (the
 * driver sends it again, and the server refuses the copy because the write
 * itself is now the key's last message) returns the version it took.
 */
function lostAnswer(open: typeof openNatsKv, fixture: NatsFixture): ConformanceCheck {
  return {
    group: 'cas',
    name: 'a compare-and-swap whose first attempt applied but whose answer was lost returns the version it took',
    run: async (context) => {
      const bucket = `${context.bucket}lost`;
      const connection = await connect({ servers: fixture.server.url });
      const store = await open({ connection, bucket, create: { history: 5 }, sweepIntervalMs: 0 });
      try {
        const before = await store.put('k', bytes('before'));
        const lost = loseNextAnswer(connection, `$KV.${bucket}.k`);
        const version = await store.update('k', bytes('after'), before);
        expect(lost.lost()).toBe(1);
        const entry = await store.get('k');
        expect(text(entry?.value ?? bytes('(absent)'))).toBe('after');
        expect(entry?.version).toBe(version);
      } finally {
        await store.destroy();
        await connection.close();
      }
    },
  };
}
