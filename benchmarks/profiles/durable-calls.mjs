// Times each write and fsync of the file handles during 1,000 durable appends, then of a raw write + fsync loop.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'weft-profile-'));
const probe = await open(join(dir, 'probe'), 'w');
const FileHandle = Object.getPrototypeOf(probe);
await probe.close();
let timings = new Map();
for (const method of ['write', 'sync']) {
  const original = FileHandle[method];
  FileHandle[method] = async function (...args) {
    const started = performance.now();
    try {
      return await original.apply(this, args);
    } finally {
      // The log's checkpoint lives at offset 24 of the segment header.
      const label = method === 'write' && args.at(-1) === 24 ? 'checkpoint write' : method;
      const entry = timings.get(label) ?? { calls: 0, ms: 0 };
      entry.calls++;
      entry.ms += performance.now() - started;
      timings.set(label, entry);
    }
  };
}
const report = (title, started, count) => {
  const perCall = [...timings].map(([label, { calls, ms }]) => `${label} ${Math.round((ms / calls) * 1000)} µs × ${calls}`).join(', ');
  console.log(`${title}: ${Math.round(((performance.now() - started) / count) * 1000)} µs per operation (${perCall})`);
  timings = new Map();
};
const { openEventLog } = await import('@weft/eventlog');
const payload = randomBytes(256);
const log = await openEventLog({ dir: join(dir, 'log'), sync: 'always' });
timings = new Map();
let started = performance.now();
for (let index = 0; index < 1000; index++) await (await log.append({ entity: 'e', kind: 0x1001, payload })).durable;
report("weft append, sync 'always'", started, 1000);
await log.close();
const raw = await open(join(dir, 'raw'), 'w');
timings = new Map();
started = performance.now();
for (let index = 0; index < 1000; index++) {
  await raw.write(payload, 0, payload.length, index * payload.length);
  await raw.sync();
}
report('raw write + fsync', started, 1000);
await raw.close();
rmSync(dir, { recursive: true, force: true });
