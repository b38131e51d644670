// Heap kept after a device pulls N events (256 per changeset) through the in-memory KV backend, next to what a log of the same events keeps by itself: `node --expose-gc sync-heap.mjs [events]`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEventLog } from '@weft/eventlog';
import { createMemoryKvServer, openMemoryKv } from '@weft/kv';
import { createIdentity, createLibrary, invitationOf, openSync } from '@weft/sync';

const count = Number(process.argv[2] ?? 200000);
const root = mkdtempSync(join(tmpdir(), 'weft-heap-'));
const server = createMemoryKvServer();
const store = () => openMemoryKv({ server, bucket: 'sync' });
const founder = createIdentity();
const reader = createIdentity();
const library = await createLibrary({ kv: await store(), identity: founder, id: 'heap' });
const open = async (identity, dir) => {
  const log = await openEventLog({ dir: join(root, dir), encryption: {}, sync: 'none' });
  return { log, sync: await openSync({ log, kv: await store(), identity, library, live: false, maxEventsPerChangeset: 256 }) };
};
const writer = await open(founder, 'writer');
await writer.sync.addMember(invitationOf(reader));
for (let index = 0; index < count; index += 1000)
  await writer.log.appendBatch(
    Array.from({ length: 1000 }, (_, o) => ({ entity: `notes.${(index + o) % 50}`, kind: 0x1001, payload: new Uint8Array(200).fill(3) })),
  );
await writer.log.flush();
await writer.sync.syncOnce();
const device = await open(reader, 'reader');
globalThis.gc();
const before = process.memoryUsage().heapUsed;
await device.sync.syncOnce();
globalThis.gc();
const after = process.memoryUsage().heapUsed;
console.log(`retained after pulling ${count}: ${((after - before) / count).toFixed(0)} B/event`);
// the writer log's own index for comparison: a fresh log of the same events
const plain = await openEventLog({ dir: join(root, 'plain'), encryption: {}, sync: 'none' });
globalThis.gc();
const b2 = process.memoryUsage().heapUsed;
for (let index = 0; index < count; index += 256)
  await plain.appendBatch(
    Array.from({ length: 256 }, (_, o) => ({ entity: `notes.${(index + o) % 50}`, kind: 0x1001, payload: new Uint8Array(200).fill(3) })),
  );
await plain.flush();
globalThis.gc();
const a2 = process.memoryUsage().heapUsed;
console.log(`a log appending the same events untagged retains ${((a2 - b2) / count).toFixed(0)} B/event`);
rmSync(root, { recursive: true, force: true });
process.exit(0);
