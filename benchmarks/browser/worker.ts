/**
 * The browser side of the `browser` benchmark suite (src/suites/browser.ts),
 * in a dedicated worker of headless Chromium: appends and a replay of a log
 * on OPFS, and a sync pull through NATS over WebSocket into an OPFS log,
 * each timed here with `performance.now()`. Messages: `{ id, method, args }`
 * in, `{ id, result }` or `{ id, error }` out.
 */
import { openEventLog, opfsFileSystem } from '@weft/eventlog';
import { openNatsKv } from '@weft/kv-nats';
import { createIdentity, type DeviceIdentity, invitationOf, openSync } from '@weft/sync';

const fs = opfsFileSystem();
const hex = (bytes: Uint8Array) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
const fromHex = (text: string) => new Uint8Array((text.match(/../g) ?? []).map((pair) => Number.parseInt(pair, 16)));
const identities = new Map<string, DeviceIdentity>();

/** `count` appends of `size` bytes, one at a time (each awaited durable with sync 'always'); returns appends/s. */
async function append(dir: string, count: number, size: number, sync: 'always' | 'none'): Promise<number> {
  const log = await openEventLog({ dir, fs, sync });
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
}

/** Writes `count` events of `size` bytes in batches, then times a full replay; returns events/s. */
async function replay(dir: string, count: number, size: number): Promise<number> {
  const log = await openEventLog({ dir, fs, sync: 'none' });
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
  if (read !== count) throw new Error(`replay read ${read} of ${count} events`);
  return rate;
}

/** A new identity for a pull; returns its invitation (public keys, hex). */
async function invitation(name: string) {
  const identity = createIdentity();
  identities.set(name, identity);
  const made = invitationOf(identity);
  return { deviceId: made.deviceId, publicKey: hex(made.publicKey), x25519PublicKey: hex(made.x25519PublicKey) };
}

/** Pulls every changeset of the library into a new OPFS log until caught up; returns changesets/s and events pulled. */
async function pull(options: {
  name: string;
  servers: string;
  bucket: string;
  library: { id: string; founder: { deviceId: string; publicKey: string } };
  changesets: number;
}): Promise<{ rate: number; events: number }> {
  const identity = identities.get(options.name);
  if (identity === undefined) throw new Error('call invitation first');
  const library = {
    id: options.library.id,
    founder: { deviceId: options.library.founder.deviceId, publicKey: fromHex(options.library.founder.publicKey) },
  };
  const log = await openEventLog({ dir: `pull-${options.name}`, fs, sync: 'none', encryption: {} });
  const kv = await openNatsKv({ servers: options.servers, bucket: options.bucket });
  const sync = await openSync({ log, kv, identity, library, live: false, maxEventsPerChangeset: 1 });
  const started = performance.now();
  for (let round = 0; ; round++) {
    const { pulled } = await sync.syncOnce();
    const lagging = Object.values(sync.status().devices).some((remote) => remote.lag > 0);
    if (pulled === 0 && !lagging) break;
    if (round > 100_000) throw new Error('the device did not catch up');
  }
  const rate = options.changesets / ((performance.now() - started) / 1000);
  const events = log.head;
  await sync.close();
  await log.close();
  await kv.close();
  return { rate, events };
}

const methods: Record<string, (...args: never[]) => Promise<unknown>> = { append, replay, invitation, pull };

addEventListener('message', (event: MessageEvent<{ id: number; method: string; args: never[] }>) => {
  const { id, method, args } = event.data;
  const run = methods[method];
  if (run === undefined) {
    postMessage({ id, error: `no method ${method}` });
    return;
  }
  run(...args).then(
    (result) => postMessage({ id, result }),
    (error: unknown) => postMessage({ id, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }),
  );
});
