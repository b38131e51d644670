// Group commit with 64 appenders that each await their own durability: how many appends each fsync carries,
// and how a cycle (appends, write, fsync) splits between the fsync and everything else.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'weft-profile-'));
const probe = await open(join(dir, 'probe'), 'w');
const FileHandle = Object.getPrototypeOf(probe);
await probe.close();
let fsyncs = 0;
let fsyncMs = 0;
const sync = FileHandle.sync;
FileHandle.sync = async function (...args) {
  const started = performance.now();
  try {
    return await sync.apply(this, args);
  } finally {
    fsyncs++;
    fsyncMs += performance.now() - started;
  }
};
const { openEventLog } = await import('@weft/eventlog');
const log = await openEventLog({ dir: join(dir, 'log'), sync: 'group' });
const payload = randomBytes(256);
const appenders = 64;
const each = 300;
fsyncs = 0;
fsyncMs = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: appenders }, async (_, appender) => {
    for (let index = 0; index < each; index++) await (await log.append({ entity: `e${appender}`, kind: 0x1001, payload })).durable;
  }),
);
const elapsed = performance.now() - started;
const appends = appenders * each;
console.log(
  `${Math.round(appends / (elapsed / 1000))} durable appends/s; ${(appends / fsyncs).toFixed(1)} appends per fsync; ` +
    `a cycle ${Math.round((elapsed / fsyncs) * 1000)} µs, of which fsync ${Math.round((fsyncMs / fsyncs) * 1000)} µs`,
);
await log.close();
rmSync(dir, { recursive: true, force: true });
