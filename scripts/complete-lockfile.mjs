// Adds lockfile entries for platform-specific optional packages that the
// registry mirror used here does not serve (e.g. the macOS and Windows
// binaries of turbo and Biome). Without them `npm ci` refuses the lockfile as
// out of sync. The entries carry `os`/`cpu`, so npm skips them on other
// platforms and fetches them from the registry on the platform they are for.
// Run after `npm install` changes package-lock.json: `node scripts/complete-lockfile.mjs`.
import { readFileSync, writeFileSync } from 'node:fs';

const lockPath = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(lockPath, 'utf8'));

const osNames = { darwin: 'darwin', linux: 'linux', win32: 'win32', windows: 'win32', android: 'android', freebsd: 'freebsd' };
const cpuNames = { x64: 'x64', 64: 'x64', arm64: 'arm64', arm: 'arm' };

function platformOf(name) {
  const parts = name.split('/').pop().split('-');
  const os = parts.map((part) => osNames[part]).find(Boolean);
  const cpu = parts.map((part) => cpuNames[part]).find(Boolean);
  const libc = parts.includes('musl') ? ['musl'] : undefined;
  return os && cpu ? { os: [os], cpu: [cpu], ...(libc ? { libc } : {}) } : undefined;
}

let added = 0;
for (const [path, entry] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const target = `node_modules/${name}`;
    if (lock.packages[target] !== undefined) continue;
    const platform = platformOf(name);
    if (platform === undefined) throw new Error(`cannot tell the platform of optional dependency ${name} (of ${path || 'the root'})`);
    lock.packages[target] = { version, ...(entry.dev ? { dev: true } : {}), optional: true, ...platform };
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)));
writeFileSync(lockPath, `${JSON.stringify(lock, null, 2)}\n`);
console.log(added === 0 ? 'package-lock.json already complete' : `added ${added} platform entries to package-lock.json`);
