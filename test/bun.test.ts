/**
 * weft on Bun (scripts/install-bun.sh puts it in .cache/bun): the tracing
 * channels publish there too (Bun's channels leave `hasSubscribers`
 * undefined, so weft traces every call), and a KV and event log program runs.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runChild } from '@weft/test-servers';
import { describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const bun = join(root, '.cache', 'bun', 'node_modules', '.bin', 'bun');
const missing = existsSync(bun) ? undefined : 'Bun is not installed: bash scripts/install-bun.sh';
if (missing !== undefined) console.warn(`SKIPPING the Bun tests: ${missing}`);

describe.skipIf(missing !== undefined)('on Bun', () => {
  it('KV operations and log appends publish on their tracing channels, and the program exits by itself', async () => {
    const dir = mkdtempSync(join(root, 'test', '.bun-'));
    try {
      const program = join(dir, 'program.mjs');
      writeFileSync(
        program,
        `import { MemoryFileSystem, logAppendChannel, openEventLog } from '@weft/eventlog';
import { openMemoryKv, subscribeTrace } from '@weft/kv';
import { kvOperationChannel } from '@weft/kv/backend';
const seen = [];
const stops = [
  subscribeTrace(kvOperationChannel, { asyncEnd: (context) => seen.push('kv ' + context.operation) }),
  subscribeTrace(logAppendChannel, { asyncEnd: (context) => seen.push('log append ' + context.events) }),
];
const kv = await openMemoryKv();
await kv.put('a', new Uint8Array([1]));
await kv.get('a');
await kv.close();
const log = await openEventLog({ dir: '/log', fs: new MemoryFileSystem() });
await log.append({ entity: 'e', kind: 0x1001, payload: new Uint8Array([1]) });
await log.close();
for (const stop of stops) stop();
console.log(seen.join(', '));
`,
      );
      const run = await runChild(bun, [program], { limitMs: 60_000, cwd: root });
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout.trim()).toBe('kv put, kv get, log append 1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
