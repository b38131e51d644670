/**
 * The NATS backend over WebSocket, the transport a browser has: on Node.js a
 * `ws://` server URL connects through nats.js's WebSocket transport (the same
 * code a browser bundle runs, over the runtime's own WebSocket). A handle over
 * WebSocket and one over TCP share a bucket: writes, compare-and-swap and a
 * watch agree across them, and the WebSocket handle's watch continues exactly
 * across server restarts. The whole conformance suite runs over WebSocket
 * under `WEFT_LONG=1`.
 */
import { KvError, KvErrorCode, type KvStore, type WatchEvent } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { describeKvConformance } from '@weft/kv-testkit';
import { type NatsLine, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NatsFixture, natsHarness, natsServer } from './helpers.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) => (value === undefined ? undefined : new TextDecoder().decode(value));

/** Reads a watch into `events` until it ends; the promise settles with its failure, if any. */
function collect(store: KvStore, events: WatchEvent[], signal: AbortSignal): Promise<unknown> {
  return (async () => {
    for await (const event of store.watch({ prefixes: ['note'], signal })) events.push(event);
  })().then(
    () => undefined,
    (error: unknown) => error,
  );
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

for (const line of ['system', 'current'] as const satisfies readonly NatsLine[]) {
  const missing = natsUnavailable(line);
  describe.skipIf(missing !== undefined)(`kv over WebSocket (nats ${line} line)`, () => {
    let server: NatsServer;
    beforeAll(async () => {
      server = await startNatsServer({ line, websocket: true });
    });
    afterAll(async () => server?.stop());

    it('a WebSocket handle and a TCP handle share a bucket: writes, compare-and-swap and a watch agree', async () => {
      expect(server.wsUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
      const ws = await openNatsKv({ servers: server.wsUrl, bucket: `ws_${line}`, create: { history: 5 } });
      const tcp = await openNatsKv({ servers: server.url, bucket: `ws_${line}` });
      const stop = new AbortController();
      const events: WatchEvent[] = [];
      const watching = collect(ws, events, stop.signal);
      try {
        await until(() => events.some((event) => event.type === 'synced'), 'the watch is synced');
        const first = await ws.put('note.a', bytes('from ws'));
        expect(text((await tcp.get('note.a'))?.value)).toBe('from ws');
        const second = await tcp.update('note.a', bytes('from tcp'), first);
        await expect(ws.update('note.a', bytes('stale'), first)).rejects.toSatisfy(
          (error) => error instanceof KvError && error.code === KvErrorCode.RevisionMismatch,
        );
        const third = await ws.update('note.a', bytes('ws again'), second);
        await tcp.put('note.b', bytes('b'));
        await ws.delete('note.b');
        await until(() => events.filter((event) => event.type !== 'synced').length >= 5, 'the watch saw five changes');
        expect(events.filter((event) => event.type !== 'synced').map((event) => `${event.type} ${event.key}`)).toEqual([
          'put note.a',
          'put note.a',
          'put note.a',
          'put note.b',
          'delete note.b',
        ]);
        const last = events.findLast((event) => event.type === 'put' && event.key === 'note.a');
        expect(last?.type === 'put' && last.version).toBe(third);
        expect(text((await ws.get('note.a'))?.value)).toBe('ws again');
      } finally {
        stop.abort();
        expect(await watching).toBeUndefined();
        await ws.close();
        await tcp.close();
      }
    });

    it("a WebSocket handle's watch continues exactly across server restarts, and its calls wait for the connection", async () => {
      const ws = await openNatsKv({ servers: server.wsUrl, bucket: `ws_restart_${line}`, create: { history: 5 } });
      const stop = new AbortController();
      const events: WatchEvent[] = [];
      const watching = collect(ws, events, stop.signal);
      const written: string[] = [];
      try {
        await until(() => events.some((event) => event.type === 'synced'), 'the watch is synced');
        for (let round = 0; round < 3; round++) {
          for (let index = 0; index < 5; index++) {
            const key = `note.r${round}.${index}`;
            await ws.put(key, bytes(key));
            written.push(key);
          }
          await server.restart();
          // Sent before the client has reconnected: held until the connection is back, then answered.
          const key = `note.after${round}`;
          await ws.put(key, bytes(key));
          written.push(key);
        }
        await until(() => events.filter((event) => event.type === 'put').length >= written.length, 'the watch saw every write');
        expect(events.filter((event) => event.type === 'put').map((event) => event.key)).toEqual(written);
      } finally {
        stop.abort();
        expect(await watching).toBeUndefined();
        await ws.close();
      }
    });
  });
}

const currentMissing = natsUnavailable('current');
if (process.env.WEFT_LONG === '1' && currentMissing === undefined) {
  const fixture = {} as NatsFixture;
  describeKvConformance('nats over WebSocket (current line)', {
    ...natsHarness((options) => openNatsKv({ ...options, servers: fixture.server.wsUrl }), fixture, 1),
    setup: async () => {
      Object.assign(fixture, await natsServer('current', true));
    },
    teardown: async () => {
      await fixture.raw.close();
      await fixture.server.stop();
    },
  });
}
