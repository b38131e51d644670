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
import { createIdentity, createLibrary, invitationOf, lwwSet, openSync, projectLww, type Sync } from '@weft/sync';
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

for (const backend of backends) {
  describe.skipIf(backend.missing !== undefined)(`membership on a real ${backend.name} server`, () => {
    it('adds a third device from a snapshot, removes a device, and rotates the key end to end', async () => {
      const { open, stop } = await backend.start();
      const nodes: Array<{ log: Awaited<ReturnType<typeof openEventLog>>; sync: Sync; kv: KvStore }> = [];
      const openNode = async (identity: ReturnType<typeof createIdentity>, library: Awaited<ReturnType<typeof createLibrary>>) => {
        const kv = await open();
        const log = await openEventLog({ dir: '/device', fs: new MemoryFileSystem(), encryption: {} });
        const sync = await openSync({ log, kv, identity, library, live: true, pollIntervalMs: 200 });
        const node = { log, sync, kv };
        nodes.push(node);
        return node;
      };
      try {
        const ownerIdentity = createIdentity();
        const library = await createLibrary({ kv: await open(), identity: ownerIdentity, id: `lib-${backend.name}` });
        const owner = await openNode(ownerIdentity, library);
        const leaving = createIdentity();
        const leaver = await openNode(leaving, library);
        await owner.sync.addMember(invitationOf(leaving));
        for (let n = 0; n < 5; n++) {
          await owner.log.append({ entity: 'doc', kind, payload: bytes(`owner-${backend.name}-${n}`) });
          await leaver.log.append({ entity: 'doc', kind, payload: bytes(`leaver-${backend.name}-${n}`) });
        }
        for (const node of [owner, leaver, owner]) await node.sync.waitUntilCaughtUp({ timeoutMs: 60_000 });
        expect(await owner.sync.publishSnapshot()).toBeDefined();

        // A third device joins and bootstraps from the snapshot.
        const joining = createIdentity();
        const third = await openNode(joining, library);
        await owner.sync.addMember(invitationOf(joining));
        await third.sync.waitUntilCaughtUp({ timeoutMs: 60_000 });
        expect(await eventSet(third.log)).toEqual(await eventSet(owner.log));
        expect((await eventSet(third.log)).length).toBe(10);

        // The owner removes a device: the key rotates, the others adopt it, the removed one reads nothing new.
        const { generation } = await owner.sync.removeMember(leaving.deviceId);
        expect(generation).toBe(1);
        await owner.log.append({ entity: 'doc', kind, payload: bytes(`after-rotation-${backend.name}`) });
        for (const node of [owner, third, leaver, owner, third]) await node.sync.waitUntilCaughtUp({ timeoutMs: 60_000 });
        expect(third.sync.status().keyGeneration).toBe(1);
        expect(third.sync.status().rotationPending).toBe(false);
        expect(await eventSet(third.log)).toEqual(await eventSet(owner.log));
        expect((await eventSet(third.log)).some((line) => line.includes('after-rotation'))).toBe(true);
        expect((await eventSet(leaver.log)).some((line) => line.includes('after-rotation'))).toBe(false);
        expect(leaver.sync.status().role).toBeUndefined();
        const raw = await open();
        for await (const entry of raw.scan()) {
          expect(Buffer.from(entry.value).toString('latin1').includes(`-${backend.name}-`), `plaintext in ${entry.key}`).toBe(false);
        }
        await raw.close();
      } finally {
        for (const node of nodes) {
          await node.sync.close();
          await node.log.close();
          await node.kv.close();
        }
        await stop();
      }
    }, 120_000);
  });
}
