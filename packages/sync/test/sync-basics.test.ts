import { createMemoryKvServer, openMemoryKv } from '@weft/kv';
import { lwwDelete, lwwSet, projectLww, SyncError } from '@weft/sync';
import { describe, expect, it } from 'vitest';
import { bytes, eventSet, kind, makeLibrary, openDevice, text } from './helpers.js';

describe('sync between devices on one in-memory KV server', () => {
  it('two devices push, pull and converge, with causal parents kept', async () => {
    const server = createMemoryKvServer();
    const { identities, library } = makeLibrary(2);
    const [a, b] = await Promise.all(
      identities.map(async (identity) => openDevice(identity, library, await openMemoryKv({ server, bucket: 'lib' }))),
    );
    if (a === undefined || b === undefined) throw new Error('devices');
    const first = await a.log.append({ entity: 'doc', kind, payload: bytes('from a') });
    await b.log.append({ entity: 'doc', kind, payload: bytes('from b'), parents: [first.events[0]?.id as never] });
    await a.sync.waitUntilCaughtUp();
    await b.sync.waitUntilCaughtUp();
    await a.sync.waitUntilCaughtUp();
    expect(await eventSet(a.log)).toEqual(await eventSet(b.log));
    expect((await eventSet(a.log)).length).toBe(2);
    const onB = await b.log.get(first.events[0]?.id as string);
    expect(text(onB?.payload ?? new Uint8Array())).toBe('from a');
    expect(a.sync.status().pendingUploads).toBe(0);
    expect(b.sync.status().devices[a.sync.device]).toMatchObject({ head: 1, applied: 1, lag: 0 });
    for (const device of [a, b]) {
      await device.sync.close();
      await device.log.close();
    }
  });

  for (const logSync of ['none', 'interval'] as const) {
    it(`devices whose logs sync lazily ('${logSync}') still push and pull: applied events are flushed before the cursor moves`, async () => {
      const server = createMemoryKvServer();
      const { identities, library } = makeLibrary(2);
      const [a, b] = await Promise.all(
        identities.map(async (identity) => openDevice(identity, library, await openMemoryKv({ server, bucket: 'lib' }), { logSync })),
      );
      if (a === undefined || b === undefined) throw new Error('devices');
      for (let index = 0; index < 5; index++) await a.log.append({ entity: `doc${index}`, kind, payload: bytes(`a${index}`) });
      await a.sync.syncOnce();
      expect(await b.sync.syncOnce()).toEqual({ pushed: 0, pulled: 1 });
      expect(b.log.durableHead).toBe(b.log.head);
      expect(await eventSet(b.log)).toEqual(await eventSet(a.log));
      for (const device of [a, b]) {
        await device.sync.close();
        await device.log.close();
      }
    });
  }

  it('the last-writer-wins map converges, delete wins ties, far-future writes are refused', async () => {
    const server = createMemoryKvServer();
    const { identities, library } = makeLibrary(2);
    const [a, b] = await Promise.all(
      identities.map(async (identity) => openDevice(identity, library, await openMemoryKv({ server, bucket: 'lib' }))),
    );
    if (a === undefined || b === undefined) throw new Error('devices');
    // A millisecond apart, so the later write has the later hybrid-logical-clock time.
    const tick = () => new Promise((resolve) => setTimeout(resolve, 2));
    await lwwSet(a.log, 'settings', 'theme', bytes('dark'));
    await tick();
    await lwwSet(b.log, 'settings', 'theme', bytes('light'));
    await lwwSet(a.log, 'settings', 'lang', bytes('en'));
    await tick();
    await lwwDelete(b.log, 'settings', 'lang');
    for (let round = 0; round < 2; round++) for (const device of [a, b]) await device.sync.waitUntilCaughtUp();
    const onA = await projectLww(a.log, 'settings');
    const onB = await projectLww(b.log, 'settings');
    expect([...onA.entries].map(([key, value]) => `${key}=${text(value)}`)).toEqual(
      [...onB.entries].map(([key, value]) => `${key}=${text(value)}`),
    );
    expect(onA.entries.has('lang')).toBe(false);
    expect(text(onA.entries.get('theme') ?? new Uint8Array())).toBe('light');
    const skewed = await projectLww(a.log, 'settings', { now: 0, maxSkewMs: 1000 });
    expect(skewed.refused.length).toBe(4);
    for (const device of [a, b]) {
      await device.sync.close();
      await device.log.close();
    }
  });

  it('a different changeset already at its next seq is a fork, never taken for a retry of its own: the head stays, the bytes there stay', async () => {
    const server = createMemoryKvServer();
    const { identities, library } = makeLibrary(1);
    const kv = await openMemoryKv({ server, bucket: 'lib' });
    const device = await openDevice(identities[0] as never, library, kv);
    await device.log.append({ entity: 'doc', kind, payload: bytes('first') });
    await device.sync.syncOnce();
    const self = device.sync.device;
    const first = await kv.get(`changes.${self}.1`);
    // What another copy of this device (a restored backup, a cloned disk) pushed at the next seq.
    const foreign = first?.value.slice() ?? new Uint8Array(8);
    foreign[foreign.length - 1] = (foreign[foreign.length - 1] ?? 0) ^ 1;
    await kv.create(`changes.${self}.2`, foreign);
    await device.log.append({ entity: 'doc', kind, payload: bytes('second') });
    const error = await device.sync.syncOnce().catch((caught: unknown) => caught);
    expect(SyncError.is(error, 'Fork'), String(error)).toBe(true);
    expect(device.sync.status().alarms.map((alarm) => alarm.code)).toContain('Fork');
    expect(device.sync.status().lastPushedSeq).toBe(1);
    expect(device.sync.status().duplicates.identicalRetries).toBe(0);
    expect(Buffer.from((await kv.get(`changes.${self}.2`))?.value ?? []).equals(Buffer.from(foreign))).toBe(true);
    expect(JSON.parse(text((await kv.get(`heads.${self}`))?.value ?? bytes('{}'))).seq).toBe(1);
    await device.sync.close();
    await device.log.close();
  });

  it('refuses to open for a device that is not a member', async () => {
    const { library } = makeLibrary(1);
    const stranger = makeLibrary(1).identities[0];
    const error = await openDevice(stranger as never, library, await openMemoryKv()).catch((caught: unknown) => caught);
    expect(SyncError.is(error, 'InvalidArgument')).toBe(true);
  });
});
