import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests run against each workspace package's TypeScript source, so one module
// instance is shared by a package's own tests and every package importing it.
const packagesDir = fileURLToPath(new URL('./packages/', import.meta.url));
const alias = readdirSync(packagesDir).flatMap((dir) => {
  const manifest = JSON.parse(readFileSync(`${packagesDir}${dir}/package.json`, 'utf8')) as { name: string };
  return [{ find: new RegExp(`^${manifest.name}$`), replacement: `${packagesDir}${dir}/src/index.ts` }];
});

const long = process.env.WEFT_LONG === '1';
// `.ci/run` names a file that lists the tests running at each moment, to say which one hung.
const reporters = process.env.WEFT_RUNNING_TESTS_FILE === undefined ? ['default'] : ['default', './test/running-tests-reporter.ts'];

export default defineConfig({
  resolve: { alias },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts', 'benchmarks/test/**/*.test.ts'],
    testTimeout: long ? 600_000 : 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    pool: 'forks',
    reporters,
  },
});
