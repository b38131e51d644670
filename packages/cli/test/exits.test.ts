/**
 * The `weft` command ends when its work ends, whatever the other side does:
 * a reader that closes the pipe early, a server that never answers, an
 * option the command cannot honour.
 */
import { spawn } from 'node:child_process';
import { openRedisKv } from '@weft/kv-redis';
import { natsUnavailable, redisUnavailable, runChild, startNatsServer, startRedisServer } from '@weft/test-servers';
import { describe, expect, it } from 'vitest';

const bin = new URL('../bin/weft.js', import.meta.url).pathname;

/** Waits for a child's exit; the test's own timeout fails a child that never exits. */
function exited(child: ReturnType<typeof spawn>): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('weft exits', () => {
  it('refuses --ttl on create (exit 2) instead of writing a value that never expires', async () => {
    const run = await runChild(process.execPath, [bin, 'kv', 'create', 'k', 'v', '--ttl', '1000', '--kv', 'memory://', '--bucket', 'b'], {
      limitMs: 60_000,
    });
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toContain("unknown option '--ttl'");
  });

  (redisUnavailable() === undefined ? it : it.skip)(
    'a watch whose reader closed the pipe ends quietly at its next event (no EPIPE stack), exit 0',
    async () => {
      const server = await startRedisServer();
      const store = await openRedisKv({ url: server.url, bucket: 'piped' });
      try {
        await store.put('a', new TextEncoder().encode('1'));
        const child = spawn(process.execPath, [bin, 'kv', 'watch', '--kv', server.url, '--bucket', 'piped'], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
        });
        const exit = exited(child);
        // `| head -1`: read the first line, then close the pipe.
        await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
        child.stdout.destroy();
        // The next event is written into the closed pipe; keep writing until the command has noticed.
        let stopped = false;
        void exit.then(() => {
          stopped = true;
        });
        for (let index = 0; !stopped; index++) {
          await store.put('a', new TextEncoder().encode(String(index)));
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        expect(await exit).toBe(0);
        expect(stderr).toBe('');
      } finally {
        await store.close();
        await server.stop();
      }
    },
    60_000,
  );

  (natsUnavailable() === undefined ? it : it.skip)(
    'a command against a NATS server that never answers (SIGSTOP) fails with ConnectionFailed and exits',
    async () => {
      const server = await startNatsServer();
      await server.pause();
      try {
        const child = spawn(process.execPath, [bin, 'kv', 'get', 'k', '--kv', server.url, '--bucket', 'b'], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
        });
        expect(await exited(child), stderr).toBe(1);
        expect(stderr).toContain('ConnectionFailed');
      } finally {
        server.resume();
        await server.stop();
      }
    },
    60_000,
  );
});
