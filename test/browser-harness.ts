/**
 * Headless Chromium for the browser tests: the system's `chromium` (Debian's
 * package; `.ci/run` installs it), driven by puppeteer-core, which downloads
 * nothing; pages served from loopback (a secure context, as OPFS needs);
 * bundles built for the browser with esbuild.
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { build } from 'esbuild';
import puppeteer, { type Browser } from 'puppeteer-core';

export const chromiumPath = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((path) => existsSync(path));

/** Why the browser tests cannot run here, or undefined. */
export const browserMissing =
  chromiumPath === undefined
    ? 'no Chromium at /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it)'
    : typeof WebSocket === 'undefined'
      ? 'this Node.js has no WebSocket (22 or later has)'
      : undefined;

export function launchChromium(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: chromiumPath as string,
    headless: true,
    // The sandbox needs a user namespace, which a root CI container lacks.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}

/** Bundles `entry` (TypeScript or JavaScript) for the browser as one ES module. */
export async function bundleForBrowser(entry: string): Promise<Uint8Array> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
  });
  return result.outputFiles[0]?.contents as Uint8Array;
}

/** Serves `files` (path -> contents) on a free loopback port. */
export async function serveFiles(files: ReadonlyMap<string, Uint8Array | string>): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const file = files.get(path);
    if (file === undefined) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, {
      'content-type': path.endsWith('.js') ? 'text/javascript' : 'text/html; charset=utf-8',
      'cache-control': 'no-store',
    });
    response.end(file);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Polls `probe` until `done` holds of its value (at most `timeoutMs`); returns that value. */
export async function until<T>(what: string, probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
