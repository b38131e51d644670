/**
 * weft in a browser against weft on Node.js, in the same run: the same code
 * in headless Chromium's dedicated worker (benchmarks/browser/worker.ts: a
 * log on OPFS, NATS over WebSocket) and in this process (a log on the disk,
 * NATS over TCP), interleaved round by round; each figure is browser over
 * Node. Figures: appends of 256 B each awaited durable (sync 'always') and
 * with sync 'none', a replay of the log, and a sync pull of 1-event
 * changesets into a new device. No targets: the figures say what a browser
 * device costs.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openEventLog } from '@weft/eventlog';
import { openNatsKv } from '@weft/kv-nats';
import { createIdentity, createLibrary, invitationOf, openSync } from '@weft/sync';
import { natsUnavailable, startNatsServer } from '@weft/test-servers';
import { build } from 'esbuild';
import puppeteer from 'puppeteer-core';
import type { Bench } from '../harness.js';
import { stat } from '../harness.js';
import { benchDir } from './dirs.js';

const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((path) => existsSync(path));

export function browserMissing(): string | undefined {
  if (chromium === undefined) return 'no Chromium at /usr/bin/chromium (apt-get install chromium)';
  return natsUnavailable('current');
}

const page = `<!doctype html><meta charset="utf-8"><script>
const worker = new Worker('./worker.js', { type: 'module' });
const pending = new Map();
let next = 0;
worker.onmessage = (event) => {
  const { id, result, error } = event.data;
  const waiting = pending.get(id);
  pending.delete(id);
  if (error !== undefined) waiting.reject(new Error(error)); else waiting.resolve(result);
};
window.call = (method, ...args) => new Promise((resolve, reject) => {
  const id = next++;
  pending.set(id, { resolve, reject });
  worker.postMessage({ id, method, args });
});
</script>`;

declare const call: (method: string, ...args: unknown[]) => Promise<unknown>;

export async function browserSuite(bench: Bench): Promise<void> {
  const workerSource = fileURLToPath(new URL('../../browser/worker.ts', import.meta.url));
  const bundled = await build({
    entryPoints: [workerSource],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
  });
  const files = new Map<string, Uint8Array | string>([
    ['/', page],
    ['/worker.js', bundled.outputFiles[0]?.contents as Uint8Array],
  ]);
  const server = createServer((request, response) => {
    const file = files.get(new URL(request.url ?? '/', 'http://localhost').pathname);
    if (file === undefined) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': request.url?.endsWith('.js') ? 'text/javascript' : 'text/html' }).end(file);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const nats = await startNatsServer({ line: 'current', websocket: true });
  const browser = await puppeteer.launch({
    executablePath: chromium as string,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const root = mkdtempSync(join(benchDir(), 'weft-bench-browser-'));
  let dirs = 0;
  try {
    const tab = await browser.newPage();
    await tab.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    const inBrowser = <T>(method: string, ...args: unknown[]) =>
      tab.evaluate((name, values) => call(name, ...values), method, args) as Promise<T>;
    const environment = await tab.evaluate(() => navigator.userAgent);
    bench.notes.push(
      `browser: ${environment.replace(/^.*(HeadlessChrome\/[\d.]+).*$/, '$1')}, a dedicated worker, the log on OPFS, NATS ${nats.version} over WebSocket; Node.js ${process.version}, the log on the disk, NATS over TCP.`,
    );

    const onNode = {
      async append(count: number, size: number, sync: 'always' | 'none'): Promise<number> {
        const log = await openEventLog({ dir: join(root, `append-${dirs++}`), sync });
        const payload = new Uint8Array(size).fill(7);
        const started = performance.now();
        for (let index = 0; index < count; index++) {
          const receipt = await log.append({ entity: `e${index % 64}`, kind: 0x1001, payload });
          if (sync === 'always') await receipt.durable;
        }
        await log.flush();
        const rate = count / ((performance.now() - started) / 1000);
        await log.close();
        return rate;
      },
      async replay(count: number, size: number): Promise<number> {
        const log = await openEventLog({ dir: join(root, `replay-${dirs++}`), sync: 'none' });
        const payload = new Uint8Array(size).fill(9);
        for (let index = 0; index < count; index += 1000)
          await log.appendBatch(
            Array.from({ length: Math.min(1000, count - index) }, (_, offset) => ({
              entity: `e${(index + offset) % 4900}`,
              kind: 0x1001,
              payload,
            })),
          );
        await log.flush();
        const started = performance.now();
        let read = 0;
        for await (const _event of log.read()) read++;
        const rate = read / ((performance.now() - started) / 1000);
        await log.close();
        return rate;
      },
    };

    /** Rounds of browser and Node, alternating which goes first; records browser over Node. */
    const pair = async (id: string, label: string, unit: string, browserRun: () => Promise<number>, nodeRun: () => Promise<number>) => {
      const browserRates: number[] = [];
      const nodeRates: number[] = [];
      const ratios: number[] = [];
      for (let round = 0; round < bench.rounds; round++) {
        bench.progress.update(`${label}: round ${round + 1}/${bench.rounds}`);
        let b: number;
        let n: number;
        if (round % 2 === 0) {
          b = await browserRun();
          n = await nodeRun();
        } else {
          n = await nodeRun();
          b = await browserRun();
        }
        browserRates.push(b);
        nodeRates.push(n);
        ratios.push(b / n);
      }
      bench.record({
        id,
        label,
        unit,
        higherIsBetter: true,
        weft: stat(browserRates),
        baseline: { name: 'the same on Node.js in this run', stat: stat(nodeRates) },
        ratio: stat(ratios),
      });
    };

    const durable = bench.size(300, 20);
    await pair(
      'browser.append.always.256',
      `eventlog append 256 B, sync 'always', each awaited durable: Chromium on OPFS / Node.js on disk`,
      'appends/s',
      () => inBrowser<number>('append', `append-${dirs++}`, durable, 256, 'always'),
      () => onNode.append(durable, 256, 'always'),
    );
    const many = bench.size(20_000, 1000);
    await pair(
      'browser.append.none.256',
      `eventlog append 256 B, sync 'none': Chromium on OPFS / Node.js on disk`,
      'appends/s',
      () => inBrowser<number>('append', `append-${dirs++}`, many, 256, 'none'),
      () => onNode.append(many, 256, 'none'),
    );
    const replayed = bench.size(50_000, 2000);
    await pair(
      'browser.replay.256',
      `eventlog replay of ${replayed.toLocaleString('en-US')} events of 256 B: Chromium on OPFS / Node.js on disk`,
      'events/s',
      () => inBrowser<number>('replay', `replay-${dirs++}`, replayed, 256),
      () => onNode.replay(replayed, 256),
    );

    // A library of 1-event changesets pushed once by a Node device; each round a new device in each place pulls it all.
    const changesets = bench.size(2000, 100);
    const bucket = `bench_browser_${Date.now().toString(36)}`;
    const owner = createIdentity();
    const ownerKv = await openNatsKv({ servers: nats.url, bucket, create: { history: 5 } });
    const library = await createLibrary({ kv: ownerKv, identity: owner, id: bucket });
    const ownerLog = await openEventLog({ dir: join(root, 'owner'), sync: 'none', encryption: {} });
    const ownerSync = await openSync({ log: ownerLog, kv: ownerKv, identity: owner, library, live: false, maxEventsPerChangeset: 1 });
    const payload = new Uint8Array(200).fill(3);
    for (let index = 0; index < changesets; index += 1000)
      await ownerLog.appendBatch(
        Array.from({ length: Math.min(1000, changesets - index) }, () => ({ entity: 'notes', kind: 0x1001, payload })),
      );
    await ownerLog.flush();
    bench.progress.update(`pushing ${changesets} 1-event changesets`);
    await ownerSync.syncOnce();
    const founder = { deviceId: owner.deviceId, publicKey: Buffer.from(owner.publicKey).toString('hex') };
    let devices = 0;
    await pair(
      'browser.sync.pull',
      `sync pull of ${changesets.toLocaleString('en-US')} 1-event changesets through NATS: Chromium (WebSocket, OPFS) / Node.js (TCP, disk)`,
      'changesets/s',
      async () => {
        const name = `device-${devices++}`;
        const invitation = await inBrowser<{ deviceId: string; publicKey: string; x25519PublicKey: string }>('invitation', name);
        await ownerSync.addMember({
          deviceId: invitation.deviceId,
          publicKey: Buffer.from(invitation.publicKey, 'hex'),
          x25519PublicKey: Buffer.from(invitation.x25519PublicKey, 'hex'),
        });
        const { rate, events } = await inBrowser<{ rate: number; events: number }>('pull', {
          name,
          servers: nats.wsUrl,
          bucket,
          library: { id: library.id, founder },
          changesets,
        });
        if (events < changesets) throw new Error(`the browser device pulled ${events} of ${changesets} events`);
        return rate;
      },
      async () => {
        const identity = createIdentity();
        await ownerSync.addMember(invitationOf(identity));
        const log = await openEventLog({ dir: join(root, `pull-${dirs++}`), sync: 'none', encryption: {} });
        const kv = await openNatsKv({ servers: nats.url, bucket });
        const sync = await openSync({ log, kv, identity, library, live: false, maxEventsPerChangeset: 1 });
        const started = performance.now();
        for (;;) {
          const { pulled } = await sync.syncOnce();
          if (pulled === 0 && !Object.values(sync.status().devices).some((remote) => remote.lag > 0)) break;
        }
        const rate = changesets / ((performance.now() - started) / 1000);
        if (log.head < changesets) throw new Error(`the Node device pulled ${log.head} of ${changesets} events`);
        await sync.close();
        await log.close();
        await kv.close();
        return rate;
      },
    );
    await ownerSync.close();
    await ownerLog.close();
    await ownerKv.close();
  } finally {
    await browser.close();
    await nats.stop();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    rmSync(root, { recursive: true, force: true });
  }
}
