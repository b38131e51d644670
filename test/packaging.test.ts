/**
 * Every public package must be publishable on its own: `npm pack` must ship
 * its entry points, publint must find nothing wrong, and a consumer must be
 * able to import it and resolve its types with NodeNext resolution.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const packagesDir = join(root, 'packages');

interface Manifest {
  name: string;
  private?: boolean;
  exports: Record<string, string | { types: string; default: string }>;
  files?: string[];
}

const publicPackages = readdirSync(packagesDir)
  .map((dir) => ({
    dir: join(packagesDir, dir),
    manifest: JSON.parse(readFileSync(join(packagesDir, dir, 'package.json'), 'utf8')) as Manifest,
  }))
  .filter(({ manifest }) => manifest.private !== true);

describe.each(publicPackages)('package $manifest.name', ({ dir, manifest }) => {
  it('declares what it needs at run time as ranges, so a user install shares one copy', () => {
    const declared = manifest as Manifest & { dependencies?: Record<string, string>; peerDependencies?: Record<string, string> };
    const exact = Object.entries({ ...declared.dependencies, ...declared.peerDependencies }).filter(
      ([, range]) => /^\d/.test(range) || range.startsWith('='),
    );
    expect(exact).toEqual([]);
  });

  it('passes publint with nothing to report', async () => {
    const { messages, pkg } = await publint({ pkgDir: dir, pack: 'npm', level: 'suggestion' });
    expect(messages.map((message) => formatMessage(message, pkg, { color: false }))).toEqual([]);
  });

  it('ships every entry point and type declaration in its npm tarball', () => {
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' }),
    ) as Array<{
      files: Array<{ path: string }>;
    }>;
    const files = new Set(packed[0]?.files.map((file) => file.path));
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      const targets = typeof target === 'string' ? [target] : [target.types, target.default];
      for (const file of targets) expect(files.has(file.replace(/^\.\//, '')), `${subpath} -> ${file}`).toBe(true);
    }
    expect([...files].some((file) => file.startsWith('src/') || file.startsWith('test/'))).toBe(false);
  });

  it('reads well on the registry: no links off the package, sourcemaps that carry their sources, no internal declarations', () => {
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' }),
    ) as Array<{ files: Array<{ path: string }> }>;
    const files = packed[0]?.files.map((file) => file.path) ?? [];
    // The README is the package's page: a relative link must point at a file the tarball ships.
    const readme = readFileSync(join(dir, 'README.md'), 'utf8');
    const relative = [...readme.matchAll(/\]\(([^)#\s]+)[^)]*\)/g)]
      .map((match) => match[1] as string)
      .filter((target) => !/^[a-z]+:/.test(target));
    expect(relative.filter((target) => !files.includes(target.replace(/^\.\//, '')))).toEqual([]);
    expect(readme).not.toMatch(/\btest\/[\w.-]+\.test\.ts/);
    // A sourcemap names sources the tarball does not ship, so it must carry their text.
    for (const file of files.filter((name) => name.endsWith('.js.map'))) {
      const map = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { sources: string[]; sourcesContent?: Array<string | null> };
      expect(map.sourcesContent?.length, file).toBe(map.sources.length);
      expect(
        map.sourcesContent?.every((text) => typeof text === 'string' && text.length > 0),
        file,
      ).toBe(true);
    }
    expect(files.filter((name) => name.endsWith('.d.ts.map'))).toEqual([]);
    const internal = files.filter((name) => name.endsWith('.d.ts') && readFileSync(join(dir, name), 'utf8').includes('@internal'));
    expect(internal).toEqual([]);
  });

  it('imports at run time and resolves its types from a consumer', async () => {
    const entry = manifest.exports['.'];
    const runtime = typeof entry === 'string' ? entry : entry?.default;
    const module = (await import(pathToFileURL(join(dir, runtime ?? '')).href)) as Record<string, unknown>;
    expect(Object.keys(module).length).toBeGreaterThan(0);

    const consumer = mkdtempSync(join(root, 'test', '.consumer-'));
    try {
      const names = Object.keys(module).slice(0, 5);
      writeFileSync(
        join(consumer, 'index.ts'),
        `import { ${names.join(', ')} } from '${manifest.name}';\nexport const used = [${names.join(', ')}];\n`,
      );
      writeFileSync(
        join(consumer, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            strict: true,
            noEmit: true,
            types: ['node'],
            skipLibCheck: false,
          },
          files: ['index.ts'],
        }),
      );
      writeFileSync(join(consumer, 'package.json'), JSON.stringify({ type: 'module' }));
      execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', consumer], { encoding: 'utf8', stdio: 'pipe' });
    } finally {
      rmSync(consumer, { recursive: true, force: true });
    }
  });
});
