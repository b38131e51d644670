// Notes that sync between browser tabs and a Node device, end-to-end encrypted, through one nats-server.
//
//   npm run example:browser-notes
//
// starts nats-server (with a WebSocket listener, on loopback), the Node device that owns the library, and a
// page at the printed address; each tab (`?device=NAME` for more than one) is a device with its own identity and
// encrypted log in the browser's Origin Private File System. State lives in .data/browser-notes/; `-- --port=N`
// serves the page on another port than 8080.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openEventLog } from '@weft/eventlog';
import { openNatsKv } from '@weft/kv-nats';
import { createIdentity, createLibrary, identityFromPrivateKey, lwwSet, openSync, projectLww } from '@weft/sync';
import { build } from 'esbuild';

const here = fileURLToPath(new URL('.', import.meta.url));
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const fromHex = (text) => new Uint8Array(Buffer.from(text, 'hex'));

/** Bundles the page and its worker for the browser; returns the files by name. */
export async function buildPage() {
  const result = await build({
    entryPoints: [join(here, 'page.ts'), join(here, 'worker.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    sourcemap: 'inline',
    write: false,
    outdir: 'out',
    logLevel: 'silent',
  });
  const files = new Map(result.outputFiles.map((file) => [`/${file.path.split('/').pop()}`, file.contents]));
  files.set('/', readFileSync(join(here, 'index.html')));
  return files;
}

/**
 * Starts the owner device and the page's server. `nats` is a running server with a WebSocket listener
 * (`url`, `wsUrl`); `ownerKey` (32 bytes) keeps the owner's identity across runs; `dataDir` holds its log.
 */
export async function startBrowserNotes({ nats, dataDir, ownerKey, bucket = 'notes', port = 0 }) {
  const files = await buildPage();
  const identity = ownerKey === undefined ? createIdentity() : identityFromPrivateKey(ownerKey);
  const kv = await openNatsKv({ servers: nats.url, bucket, create: { history: 5 } });
  const library = await createLibrary({ kv, identity, id: bucket });
  const log = await openEventLog({ dir: join(dataDir, 'owner-log'), encryption: {} });
  const sync = await openSync({ log, kv, identity, library, pollIntervalMs: 500 });

  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (request.method === 'POST' && path === '/pair') {
      let body = '';
      request.on('data', (chunk) => {
        body += chunk;
      });
      request.on('end', async () => {
        try {
          const invitation = JSON.parse(body);
          const known = sync.membership()?.members.get(invitation.deviceId);
          if (known === undefined) {
            await sync.addMember({
              deviceId: invitation.deviceId,
              publicKey: fromHex(invitation.publicKey),
              x25519PublicKey: fromHex(invitation.x25519PublicKey),
            });
            console.log(`paired ${invitation.deviceId.slice(0, 12)}`);
          }
          response.writeHead(200, { 'content-type': 'application/json' });
          response.end(
            JSON.stringify({
              servers: nats.wsUrl,
              bucket,
              library: { id: library.id, founder: { deviceId: library.founder.deviceId, publicKey: hex(library.founder.publicKey) } },
            }),
          );
        } catch (error) {
          response.writeHead(400, { 'content-type': 'text/plain' });
          response.end(error instanceof Error ? error.message : String(error));
        }
      });
      return;
    }
    const file = files.get(path === '/index.html' ? '/' : path);
    if (request.method !== 'GET' || file === undefined) {
      response.writeHead(404).end();
      return;
    }
    const type = path.endsWith('.js') ? 'text/javascript' : 'text/html; charset=utf-8';
    response.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
    response.end(file);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/`;
  return {
    url,
    owner: { identity, kv, log, sync, library },
    add: (text) =>
      lwwSet(log, 'notes', `node-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`, new TextEncoder().encode(text)),
    notes: async () => [...(await projectLww(log, 'notes')).entries.values()].map((value) => new TextDecoder().decode(value)).sort(),
    close: async () => {
      await new Promise((resolve) => server.close(resolve));
      server.closeAllConnections();
      await sync.close();
      await log.close();
      await kv.close();
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { mkdirSync, existsSync, writeFileSync } = await import('node:fs');
  const { startNatsServer } = await import('@weft/test-servers');
  const dataDir = join(here, '../../.data/browser-notes');
  mkdirSync(dataDir, { recursive: true });
  const keyFile = join(dataDir, 'owner.key');
  if (!existsSync(keyFile)) writeFileSync(keyFile, createIdentity().privateKey, { mode: 0o600 });
  const nats = await startNatsServer({ websocket: true, storeDir: join(dataDir, 'nats') });
  const notes = await startBrowserNotes({
    nats,
    dataDir,
    ownerKey: new Uint8Array(readFileSync(keyFile)),
    port: Number(process.argv.find((arg) => arg.startsWith('--port='))?.slice(7) ?? 8080),
  });
  console.log(`nats-server ${nats.version}: ${nats.url} (WebSocket ${nats.wsUrl})`);
  console.log(`open ${notes.url} (a second device: ${notes.url}?device=tab-2); Ctrl-C stops`);
  notes.owner.sync.onStatus(() => undefined);
  process.on('SIGINT', async () => {
    await notes.close();
    await nats.stop();
    process.exit(0);
  });
}
