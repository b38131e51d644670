/**
 * The packages a browser runs bundle for the browser: esbuild, resolving with
 * the `browser` condition as a web bundler does, finds every import (none of
 * `node:`), and each package's `#platform` import resolves to its browser
 * side; bundled for Node, the same entry points take the Node side. The
 * bundles' code is run in headless Chromium by test/browser.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;

/** The entry points meant for a browser: the cores and the NATS backend (over WebSocket). */
const entries = [
  { name: '@weft/common', file: 'packages/common/dist/index.js' },
  { name: '@weft/kv', file: 'packages/kv/dist/index.js' },
  { name: '@weft/kv/backend', file: 'packages/kv/dist/backend/index.js' },
  { name: '@weft/eventlog', file: 'packages/eventlog/dist/index.js' },
  { name: '@weft/sync', file: 'packages/sync/dist/index.js' },
  { name: '@weft/kv-nats', file: 'packages/kv-nats/dist/index.js' },
];

async function bundle(file: string, platform: 'browser' | 'node') {
  const result = await build({
    entryPoints: [join(root, file)],
    absWorkingDir: root,
    bundle: true,
    platform,
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'silent',
    outdir: 'out',
  });
  return { inputs: Object.keys(result.metafile.inputs), code: result.outputFiles.map((output) => output.text).join('\n') };
}

describe('browser bundles', () => {
  for (const entry of entries) {
    it(`${entry.name} bundles for the browser with every import resolved, none from node:, and its browser side of #platform`, async () => {
      // esbuild fails the build, naming the import, when one does not resolve (a `node:` module among them on this platform).
      const { inputs, code } = await bundle(entry.file, 'browser');
      const platformFiles = inputs.filter((input) => /\/dist\/platform\//.test(input));
      expect(platformFiles.filter((input) => input.endsWith('/platform/browser.js')).length).toBeGreaterThan(0);
      expect(platformFiles.filter((input) => input.endsWith('/platform/node.js'))).toEqual([]);
      expect(code.match(/\bfrom\s*["']node:[^"']+["']|import\(\s*["']node:[^"']+["']\)|require\(\s*["']node:[^"']+["']\)/g) ?? []).toEqual(
        [],
      );
      expect(inputs.some((input) => input.includes('@nats-io/transport-node'))).toBe(false);
    });
  }

  it('the same entry points bundled for Node.js take the Node side of #platform', async () => {
    for (const entry of entries) {
      const { inputs } = await bundle(entry.file, 'node');
      const platformFiles = inputs.filter((input) => /\/dist\/platform\//.test(input));
      expect(platformFiles.filter((input) => input.endsWith('/platform/node.js')).length, entry.name).toBeGreaterThan(0);
      expect(
        platformFiles.filter((input) => input.endsWith('/platform/browser.js')),
        entry.name,
      ).toEqual([]);
    }
  });

  it('each package that has a #platform import gives both sides the same exports', async () => {
    for (const pkg of ['common', 'eventlog', 'sync', 'kv-nats']) {
      const manifest = JSON.parse(readFileSync(join(root, 'packages', pkg, 'package.json'), 'utf8')) as {
        imports: Record<string, { browser: string; default: string }>;
      };
      const target = manifest.imports['#platform'];
      expect(target, pkg).toBeDefined();
      const browser = await import(join(root, 'packages', pkg, target?.browser as string));
      const node = await import(join(root, 'packages', pkg, target?.default as string));
      expect(Object.keys(browser).sort(), pkg).toEqual(Object.keys(node).sort());
    }
  });
});
