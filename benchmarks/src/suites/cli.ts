/**
 * How long a `weft` command takes to start and finish, against starting
 * Node.js itself (the floor): `--version` (no backend), a `kv get` on the
 * in-process memory store, and `log stats` on a small log. Each backend's
 * package loads only when a command opens a store of its scheme.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Bench } from '../harness.js';
import { stat } from '../harness.js';
import { benchDir } from './dirs.js';

const weft = fileURLToPath(new URL('../../../packages/cli/bin/weft.js', import.meta.url));

function timed(args: readonly string[]): number {
  const started = performance.now();
  try {
    execFileSync(process.execPath, args, { stdio: 'ignore' });
  } catch {
    // `kv get` of a missing key exits 1: the time to get there is what is measured.
  }
  return performance.now() - started;
}

export async function cliSuite(bench: Bench): Promise<void> {
  const dir = mkdtempSync(join(benchDir(), 'cli-'));
  try {
    execFileSync(process.execPath, [weft, 'log', 'append', '--dir', dir, '--entity', 'e', '--kind', '0x1001', 'hello'], {
      stdio: 'ignore',
    });
    const commands: Array<[string, string, string[]]> = [
      ['cli.version', 'weft --version', ['--version']],
      ['cli.kv-get', 'weft kv get on memory://', ['kv', 'get', 'missing', '--kv', 'memory://', '--bucket', 'b']],
      ['cli.log-stats', 'weft log stats on a one-event log', ['log', 'stats', '--dir', dir]],
    ];
    const runs = bench.size(15, 3);
    for (const [id, label, args] of commands) {
      const times: number[] = [];
      const floors: number[] = [];
      const ratios: number[] = [];
      for (let run = 0; run < runs; run++) {
        bench.progress.update(`${label}: ${run + 1}/${runs}`);
        const time = timed([weft, ...args]);
        const floor = timed(['-e', '']);
        times.push(time);
        floors.push(floor);
        ratios.push(time / floor);
      }
      bench.record({
        id,
        label: `${label}: start to exit`,
        unit: 'ms',
        higherIsBetter: false,
        weft: stat(times),
        baseline: { name: 'node -e "" (starting Node.js)', stat: stat(floors) },
        ratio: stat(ratios),
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
