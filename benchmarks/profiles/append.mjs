// Sequential appends with sync 'none': plaintext 256 B, or encrypted 1 KiB.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEventLog } from '@weft/eventlog';

const encrypted = process.argv[2] === 'encrypted';
const dir = mkdtempSync(join(tmpdir(), 'weft-profile-'));
const log = await openEventLog({ dir, sync: 'none', ...(encrypted ? { encryption: {} } : {}) });
const payload = randomBytes(encrypted ? 1024 : 256);
const count = 200_000;
const started = performance.now();
for (let index = 0; index < count; index++) await log.append({ entity: `e${index % 64}`, kind: 0x1001, payload });
console.log(`${encrypted ? 'encrypted 1 KiB' : '256 B'}: ${Math.round(count / ((performance.now() - started) / 1000))} appends/s`);
await log.close();
rmSync(dir, { recursive: true, force: true });
