/**
 * `weft demo`: the project's main job in one command. Three devices share an
 * end-to-end encrypted library through one KV bucket: they write encrypted
 * events, sync live and converge; one device crypto-shreds a scope; the owner
 * removes a device and the library key rotates; finally every value the store
 * holds is searched for plaintext.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EventLog, openEventLog } from '@weft/eventlog';
import { createMemoryKvServer, type KvStore, type MemoryKvServer, openMemoryKv } from '@weft/kv';
import { createIdentity, createLibrary, type DeviceIdentity, invitationOf, lwwSet, openSync, projectLww, type Sync } from '@weft/sync';
import { formatBytes } from './output.js';
import { describeStore, openKv } from './stores.js';

export interface DemoOptions {
  /** A store URL; memory:// runs everything in this process. */
  readonly kv: string;
  /** Events each device writes. */
  readonly events: number;
  /** Keep the device directories instead of deleting them. */
  readonly keep: boolean;
}

interface Device {
  readonly name: string;
  readonly identity: DeviceIdentity;
  readonly dir: string;
  readonly kv: KvStore;
  log: EventLog;
  sync: Sync;
}

const noteKind = 0x1101;
const encoder = new TextEncoder();

function line(step: string, label: string, text: string): void {
  process.stdout.write(` ${step} ${label.padEnd(8)} ${text}\n`);
}

function status(text: string): void {
  if (process.stdout.isTTY) process.stdout.write(`\r\u001b[K   ${text}`);
}

function clearStatus(): void {
  if (process.stdout.isTTY) process.stdout.write('\r\u001b[K');
}

async function eventIds(log: EventLog): Promise<string[]> {
  const ids: string[] = [];
  for await (const event of log.read()) ids.push(event.id);
  return ids.sort();
}

/** Runs the demo; resolves to true when every check held. */
export async function runDemo(options: DemoOptions): Promise<boolean> {
  const started = Date.now();
  const bucket = `demo-${randomBytes(4).toString('hex')}`;
  const root = mkdtempSync(join(tmpdir(), 'weft-demo-'));
  const memory: MemoryKvServer | undefined = options.kv.startsWith('memory:') ? createMemoryKvServer() : undefined;
  const openStore = () => (memory === undefined ? openKv(options.kv, bucket, { create: true }) : openMemoryKv({ server: memory, bucket }));
  const devices: Device[] = [];
  const secrets: string[] = [];
  let ok = true;
  process.stdout.write(`weft demo: 3 devices, one end-to-end encrypted library, store ${describeStore(options.kv)}, bucket ${bucket}\n`);
  try {
    // 1. A library with a founder and two invited devices.
    const founder = createIdentity();
    const setup = await openStore();
    const library = await createLibrary({ kv: setup, identity: founder, id: bucket }).finally(() => setup.close());
    for (const [name, identity] of [
      ['alice', founder],
      ['bob', createIdentity()],
      ['carol', createIdentity()],
    ] as const) {
      const dir = join(root, name);
      const log = await openEventLog({ dir, encryption: {}, sync: 'group' });
      const kv = await openStore();
      devices.push({ name, identity, dir, kv, log, sync: await openSync({ log, kv, identity, library, live: true, pollIntervalMs: 250 }) });
    }
    const [alice, bob, carol] = devices as [Device, Device, Device];
    await alice.sync.addMember(invitationOf(bob.identity));
    await alice.sync.addMember(invitationOf(carol.identity));
    line('1/6', 'library', `alice founded the library and invited bob and carol (owner: alice)`);

    // 2. Encrypted writes on every device.
    for (let index = 0; index < options.events; index++) {
      for (const device of devices) {
        const privateNote = device === carol && index % 3 === 0;
        const secret = `${device.name} note ${index}: ${randomBytes(6).toString('hex')}`;
        secrets.push(secret);
        await device.log.append({
          entity: `notes/${device.name}`,
          scope: privateNote ? 'carol-private' : 'shared',
          kind: noteKind,
          payload: encoder.encode(secret),
        });
      }
      status(`writing: ${(index + 1) * devices.length} events`);
    }
    for (const device of devices) await lwwSet(device.log, 'settings', 'theme', encoder.encode(`${device.name}'s theme`));
    clearStatus();
    const total = devices.length * (options.events + 1);
    line('2/6', 'writes', `${total} encrypted events on 3 devices (${options.events} notes and a settings change each)`);

    // 3. Live sync until everyone converged.
    const syncStart = Date.now();
    for (let round = 0; round < 3; round++) {
      for (const device of devices) {
        await device.sync.waitUntilCaughtUp({ timeoutMs: 60_000 });
        status(`syncing: ${devices.map((other) => `${other.name} ${other.log.head}/${total}`).join('  ')}`);
      }
    }
    clearStatus();
    const sets = await Promise.all(devices.map((device) => eventIds(device.log)));
    const converged = sets.every((set) => set.length === total && JSON.stringify(set) === JSON.stringify(sets[0]));
    const themes = await Promise.all(
      devices.map(async (device) => new TextDecoder().decode((await projectLww(device.log, 'settings')).entries.get('theme'))),
    );
    const agreed = themes.every((theme) => theme === themes[0]);
    ok &&= converged && agreed;
    line(
      '3/6',
      'sync',
      converged
        ? `converged in ${((Date.now() - syncStart) / 1000).toFixed(1)} s: every device holds the same ${total} events; settings agree (theme = "${themes[0]}")`
        : `NOT converged: ${devices.map((device, index) => `${device.name} ${sets[index]?.length}`).join(', ')}`,
    );

    // 4. Crypto-shredding one scope on carol's device.
    const destroyed = await carol.log.shred({ scope: 'carol-private' });
    let shredded = 0;
    for await (const event of carol.log.read()) if (event.disposition === 'shredded') shredded++;
    const verified = await carol.log.verify();
    ok &&= destroyed > 0 && shredded > 0 && verified.ok;
    line(
      '4/6',
      'shred',
      `carol shredded scope "carol-private": ${shredded} of her events now read as shredded; her log still verifies (${verified.ok ? 'ok' : 'FAILED'})`,
    );

    // 5. Removing bob rotates the library key.
    const { generation } = await alice.sync.removeMember(bob.identity.deviceId);
    const afterRotation = `alice after the rotation: ${randomBytes(6).toString('hex')}`;
    secrets.push(afterRotation);
    await alice.log.append({ entity: 'notes/alice', scope: 'shared', kind: noteKind, payload: encoder.encode(afterRotation) });
    for (let round = 0; round < 2; round++)
      for (const device of [alice, carol, bob]) await device.sync.waitUntilCaughtUp({ timeoutMs: 60_000 });
    const readBy = async (device: Device) => {
      for await (const event of device.log.read()) if (new TextDecoder().decode(event.payload) === afterRotation) return true;
      return false;
    };
    const carolReads = await readBy(carol);
    const bobReads = await readBy(bob);
    const adopted = carol.sync.status().keyGeneration === generation && !carol.sync.status().rotationPending;
    ok &&= carolReads && !bobReads && adopted;
    line(
      '5/6',
      'rotate',
      `alice removed bob: key generation ${generation}; carol adopted it and reads the new note (${carolReads ? 'yes' : 'NO'}); bob cannot (${bobReads ? 'HE CAN' : 'right'})`,
    );

    // 6. What the store saw.
    const audit = await openStore();
    let values = 0;
    let bytes = 0;
    let matches = 0;
    for await (const entry of audit.scan()) {
      values++;
      bytes += entry.value.length;
      const stored = Buffer.from(entry.value);
      for (const secret of secrets) if (stored.includes(Buffer.from(secret))) matches++;
    }
    await audit.close();
    ok &&= matches === 0;
    line(
      '6/6',
      'store',
      `${values} values, ${formatBytes(bytes)}; searched for all ${secrets.length} plaintexts: ${matches} found, the store saw ciphertext only`,
    );

    const finalCount = (await eventIds(alice.log)).length;
    process.stdout.write(
      `summary: events=${finalCount} converged=${converged ? 'yes' : 'no'} shredded=${shredded} rotation=generation-${generation} plaintext-in-store=${matches} ` +
        `time=${((Date.now() - started) / 1000).toFixed(1)}s ${ok ? 'OK' : 'FAILED'}\n`,
    );
    if (options.keep) process.stdout.write(`device directories kept in ${root} (and the bucket ${bucket})\n`);
    return ok;
  } finally {
    for (const device of devices) {
      await device.sync.close().catch(() => undefined);
      await device.log.close().catch(() => undefined);
      await device.kv.close().catch(() => undefined);
    }
    if (!options.keep) {
      rmSync(root, { recursive: true, force: true });
      // On a real server the demo's bucket goes too (a store that can destroy buckets: NATS, Redis).
      if (memory === undefined) {
        const store = (await openStore().catch(() => undefined)) as (KvStore & { destroy?: () => Promise<void> }) | undefined;
        if (store?.destroy !== undefined) await store.destroy().catch(() => undefined);
        else await store?.close();
      }
    }
  }
}
