/** The documentation the doc tests read: the README, everything under docs/ (but the generated API reference) and each package's README. */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const root = new URL('..', import.meta.url).pathname;

export function markdownFiles(): string[] {
  const files = [join(root, 'README.md')];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (path === join(root, 'docs', 'api')) continue;
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.md')) files.push(path);
    }
  };
  walk(join(root, 'docs'));
  for (const dir of readdirSync(join(root, 'packages')).sort()) {
    const readme = join(root, 'packages', dir, 'README.md');
    if (statSync(readme, { throwIfNoEntry: false }) !== undefined) files.push(readme);
  }
  return files;
}
