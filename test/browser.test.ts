/**
 * A device in a real browser: headless Chromium (the system's, driven by
 * puppeteer-core, which downloads nothing) opens the browser-notes example
 * (examples/browser-notes): `@weft/sync` in a dedicated worker, its encrypted
 * log on the Origin Private File System, NATS over WebSocket. Two tabs and a
 * Node device sync through one nats-server: all converge; a tab survives a
 * reload with its log intact; a second tab on the same log is refused; a
 * removal rotates the key in the tabs too; no plaintext reaches the server's
 * store or the tabs' OPFS files. A screenshot is saved to
 * test/.artifacts/browser-notes.png.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdentity, invitationOf } from '@weft/sync';
import { type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: the example is plain JavaScript
import { startBrowserNotes } from '../examples/browser-notes/serve.mjs';
import { browserMissing, launchChromium, until } from './browser-harness.js';

const missing = browserMissing ?? natsUnavailable('current');
if (missing !== undefined) console.warn(`SKIPPING browser device: ${missing}`);

const artifacts = new URL('./.artifacts/', import.meta.url).pathname;

interface Notes {
  url: string;
  owner: { sync: import('@weft/sync').Sync };
  add(text: string): Promise<unknown>;
  notes(): Promise<string[]>;
  close(): Promise<void>;
}

interface PageNotes {
  ready: Promise<{ eventsAtOpen: number; deviceId: string }>;
  add(text: string): Promise<void>;
  list(): Promise<string[]>;
  status(): Promise<{ keyGeneration: number; alarms: string[]; lastError: string | undefined; removed: boolean }>;
  waitUntilCaughtUp(timeoutMs?: number): Promise<void>;
  scan(needle: string): Promise<string[]>;
}

declare const notes: PageNotes;

/** Every file under `dir` (a server's store), read whole. */
function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [{ path, bytes: readFileSync(path) }];
  });
}

describe.skipIf(missing !== undefined)('a device in headless Chromium (OPFS log, NATS over WebSocket)', () => {
  let nats: NatsServer;
  let example: Notes;
  let browser: Browser;
  let dataDir: string;
  const errors: string[] = [];

  async function openTab(device: string): Promise<Page> {
    const page = await browser.newPage();
    page.on('pageerror', (error) => errors.push(`${device}: ${String(error)}`));
    await page.goto(`${example.url}?device=${device}`);
    await page.evaluate(() => notes.ready);
    return page;
  }

  beforeAll(async () => {
    nats = await startNatsServer({ line: 'current', websocket: true });
    dataDir = mkdtempSync(join(tmpdir(), 'weft-browser-notes-'));
    example = (await startBrowserNotes({ nats, dataDir, bucket: `notes_${Date.now().toString(36)}` })) as Notes;
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await example?.close();
    await nats?.stop();
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
  });

  it('two tabs and a Node device converge; a reload keeps the log; a second tab on one log is refused; a removal rotates the key in the tabs; the server and OPFS hold no plaintext', async () => {
    const first = await openTab('tab-1');
    const second = await openTab('tab-2');

    // Notes from each of the three devices, with words that must never appear in plaintext outside the devices.
    await example.add('node-note aubergine');
    await first.evaluate(() => notes.add('tab-1-note bergamot'));
    await second.evaluate(() => notes.add('tab-2-note cardamom'));
    const everything = ['node-note aubergine', 'tab-1-note bergamot', 'tab-2-note cardamom'];
    await until(
      'the Node device holds every note',
      () => example.notes(),
      (list) => list.length === 3,
    );
    for (const page of [first, second])
      await until(
        'a tab holds every note',
        () => page.evaluate(() => notes.list()),
        (list) => list.length === 3,
      );
    expect(await example.notes()).toEqual(everything);
    expect(await first.evaluate(() => notes.list())).toEqual(everything);
    expect(await second.evaluate(() => notes.list())).toEqual(everything);

    // A reload: the tab's log comes back from OPFS with every event it held, before sync pulls anything.
    const before = await first.evaluate(() => notes.list());
    await first.reload();
    const reopened = await first.evaluate(() => notes.ready);
    expect(reopened.eventsAtOpen).toBe(3);
    expect(await first.evaluate(() => notes.list())).toEqual(before);
    await first.evaluate(() => notes.add('tab-1-after-reload dill'));
    await until(
      'the Node device holds the note written after the reload',
      () => example.notes(),
      (list) => list.length === 4,
    );

    // The same device in a second tab: its log is held by the first tab (a Web Lock), so it is refused.
    const intruder = await browser.newPage();
    await intruder.goto(`${example.url}?device=tab-1`);
    const refused = await intruder.evaluate(() =>
      notes.ready.then(
        () => 'opened',
        (error: Error) => error.message,
      ),
    );
    expect(refused).toMatch(/Locked|open in another tab/);
    await intruder.close();

    // A removal rotates the key, in the tabs too: a Node device is added and removed by the owner.
    const tablet = createIdentity();
    await example.owner.sync.addMember(invitationOf(tablet));
    const { generation } = await example.owner.sync.removeMember(tablet.deviceId);
    expect(generation).toBeGreaterThan(0);
    for (const page of [first, second])
      await until(
        'a tab uses the new key generation',
        () => page.evaluate(() => notes.status()),
        (status) => status.keyGeneration === generation,
      );
    await second.evaluate(() => notes.add('tab-2-after-rotation elderflower'));
    await until(
      'the Node device reads a note sealed under the new key',
      () => example.notes(),
      (list) => list.length === 5,
    );

    for (const page of [first, second]) {
      const status = await page.evaluate(() => notes.status());
      expect(status.alarms).toEqual([]);
      expect(status.removed).toBe(false);
    }

    // No plaintext on the server's disk or in the tabs' OPFS files.
    const words = ['aubergine', 'bergamot', 'cardamom', 'dill', 'elderflower'];
    const stored = filesUnder(nats.storeDir);
    expect(stored.length).toBeGreaterThan(0);
    for (const word of words)
      expect(
        stored.filter((file) => file.bytes.includes(word)).map((file) => file.path),
        word,
      ).toEqual([]);
    for (const page of [first, second])
      for (const word of words) expect(await page.evaluate((needle) => notes.scan(needle), word)).toEqual([]);

    mkdirSync(artifacts, { recursive: true });
    await first.screenshot({ path: join(artifacts, 'browser-notes.png') as `${string}.png` });
    expect(errors).toEqual([]);
  });
});
