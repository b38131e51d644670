// Reads back a log of 300,000 events of 256 B (written on the first run, kept for the next).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEventLog } from '@weft/eventlog';

const dir = join(tmpdir(), 'weft-profile-replay');
if (!existsSync(dir)) {
  mkdirSync(dir);
  const log = await openEventLog({ dir, sync: 'none' });
  const payload = randomBytes(256);
  for (let index = 0; index < 300_000; index += 1000) {
    await log.appendBatch(Array.from({ length: 1000 }, (_, offset) => ({ entity: `e${(index + offset) % 64}`, kind: 0x1001, payload })));
  }
  await log.close();
  console.log(`wrote ${dir}; run again to profile the replay`);
} else {
  const log = await openEventLog({ dir, sync: 'none', readOnly: true });
  for (let round = 0; round < 2; round++) {
    const started = performance.now();
    let count = 0;
    for await (const _event of log.read()) count++;
    console.log(`replay: ${Math.round(count / ((performance.now() - started) / 1000))} events/s`);
  }
  await log.close();
}
