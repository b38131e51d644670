/**
 * A real child process appends with sync 'always' and is killed with SIGKILL
 * at a random moment, three times over; after each kill the log reopens and
 * every append the child acknowledged is there.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEventLog } from '@weft/eventlog';
import { runChild } from '@weft/test-servers';
import { describe, expect, it } from 'vitest';

const child = new URL('./fixtures/append-child.mjs', import.meta.url).pathname;

/** Runs the child until it acknowledged at least `atLeast` appends (plus a random extra moment), then SIGKILLs it. */
async function runAndKill(dir: string, start: number, atLeast: number): Promise<number[]> {
  const acknowledged: number[] = [];
  let buffered = '';
  let killing = false;
  const run = await runChild('node', [child, dir, String(start)], {
    limitMs: 60_000,
    onStdout: (chunk, process) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line.startsWith('ack ')) acknowledged.push(Number(line.slice(4)));
      if (!killing && acknowledged.length >= atLeast) {
        killing = true;
        setTimeout(() => process.kill('SIGKILL'), Math.floor(Math.random() * 20));
      }
    },
  });
  if (run.timedOut) throw new Error(`the child acknowledged ${acknowledged.length} appends in 60 s and was killed: ${run.stderr}`);
  if (run.signal !== 'SIGKILL') throw new Error(`child exited with ${run.code}: ${run.stderr}`);
  return acknowledged;
}

describe('SIGKILL of a real appending process', () => {
  it('keeps every acknowledged append across three kills', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-sigkill-'));
    try {
      const acknowledged: number[] = [];
      let next = 0;
      for (let round = 0; round < 3; round++) {
        acknowledged.push(...(await runAndKill(dir, next, 150)));
        const log = await openEventLog({ dir });
        const present = new Map<number, number>();
        for await (const event of log.read()) present.set(Number(new TextDecoder().decode(event.payload).slice(2)), event.position);
        for (const n of acknowledged) expect(present.has(n), `acknowledged append ${n} is missing after kill ${round + 1}`).toBe(true);
        expect((await log.verify()).ok).toBe(true);
        next = log.head;
        expect(next).toBeGreaterThanOrEqual(acknowledged.length);
        await log.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
