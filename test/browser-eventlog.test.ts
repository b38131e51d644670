/**
 * `@weft/eventlog` in headless Chromium, in a dedicated worker on the Origin
 * Private File System (test/browser/checks.ts): the filesystem seam's
 * contract on OPFS; appends reported durable survive the worker being
 * terminated in the middle of appending (the browser's crash), with the log
 * recovered and verified after each; and the decoder properties, run there
 * by fast-check with a printed seed.
 */

import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserMissing, bundleForBrowser, launchChromium, serveFiles, until } from './browser-harness.js';

if (browserMissing !== undefined) console.warn(`SKIPPING the event log in the browser: ${browserMissing}`);

const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
const runs = Number(process.env.WEFT_PROPERTY_RUNS ?? 500);
const rounds = process.env.WEFT_LONG === '1' ? 20 : 4;

/** The page: workers by name, calls into them, the ids each reported durable. */
const page = `<!doctype html><meta charset="utf-8"><title>eventlog checks</title><script>
const workers = new Map();
let next = 0;
window.spawn = (key, killAfter) => {
  const worker = new Worker('./checks.js', { type: 'module' });
  const entry = { worker, pending: new Map(), acked: [], killed: false };
  worker.onmessage = (event) => {
    const data = event.data;
    if (data.acked !== undefined) {
      if (entry.killed) return;
      entry.acked.push(data.acked);
      worker.postMessage({ go: true });
      // Let go on, then killed a moment later: in the middle of one of the next appends.
      if (killAfter !== undefined && entry.acked.length >= killAfter) {
        entry.killed = true;
        setTimeout(() => worker.terminate(), killAfter % 4);
      }
      return;
    }
    const waiting = entry.pending.get(data.id);
    entry.pending.delete(data.id);
    if (data.error !== undefined) waiting.reject(new Error(data.error)); else waiting.resolve(data.result);
  };
  workers.set(key, entry);
};
window.killed = (key) => workers.get(key).killed;
window.call = (key, method, ...args) => new Promise((resolve, reject) => {
  const entry = workers.get(key);
  const id = next++;
  entry.pending.set(id, { resolve, reject });
  entry.worker.postMessage({ id, method, args });
});
window.acked = (key) => workers.get(key).acked.slice();
window.kill = (key) => { const entry = workers.get(key); entry.killed = true; entry.worker.terminate(); workers.delete(key); return entry.acked.slice(); };
</script>`;

declare const spawn: (key: string, killAfter?: number) => void;
declare const killed: (key: string) => boolean;
declare const call: (key: string, method: string, ...args: unknown[]) => Promise<unknown>;
declare const acked: (key: string) => string[];
declare const kill: (key: string) => string[];

describe.skipIf(browserMissing !== undefined)('the event log in headless Chromium (OPFS, a dedicated worker)', () => {
  let browser: Browser;
  let tab: Page;
  let server: { url: string; close(): Promise<void> };

  beforeAll(async () => {
    const checks = await bundleForBrowser(new URL('./browser/checks.ts', import.meta.url).pathname);
    server = await serveFiles(
      new Map<string, Uint8Array | string>([
        ['/', page],
        ['/checks.js', checks],
      ]),
    );
    browser = await launchChromium();
    tab = await browser.newPage();
    await tab.goto(server.url);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('the filesystem seam holds its contract on OPFS (errors, positional writes, shared opens, rename over a target, the directory lock)', async () => {
    const result = (await tab.evaluate(async () => {
      spawn('contract');
      return call('contract', 'fsContract', `contract-${Date.now()}`);
    })) as { checks: number; failures: string[] };
    expect(result.failures).toEqual([]);
    expect(result.checks).toBeGreaterThan(30);
  });

  it(`appends reported durable survive the worker being terminated mid-append (${rounds} rounds, sync always and group), and the log recovers and verifies`, async () => {
    for (let round = 0; round < rounds; round++) {
      const dir = `crash-${Date.now()}-${round}`;
      const sync = round % 2 === 0 ? 'always' : 'group';
      const key = `writer-${round}`;
      await tab.evaluate(
        (workerKey, logDir, mode) => {
          spawn(workerKey);
          void call(workerKey, 'appendUntilKilled', logDir, mode).catch(() => undefined);
        },
        key,
        dir,
        sync,
      );
      const wanted = 5 + round * 7;
      await until(
        'enough appends are durable',
        () => tab.evaluate((workerKey) => acked(workerKey).length, key),
        (count) => count >= wanted,
      );
      const durable = await tab.evaluate((workerKey) => kill(workerKey), key);
      // The terminated worker's lock and file handles are released by the browser; wait for that, then read back.
      const read = (await until(
        'the log reopens after the crash',
        () =>
          tab.evaluate(async (logDir) => {
            spawn('reader');
            try {
              return await call('reader', 'readAll', logDir);
            } catch (error) {
              return { error: String(error) };
            } finally {
              kill('reader');
            }
          }, dir),
        (value) => !('error' in (value as object)) || !/Locked|EBUSY/.test(String((value as { error: string }).error)),
      )) as { ids: string[]; verified: boolean; problem: string | undefined } | { error: string };
      if ('error' in read) throw new Error(read.error);
      console.log(
        `[browser crash] round ${round} (sync ${sync}, seed ${seed}): killed after ${durable.length} appends acknowledged durable; ${read.ids.length} recovered`,
      );
      expect(read.verified, read.problem).toBe(true);
      // Every acknowledged append is there, in order, as the log's first events.
      expect(read.ids.slice(0, durable.length)).toEqual(durable);
      expect(read.ids.length - durable.length).toBeLessThan(50);
    }
  });

  it('the decoder properties hold in the browser', async () => {
    console.log(`decoder properties in Chromium: ${runs} runs each, seed ${seed} (replay with WEFT_SEED=${seed})`);
    const result = (await tab.evaluate(
      (propertySeed, propertyRuns) => {
        spawn('decoders');
        return call('decoders', 'decoderProperties', propertySeed, propertyRuns);
      },
      seed,
      runs,
    )) as { properties: number; failures: string[] };
    expect(result.failures).toEqual([]);
    expect(result.properties).toBe(7);
  });
});
