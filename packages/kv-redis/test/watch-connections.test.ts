/**
 * A watch's blocking connection is closed on every path a watch can end,
 * on both clients: counted on the server (CLIENT LIST, by the connection's
 * name), so a user's process is never held open by a watch that ended.
 */
import type { KvStore, WatchCursor } from '@weft/kv';
import { openRedisKv } from '@weft/kv-redis';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, eventually, ioredisClient, redisMissing, standalone, watchConnections } from './helpers.js';

let started: Awaited<ReturnType<typeof standalone>>;
const userClients: Array<{ disconnect(): unknown }> = [];

const clients: Array<{ name: string; open: (bucket: string) => Promise<Awaited<ReturnType<typeof openRedisKv>>> }> = [
  { name: 'default', open: (bucket) => openRedisKv({ url: started.server.url, bucket, sweepIntervalMs: 0 }) },
  {
    name: 'ioredis',
    open: (bucket) => {
      const client = ioredisClient({ url: started.server.url });
      userClients.push(client);
      return openRedisKv({ client, bucket, sweepIntervalMs: 0 });
    },
  },
  {
    name: 'node-redis',
    open: async (bucket) => {
      const client = createClient({ url: started.server.url });
      client.on('error', () => undefined);
      await client.connect();
      userClients.push(client);
      return openRedisKv({ client, bucket, sweepIntervalMs: 0 });
    },
  },
];

/** Runs a watch and ends it one way; resolves once it has ended. */
type Ending = (store: KvStore, from: WatchCursor) => Promise<void>;

const endings: Array<[string, Ending]> = [
  [
    'break at synced (state-sync)',
    async (store) => {
      for await (const event of store.watch({})) if (event.type === 'synced') break;
    },
  ],
  [
    'break at synced (resumed from a cursor)',
    async (store, from) => {
      for await (const event of store.watch({ from })) if (event.type === 'synced') break;
    },
  ],
  [
    'break at the first event',
    async (store) => {
      for await (const _ of store.watch({})) break;
    },
  ],
  [
    'abort',
    async (store) => {
      const controller = new AbortController();
      for await (const event of store.watch({ signal: controller.signal })) if (event.type === 'synced') controller.abort();
    },
  ],
  [
    'error (a cursor the bucket never issued)',
    async (store) => {
      const ahead = '9999999999999-0@zzz' as WatchCursor;
      await expect(
        (async () => {
          for await (const _ of store.watch({ from: ahead })) {
            // nothing is delivered
          }
        })(),
      ).rejects.toMatchObject({ code: expect.stringMatching(/CursorExpired|InvalidArgument/) });
    },
  ],
];

describe.skipIf(redisMissing !== undefined)('a watch connection is closed on every path a watch can end', () => {
  beforeAll(async () => {
    started = await standalone();
  });
  afterAll(async () => {
    for (const client of userClients.splice(0)) client.disconnect();
    started.raw.disconnect();
    await started.server.stop();
  });

  for (const client of clients) {
    for (const [how, end] of endings) {
      it(`${client.name}: ${how}, 20 times`, async () => {
        const bucket = `ends-${client.name}-${how.replace(/[^a-z]/g, '')}`.slice(0, 60);
        const store = await client.open(bucket);
        try {
          const from = await store.put('k', bytes('v'));
          let cursor: WatchCursor | undefined;
          for await (const event of store.watch({})) {
            if (event.type === 'put') cursor = event.cursor;
            if (event.type === 'synced') break;
          }
          for (let round = 0; round < 20; round++) await end(store, cursor ?? (from as unknown as WatchCursor));
          await settledToZero(store, bucket);
        } finally {
          await store.close();
        }
      });
    }

    it(`${client.name}: a running watch when the handle closes`, async () => {
      const bucket = `ends-${client.name}-close`;
      const store = await client.open(bucket);
      const running = (async () => {
        for await (const _ of store.watch({})) {
          // runs until the handle closes
        }
      })().catch(() => undefined);
      await eventually(async () => (await watchConnections(started.raw, bucket)) === 1, 'the watch connection');
      await store.close();
      await running;
      await eventually(async () => (await watchConnections(started.raw, bucket)) === 0, 'no watch connection');
    });

    it(`${client.name}: running watches when the bucket is destroyed`, async () => {
      const bucket = `ends-${client.name}-destroy`;
      const store = await client.open(bucket);
      const running = [0, 1, 2].map(() =>
        (async () => {
          for await (const _ of store.watch({})) {
            // runs until the bucket is destroyed
          }
        })().catch(() => undefined),
      );
      await eventually(async () => (await watchConnections(started.raw, bucket)) === 3, 'the watch connections');
      await store.destroy();
      await Promise.all(running);
      await eventually(async () => (await watchConnections(started.raw, bucket)) === 0, 'no watch connection');
    });
  }
});

/**
 * Waits until no watch connection of `bucket` is open, then proves it
 * stays so: a connection still being made when a watch ended would appear
 * before the one of a later watch, so one more watch is opened, seen, ended,
 * and the count must come back to zero.
 */
async function settledToZero(store: KvStore, bucket: string): Promise<void> {
  await eventually(async () => (await watchConnections(started.raw, bucket)) === 0, 'no watch connection');
  const controller = new AbortController();
  const running = (async () => {
    for await (const _ of store.watch({ signal: controller.signal })) {
      // until aborted
    }
  })();
  await eventually(async () => (await watchConnections(started.raw, bucket)) === 1, 'the probe watch connection');
  controller.abort();
  await running;
  await eventually(async () => (await watchConnections(started.raw, bucket)) === 0, 'no watch connection after the probe');
}
