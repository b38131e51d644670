/**
 * The convergence scenario, with fewer steps, against real servers: three
 * devices in live mode (heads watched, pushes on local appends, retries on a
 * timer) on a spawned nats-server and a spawned redis-server, one device
 * restarted midway; afterwards every KV value is scanned for plaintext.
 */
import { MemoryFileSystem, openEventLog } from '@weft/eventlog';
import type { KvStore } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { openRedisKv } from '@weft/kv-redis';
import { lwwSet, openSync, projectLww } from '@weft/sync';
import { natsUnavailable, redisUnavailable, startNatsServer, startRedisServer } from '@weft/test-servers';
import { describe, expect, it } from 'vitest';
import { bytes, type Device, eventSet, kind, makeLibrary, text } from './helpers.js';

const backends: Array<{
  name: string;
  missing: string | undefined;
  start: () => Promise<{ open: () => Promise<KvStore>; stop: () => Promise<void> }>;
}> = [
  {
    name: 'nats',
    missing: natsUnavailable(),
    start: async () => {
      const server = await startNatsServer();
      return { open: () => openNatsKv({ servers: server.url, bucket: 'library', create: { history: 1 } }), stop: () => server.stop() };
    },
  },
  {
    name: 'redis',
    missing: redisUnavailable(),
    start: async () => {
      const server = await startRedisServer();
      return { open: () => openRedisKv({ url: server.url, bucket: 'library' }), stop: () => server.stop() };
    },
  },
];

for (const backend of backends) {
  if (backend.missing !== undefined) console.warn(`SKIPPING sync on ${backend.name}: ${backend.missing}`);
  describe.skipIf(backend.missing !== undefined)(`sync on a real ${backend.name} server`, () => {
    it('three live devices converge, survive a restart, and the store holds no plaintext', async () => {
      const { open, stop } = await backend.start();
      const { identities, library } = makeLibrary(3);
      const devices: Device[] = [];
      const openDevice = async (index: number, fs = new MemoryFileSystem()) => {
        const kv = await open();
        const log = await openEventLog({ dir: '/device', fs, encryption: {} });
        const sync = await openSync({ log, kv, identity: identities[index] as never, library, live: true, pollIntervalMs: 200 });
        return { identity: identities[index] as never, fs, log, sync, kv } satisfies Device;
      };
      try {
        for (let index = 0; index < 3; index++) devices.push(await openDevice(index));
        const secret = (index: number, n: number) => `secret-${backend.name}-${index}-${n}`;
        for (let n = 0; n < 5; n++) {
          for (const [index, device] of devices.entries()) {
            await device.log.append({ entity: `doc-${n % 2}`, kind, payload: bytes(secret(index, n)) });
            await lwwSet(device.log, 'prefs', `key-${n % 3}`, bytes(`${index}:${n}`));
          }
        }
        // Restart device 2 halfway: close it, reopen log and sync from the same filesystem.
        const restarted = devices[2] as Device;
        await restarted.sync.close();
        await restarted.log.close();
        await restarted.kv.close();
        devices[2] = await openDevice(2, restarted.fs);
        await (devices[2] as Device).log.append({ entity: 'doc-after-restart', kind, payload: bytes(secret(2, 99)) });

        for (let round = 0; round < 2; round++) for (const device of devices) await device.sync.waitUntilCaughtUp({ timeoutMs: 60_000 });
        const sets = await Promise.all(devices.map((device) => eventSet(device.log)));
        expect(sets[0]?.length).toBe(3 * 10 + 1);
        for (const set of sets) expect(set).toEqual(sets[0]);
        const maps = await Promise.all(
          devices.map(async (device) =>
            [...(await projectLww(device.log, 'prefs')).entries].map(([key, value]) => `${key}=${text(value)}`),
          ),
        );
        for (const map of maps) expect(map).toEqual(maps[0]);
        for (const device of devices) expect(device.sync.status().alarms).toEqual([]);

        const raw = await open();
        let values = 0;
        for await (const entry of raw.scan()) {
          values++;
          expect(Buffer.from(entry.value).toString('latin1').includes(`secret-${backend.name}`), `plaintext in ${entry.key}`).toBe(false);
        }
        expect(values).toBeGreaterThan(3);
        await raw.close();
      } finally {
        for (const device of devices) {
          await device.sync.close();
          await device.log.close();
          await device.kv.close();
        }
        await stop();
      }
    }, 120_000);
  });
}
