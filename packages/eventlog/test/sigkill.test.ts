/**
 * A real child process appends with sync 'always' and is killed with SIGKILL
 * at a random moment, three times over; after each kill the log reopens and
 * every append the child acknowledged is there.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEventLog } from '@weft/eventlog';
import { describe, expect, it } from 'vitest';

const child = new URL('./fixtures/append-child.mjs', import.meta.url).pathname;

/** Runs the child until it acknowledged at least `atLeast` appends (plus a random extra moment), then SIGKILLs it. */
function runAndKill(dir: string, start: number, atLeast: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const process = spawn('node', [child, dir, String(start)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acknowledged: number[] = [];
    let buffered = '';
    let stderr = '';
    let killing = false;
    process.stdout.setEncoding('utf8');
    process.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) if (line.startsWith('ack ')) acknowledged.push(Number(line.slice(4)));
      if (!killing && acknowledged.length >= atLeast) {
        killing = true;
        setTimeout(() => process.kill('SIGKILL'), Math.floor(Math.random() * 20));
      }
    });
    process.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    process.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve(acknowledged);
      else reject(new Error(`child exited with ${code}: ${stderr}`));
    });
  });
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
