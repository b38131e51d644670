import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests run against each workspace package's TypeScript source, so one module
// instance is shared by a package's own tests and every package importing it.
const packagesDir = fileURLToPath(new URL('./packages/', import.meta.url));
// Subpath entry points (`@weft/kv/backend`) map to their source the same way, from the exports map.
const alias = readdirSync(packagesDir).flatMap((dir) => {
  const manifest = JSON.parse(readFileSync(`${packagesDir}${dir}/package.json`, 'utf8')) as {
    name: string;
    exports?: Record<string, { types?: string } | string>;
  };
  const subpaths = Object.entries(manifest.exports ?? {}).flatMap(([subpath, target]) => {
    const types = typeof target === 'string' ? undefined : target.types;
    if (subpath === '.' || types === undefined) return [];
    const source = types.replace(/^\.\/dist\//, 'src/').replace(/\.d\.ts$/, '.ts');
    return [{ find: new RegExp(`^${manifest.name}/${subpath.slice(2)}$`), replacement: `${packagesDir}${dir}/${source}` }];
  });
  return [{ find: new RegExp(`^${manifest.name}$`), replacement: `${packagesDir}${dir}/src/index.ts` }, ...subpaths];
});

// A package's `#platform` import (package.json "imports") resolves to its Node.js source, as the package names resolve above.
const platformSource = {
  name: 'weft-platform-source',
  enforce: 'pre' as const,
  resolveId(source: string, importer: string | undefined) {
    if (!source.startsWith('#') || importer === undefined || !importer.startsWith(packagesDir)) return null;
    const dir = importer.slice(packagesDir.length).split('/')[0];
    const manifest = JSON.parse(readFileSync(`${packagesDir}${dir}/package.json`, 'utf8')) as {
      imports?: Record<string, { default?: string }>;
    };
    const target = manifest.imports?.[source]?.default;
    if (target === undefined) return null;
    return `${packagesDir}${dir}/${target.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts')}`;
  },
};

const long = process.env.WEFT_LONG === '1';
// `.ci/run` names a file that lists the tests running at each moment, to say which one hung.
const reporters = process.env.WEFT_RUNNING_TESTS_FILE === undefined ? ['default'] : ['default', './test/running-tests-reporter.ts'];

export default defineConfig({
  plugins: [platformSource],
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
