/**
 * Every command in the documentation runs as written. Each Markdown file's
 * ```sh blocks run in order in one bash (`set -euo pipefail`) from the
 * repository root, with `$NATS_URL` and `$REDIS_URL` pointing at servers this
 * test spawns. Blocks fenced otherwise (```text, ```ts, ```conf) are output,
 * code or configuration and are not run.
 *
 * Three kinds of command are checked instead of run, because running them
 * here would run the test suite inside itself or change the repository:
 * the quick start's `npm ci`, `npm run demo` and `npm test` (CI runs them
 * from `.ci/run`, which this test checks); `npx vitest run PATH` lines (parts
 * of `npm test`: the paths must exist); and `npm install @weft/...` lines a
 * consumer runs in their own project (the packaging test installs every
 * package's tarball into a consumer; the names must be packages here).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import {
  type NatsServer,
  natsUnavailable,
  type RedisServer,
  redisUnavailable,
  startNatsServer,
  startRedisServer,
} from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { markdownFiles, root } from './markdown.js';

/** Commands that CI runs directly from `.ci/run`; a block made only of these is checked against it, not run. */
const ciCommands = ['npm ci', 'npm run demo', 'npm test'];

function shellBlocks(markdown: string): string[] {
  const blocks: string[] = [];
  const pattern = /^```sh\n([\s\S]*?)^```$/gm;
  for (let match = pattern.exec(markdown); match !== null; match = pattern.exec(markdown)) blocks.push(match[1] ?? '');
  return blocks;
}

/** The commands of a block without comments, split on `&&`. */
function commandsOf(block: string): string[] {
  return block
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .flatMap((line) => line.split('&&').map((part) => part.trim()));
}

const packageNames = new Set(
  readdirSync(join(root, 'packages')).map(
    (dir) => (JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')) as { name: string }).name,
  ),
);
const vitestRun = /^(?:[A-Z_]+=\S+ )*npx vitest run (.+)$/;
const consumerInstall = /^npm install (?:--save-dev )?(.+)$/;

/** Why a command is checked rather than run, or undefined when it must run. */
function coveredElsewhere(command: string): string | undefined {
  if (ciCommands.includes(command)) return 'ci';
  const tests = vitestRun.exec(command);
  if (tests) {
    for (const path of (tests[1] ?? '').split(/\s+/))
      expect(statSync(join(root, path), { throwIfNoEntry: false }), `${command}: ${path}`).toBeDefined();
    return 'part of npm test';
  }
  const install = consumerInstall.exec(command);
  if (install) {
    for (const name of (install[1] ?? '').split(/\s+/)) {
      if (name.startsWith('@weft/')) expect(packageNames.has(name), `${command}: ${name} is a package here`).toBe(true);
    }
    return 'a consumer install';
  }
  return undefined;
}

const documents = markdownFiles().map((path) => ({ path, name: relative(root, path), blocks: shellBlocks(readFileSync(path, 'utf8')) }));

describe('the documentation', () => {
  let nats: NatsServer | undefined;
  let redis: RedisServer | undefined;
  const missing = natsUnavailable() ?? redisUnavailable();

  beforeAll(async () => {
    if (missing !== undefined) return;
    [nats, redis] = await Promise.all([startNatsServer(), startRedisServer()]);
  });
  afterAll(async () => {
    await Promise.all([nats?.stop(), redis?.stop()]);
  });

  it('has runnable commands to check', () => {
    expect(documents.filter(({ blocks }) => blocks.length > 0).length).toBeGreaterThan(3);
  });

  it("the quick start's repository commands are exactly what CI runs", () => {
    const ci = readFileSync(join(root, '.ci', 'run'), 'utf8');
    const readme = documents.find(({ name }) => name === 'README.md');
    const quickStart = readme?.blocks[0] ?? '';
    expect(commandsOf(quickStart)).toEqual(ciCommands);
    for (const command of ciCommands) expect(ci, `.ci/run runs ${command}`).toContain(command);
  });

  for (const { name, blocks } of documents) {
    const runnable = blocks.filter((block) => !commandsOf(block).every((command) => coveredElsewhere(command) !== undefined));
    if (runnable.length === 0) continue;
    const needsServers = runnable.some((block) => /\$(NATS|REDIS)_URL/.test(block));
    it.skipIf(needsServers && missing !== undefined)(`every command in ${name} runs as written`, () => {
      const script = ['set -euo pipefail', ...runnable.map((block, index) => `echo "--- block ${index + 1}"\n${block}`)].join('\n');
      const result = spawnSync('bash', ['-c', script], {
        cwd: root,
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, NATS_URL: nats?.url ?? '', REDIS_URL: redis?.url ?? '', CI: 'true' },
      });
      const output = `${result.stdout}\n${result.stderr}`;
      expect(result.status, `${name}: a command failed; output:\n${output.slice(-4000)}`).toBe(0);
    });
  }
  if (missing !== undefined) console.warn(`[docs] commands that need servers are skipped: ${missing}`);
});
