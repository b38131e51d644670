/**
 * Every ```ts block of the READMEs and docs/ type-checks against the
 * packages as a user's project would see them (strict, NodeNext), and the
 * blocks that are whole programs on what this test can provide run: the
 * in-memory store, a log directory, and the Redis server this test spawns.
 *
 * A block that is a fragment says what it assumes in an HTML comment right
 * before it, invisible on a rendered page:
 * `<!-- ts-context: declare const log: import('@weft/eventlog').EventLog; -->`.
 * The context is compiled beside the block as global declarations.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { type RedisServer, redisUnavailable, runChild, startRedisServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { markdownFiles, root } from './markdown.js';

interface Block {
  readonly name: string;
  readonly code: string;
  readonly context: string | undefined;
}

const blocks: Block[] = markdownFiles().flatMap((path) => {
  const markdown = readFileSync(path, 'utf8');
  const found: Block[] = [];
  const pattern = /(?:<!-- ts-context: ([\s\S]*?) -->\n)?^```ts\n([\s\S]*?)^```$/gm;
  for (let match = pattern.exec(markdown), index = 1; match !== null; match = pattern.exec(markdown), index++) {
    found.push({ name: `${relative(root, path)} #${index}`, code: match[2] ?? '', context: match[1] });
  }
  return found;
});

/** Whole programs this test can run, and what they need. */
const runnable: Readonly<Record<string, 'memory' | 'disk' | 'redis'>> = {
  'packages/kv/README.md #1': 'memory',
  'packages/eventlog/README.md #1': 'disk',
  'docs/guides/eventlog-alone.md #1': 'disk',
  'packages/sync/README.md #1': 'redis',
  'docs/guides/migrating-from-ioredis.md #2': 'redis',
  'packages/kv-redis/README.md #2': 'redis',
};

const workDir = join(root, 'test', `.consumer-docs-${process.pid}`);
const redisMissing = redisUnavailable();
let redis: RedisServer | undefined;

beforeAll(async () => {
  mkdirSync(workDir, { recursive: true });
  if (redisMissing === undefined) redis = await startRedisServer();
});

afterAll(async () => {
  await redis?.stop();
  rmSync(workDir, { recursive: true, force: true });
});

/** Compiles a block (and its context) in a project of its own; returns the directory with index.js. */
function compile(block: Block): string {
  const dir = mkdtempSync(join(workDir, 'block-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  writeFileSync(
    join(dir, 'index.ts'),
    block.code.includes('import ') || block.code.includes('export ') ? block.code : `${block.code}\nexport {};\n`,
  );
  const files = ['index.ts'];
  if (block.context !== undefined) {
    writeFileSync(join(dir, 'context.d.ts'), `${block.context}\n`);
    files.push('context.d.ts');
  }
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        lib: ['ES2022', 'ESNext.Disposable'],
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        skipLibCheck: true,
        types: ['node'],
        typeRoots: [join(root, 'node_modules', '@types')],
      },
      files,
    }),
  );
  try {
    execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', dir], { encoding: 'utf8', stdio: 'pipe' });
  } catch (error) {
    const output = error as { stdout?: string; stderr?: string };
    throw new Error(`${block.name} does not type-check:\n${output.stdout ?? ''}${output.stderr ?? ''}\n--- the block ---\n${block.code}`);
  }
  return dir;
}

describe('TypeScript in the documentation', () => {
  it('finds the blocks, and every runnable one it names exists', () => {
    expect(blocks.length).toBeGreaterThan(10);
    const names = new Set(blocks.map((block) => block.name));
    for (const name of Object.keys(runnable)) expect(names.has(name), name).toBe(true);
  });

  for (const block of blocks) {
    const needs = runnable[block.name];
    it(`${block.name} type-checks${needs === undefined ? '' : ' and runs'}`, async () => {
      const dir = compile(block);
      if (needs === undefined) return;
      if (needs === 'redis' && redis === undefined) return console.warn(`not run: ${block.name} needs Redis (${redisMissing})`);
      const run = await runChild(process.execPath, [join(dir, 'index.js')], {
        limitMs: 60_000,
        cwd: dir,
        env: redis === undefined ? {} : { REDIS_URL: redis.url },
      });
      expect(run.code, `${block.name}:\n${run.stdout}${run.stderr}`).toBe(0);
    }, 90_000);
  }
});
