/**
 * A new device catches up with a large history through real servers: every
 * pull asks for at most a byte budget of changesets, from its first request,
 * so it never asks a server for more than the connection may have pending.
 * 100,000 events of 1,000 B through a default nats-server (64 MB pending
 * per connection: a first pull of every changeset at once asks for 100 MB)
 * and through Redis; with `WEFT_LONG=1` also 20,000 through a nats-server
 * that lets a connection have only 8 MB pending.
 */

import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryKvServer, KvError, KvErrorCode, type KvStore, openMemoryKv } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { openRedisKv } from '@weft/kv-redis';
import { natsUnavailable, redisUnavailable, startNatsServer, startRedisServer } from '@weft/test-servers';
import { describe, expect, it } from 'vitest';
import { type Device, kind, makeLibrary, openDevice } from './helpers.js';

const long = process.env.WEFT_LONG === '1';

interface Store {
  open(): Promise<KvStore>;
  stop(): Promise<void>;
}

const cases: Array<{ name: string; events: number; missing: string | undefined; start: () => Promise<Store> }> = [
  {
    name: 'nats, defaults',
    events: 100_000,
    missing: natsUnavailable(),
    start: async () => {
      const server = await startNatsServer();
      return { open: () => openNatsKv({ servers: server.url, bucket: 'library', create: { history: 1 } }), stop: () => server.stop() };
    },
  },
  {
    name: 'redis',
    events: 100_000,
    missing: redisUnavailable(),
    start: async () => {
      const server = await startRedisServer();
      return { open: () => openRedisKv({ url: server.url, bucket: 'library' }), stop: () => server.stop() };
    },
  },
  ...(long
    ? [
        {
          name: 'nats, 8 MB pending per connection',
          events: 20_000,
          missing: natsUnavailable(),
          start: async () => {
            const config = join(tmpdir(), `weft-sync-small-pending-${process.pid}.conf`);
            writeFileSync(config, 'max_pending: 8MB\n');
            const server = await startNatsServer({ args: ['-c', config] });
            return {
              open: () => openNatsKv({ servers: server.url, bucket: 'library', create: { history: 1 } }),
              stop: () => server.stop(),
            };
          },
        },
      ]
    : []),
];

for (const { name, events, missing, start } of cases) {
  describe.skipIf(missing !== undefined)(`a new device bootstraps through ${name}${missing ? ` (${missing})` : ''}`, () => {
    it(`applies ${events.toLocaleString('en')} events of 1,000 B written in 256-event changesets`, async () => {
      const store = await start();
      const { identities, library } = makeLibrary(2);
      const devices: Device[] = [];
      try {
        const writer = await openDevice(identities[0] as never, library, await store.open(), { logSync: 'none' });
        devices.push(writer);
        const payload = new Uint8Array(1000).fill(7);
        for (let index = 0; index < events; index += 1000) {
          await writer.log.appendBatch(
            Array.from({ length: 1000 }, (_, offset) => ({ entity: `doc-${(index + offset) % 97}`, kind, payload })),
          );
        }
        await writer.sync.waitUntilCaughtUp({ timeoutMs: 600_000 });
        const reader = await openDevice(identities[1] as never, library, await store.open(), { logSync: 'none' });
        devices.push(reader);
        await reader.sync.waitUntilCaughtUp({ timeoutMs: 600_000 });
        expect(reader.log.head).toBe(events);
        expect(reader.sync.status().alarms).toEqual([]);
      } finally {
        for (const device of devices) {
          await device.sync.close();
          await device.log.close();
          await device.kv.close();
        }
        await store.stop();
      }
    }, 900_000);
  });
}

/** The byte budget of one pull batch (`batchBudgetBytes` in pull.ts). */
const batchBudgetBytes = 16 * 1024 * 1024;

describe('what a pull asks the store for', () => {
  /**
   * The memory store, recording each burst of reads of `device`'s changesets
   * (the reads a pull sends before any of them is answered) with the bytes they brought,
   * and failing the reads of one burst with `Timeout` when asked.
   */
  function recordingStore(kv: KvStore, device: string, failBurst = -1) {
    const bursts: Array<{ reads: number; bytes: number; failed: boolean }> = [];
    let open: { reads: number; bytes: number; failed: boolean } | undefined;
    const get = kv.get.bind(kv);
    kv.get = (key: string) => {
      if (!key.startsWith(`changes.${device}.`)) return get(key);
      if (open === undefined) {
        const burst = { reads: 0, bytes: 0, failed: bursts.length === failBurst };
        open = burst;
        bursts.push(burst);
        setImmediate(() => {
          open = undefined;
        });
      }
      const burst = open;
      burst.reads++;
      // Answered a turn of the event loop later, as a server would: the reads of one batch share a burst.
      const answered = new Promise<void>((resolve) => setImmediate(resolve));
      if (burst.failed) {
        return answered.then(() => {
          throw new KvError(KvErrorCode.Timeout, 'the store did not answer in time', { backend: 'memory' });
        });
      }
      return answered
        .then(() => get(key))
        .then((entry) => {
          burst.bytes += entry?.value.length ?? 0;
          return entry;
        });
    };
    // A pull reads a batch with getMany: each of its keys through the recording get above, all at once.
    kv.getMany = (keys: readonly string[]) => Promise.all(keys.map((key) => kv.get(key)));
    return bursts;
  }

  it('starts with one changeset, never has more than the byte budget in flight, and halves after a timeout', async () => {
    const server = createMemoryKvServer();
    const { identities, library } = makeLibrary(2);
    const writer = await openDevice(identities[0] as never, library, await openMemoryKv({ server, bucket: 'b' }), { logSync: 'none' });
    const payload = new Uint8Array(1000).fill(7);
    for (let index = 0; index < 40_000; index += 1000) {
      await writer.log.appendBatch(
        Array.from({ length: 1000 }, (_, offset) => ({ entity: `doc-${(index + offset) % 97}`, kind, payload })),
      );
    }
    await writer.sync.waitUntilCaughtUp({ timeoutMs: 120_000 });
    const kv = await openMemoryKv({ server, bucket: 'b' });
    const bursts = recordingStore(kv, writer.identity.deviceId);
    const reader = await openDevice(identities[1] as never, library, kv, { logSync: 'none' });
    try {
      // One round of a first pull: the first burst is one changeset, the later ones fit the budget.
      await reader.sync.syncOnce();
      const [first, ...rest] = bursts;
      expect(first?.reads).toBe(1);
      const changeset = first?.bytes ?? 0;
      expect(changeset).toBeGreaterThan(200_000);
      for (const burst of rest) expect(burst.bytes).toBeLessThanOrEqual(batchBudgetBytes + changeset);
      expect(Math.max(...rest.map((burst) => burst.reads))).toBeGreaterThan(1);
    } finally {
      await reader.sync.close();
      await reader.log.close();
      await writer.sync.close();
      await writer.log.close();
    }
    // A timeout halves what the next batch asks for: the third burst (after one changeset and a full window) fails.
    const again = await openMemoryKv({ server, bucket: 'b' });
    const failing = recordingStore(again, writer.identity.deviceId, 2);
    const fresh = await openDevice(identities[1] as never, library, again, { logSync: 'none' });
    try {
      await fresh.sync.syncOnce().catch(() => undefined);
      expect(failing[2]?.failed).toBe(true);
      await fresh.sync.syncOnce().catch(() => undefined);
      const failedReads = failing[2]?.reads ?? 0;
      expect(failedReads).toBeGreaterThan(2);
      expect(failing[3]?.reads).toBeLessThanOrEqual(Math.floor(failedReads / 2));
      await fresh.sync.waitUntilCaughtUp({ timeoutMs: 120_000 });
      expect(fresh.log.head).toBe(40_000);
    } finally {
      await fresh.sync.close();
      await fresh.log.close();
    }
  }, 300_000);
});
