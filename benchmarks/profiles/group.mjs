// Group commit with 64 appenders that each await their own durability: how many appends each fsync carries,
// and how a cycle (appends, write, fsync) splits: the fsync, the appends' work before the write, and the rest.
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
// From an fsync's end to the next write of frames: the appends' own work (every appender is waiting on the fsync).
let lastFsyncEnd = 0;
let gaps = 0;
let gapMs = 0;
const sync = FileHandle.sync;
FileHandle.sync = async function (...args) {
  const started = performance.now();
  try {
    return await sync.apply(this, args);
  } finally {
    fsyncs++;
    lastFsyncEnd = performance.now();
    fsyncMs += lastFsyncEnd - started;
  }
};
const write = FileHandle.write;
FileHandle.write = function (...args) {
  // Frames, not the 8-byte checkpoint written after an fsync.
  if (args[0].length > 8 && lastFsyncEnd > 0) {
    gaps++;
    gapMs += performance.now() - lastFsyncEnd;
    lastFsyncEnd = 0;
  }
  return write.apply(this, args);
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
    `a cycle ${Math.round((elapsed / fsyncs) * 1000)} µs, of which fsync ${Math.round((fsyncMs / fsyncs) * 1000)} µs ` +
    `and from an fsync's end to the next write ${Math.round((gapMs / gaps) * 1000)} µs`,
);
await log.close();
rmSync(dir, { recursive: true, force: true });
