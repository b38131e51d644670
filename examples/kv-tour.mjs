// A tour of the @weft/kv contract on the embedded in-memory backend:
// compare-and-swap writes, a state-sync watch that resumes from a cursor, TTL and purge.
// Run with `npm run build && node examples/kv-tour.mjs` from the repository root.
import { createMemoryKvServer, KvError, openMemoryKv } from '@weft/kv';

const encode = (text) => new TextEncoder().encode(text);
const decode = (bytes) => new TextDecoder().decode(bytes);
const step = (title) => console.log(`\n== ${title}`);

// Two handles on one in-memory server behave like two clients of one bucket.
const server = createMemoryKvServer();
const alice = await openMemoryKv({ server, bucket: 'tour' });
const bob = await openMemoryKv({ server, bucket: 'tour' });

step('compare-and-swap');
const created = await alice.create('profiles.ada', encode('{"name":"Ada"}'));
console.log(`alice created profiles.ada at version ${created}`);
const updated = await bob.update('profiles.ada', encode('{"name":"Ada Lovelace"}'), created);
console.log(`bob updated it from ${created} to ${updated}`);
try {
  await alice.update('profiles.ada', encode('{"name":"lost update"}'), created);
} catch (error) {
  if (!KvError.is(error, 'RevisionMismatch')) throw error;
  console.log(`alice's stale update was refused: ${error.code}`);
}

step('state-sync watch: current state, then "synced", then live changes');
await alice.put('profiles.grace', encode('{"name":"Grace"}'));
const seen = [];
let resumeFrom;
for await (const event of bob.watch({ prefixes: ['profiles'] })) {
  seen.push(event);
  console.log(`  ${event.type.padEnd(6)} ${event.key ?? ''} @ cursor ${event.cursor}`);
  if (event.type === 'synced') {
    resumeFrom = event.cursor;
    await alice.delete('profiles.grace');
  }
  if (event.type === 'delete') break;
}

step('resume from a persisted cursor: only what changed since');
await alice.put('profiles.linus', encode('{"name":"Linus"}'));
await alice.put('settings.theme', encode('dark'));
for await (const event of bob.watch({ prefixes: ['profiles'], from: resumeFrom })) {
  console.log(`  ${event.type.padEnd(6)} ${event.key ?? ''} @ cursor ${event.cursor}`);
  if (event.type === 'synced') break;
}

step('TTL and purge');
await alice.putWithTtl('sessions.s1', encode('token'), 50);
console.log(`sessions.s1 right after putWithTtl: ${decode((await bob.get('sessions.s1'))?.value ?? encode('(absent)'))}`);
await new Promise((resolve) => setTimeout(resolve, 80));
console.log(`sessions.s1 after its TTL:          ${(await bob.get('sessions.s1')) === undefined ? '(absent)' : 'still there!'}`);
await alice.purge('profiles.ada');
console.log(`profiles.ada after purge: entry op = ${(await bob.entry('profiles.ada'))?.op}`);

const keys = [];
for await (const key of bob.keys()) keys.push(key);
console.log(`\nlive keys: ${keys.join(', ')}`);
console.log(seen.length > 0 && keys.includes('profiles.linus') ? 'tour complete' : 'tour FAILED');
await alice.close();
await bob.close();
