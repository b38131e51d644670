// Push then pull through the in-memory KV backend: `node sync-pull.mjs [events per changeset] [events]`
// (default: 2,000 one-event changesets). Profile either half with --cpu-prof; ONLY=push stops after the push.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEventLog } from '@weft/eventlog';
import { createMemoryKvServer, openMemoryKv } from '@weft/kv';
import { createIdentity, createLibrary, invitationOf, openSync } from '@weft/sync';

const perChangeset = Number(process.argv[2] ?? 1);
const count = Number(process.argv[3] ?? 2000);
const root = mkdtempSync(join(tmpdir(), 'weft-profile-sync-'));
const server = createMemoryKvServer();
const store = () => openMemoryKv({ server, bucket: 'sync' });
const founder = createIdentity();
const reader = createIdentity();
const library = await createLibrary({ kv: await store(), identity: founder, id: 'profile' });
const open = async (identity, dir) => {
  const log = await openEventLog({ dir: join(root, dir), encryption: {}, sync: 'none' });
  return {
    log,
    sync: await openSync({
      log,
      kv: await store(),
      identity,
      library,
      live: false,
      maxEventsPerChangeset: perChangeset,
      batchChangesets: Number(process.env.BATCH ?? 64),
    }),
  };
};
const writer = await open(founder, 'writer');
await writer.sync.addMember(invitationOf(reader));
for (let index = 0; index < count; index += 1000) {
  await writer.log.appendBatch(
    Array.from({ length: Math.min(1000, count - index) }, (_, offset) => ({
      entity: `notes.${(index + offset) % 50}`,
      kind: 0x1001,
      payload: new Uint8Array(200).fill(3),
    })),
  );
}
await writer.log.flush();
let started = performance.now();
await writer.sync.syncOnce();
console.log(`push: ${Math.round(count / ((performance.now() - started) / 1000))} events/s (${perChangeset} per changeset)`);
if (process.env.ONLY === 'push') process.exit(0);
const device = await open(reader, 'reader');
started = performance.now();
await device.sync.syncOnce();
console.log(`pull: ${Math.round(count / ((performance.now() - started) / 1000))} events/s (${perChangeset} per changeset)`);
for (const each of [writer, device]) {
  await each.sync.close();
  await each.log.close();
}
rmSync(root, { recursive: true, force: true });
