// Push then pull of 2,000 one-event changesets through the in-memory KV backend (profile the pull half).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEventLog } from '@weft/eventlog';
import { createMemoryKvServer, openMemoryKv } from '@weft/kv';
import { createIdentity, createLibrary, invitationOf, openSync } from '@weft/sync';

const root = mkdtempSync(join(tmpdir(), 'weft-profile-sync-'));
const server = createMemoryKvServer();
const store = () => openMemoryKv({ server, bucket: 'sync' });
const founder = createIdentity();
const reader = createIdentity();
const library = await createLibrary({ kv: await store(), identity: founder, id: 'profile' });
const open = async (identity, dir) => {
  const log = await openEventLog({ dir: join(root, dir), encryption: {}, sync: 'none' });
  return { log, sync: await openSync({ log, kv: await store(), identity, library, live: false, maxEventsPerChangeset: 1 }) };
};
const writer = await open(founder, 'writer');
await writer.sync.addMember(invitationOf(reader));
const count = 2000;
await writer.log.appendBatch(
  Array.from({ length: count }, (_, index) => ({ entity: `notes.${index % 50}`, kind: 0x1001, payload: new Uint8Array(200).fill(3) })),
);
await writer.log.flush();
let started = performance.now();
await writer.sync.syncOnce();
console.log(`push: ${Math.round(count / ((performance.now() - started) / 1000))} changesets/s`);
const device = await open(reader, 'reader');
started = performance.now();
await device.sync.syncOnce();
console.log(`pull: ${Math.round(count / ((performance.now() - started) / 1000))} changesets/s`);
for (const each of [writer, device]) {
  await each.sync.close();
  await each.log.close();
}
rmSync(root, { recursive: true, force: true });
