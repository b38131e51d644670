/**
 * Listings and state-sync watches over large values, read by a slow
 * consumer, on a server that lets a connection have only 8 MB pending and
 * on one with the default 64 MB: the pages a fetch asks for stay under that,
 * and what the server drops when it cuts a slow consumer anyway is noticed
 * and fetched again. Both server lines.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type NatsKvStore, openNatsKv } from '@weft/kv-nats';
import { type NatsLine, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const values = 256;
const valueBytes = 280 * 1024;

/** A server that lets a connection have 8 MB pending, and one with the default (64 MB), with how long the reader spends per value. */
const setups = [
  { pending: '8MB', delayMs: 20 },
  { pending: 'default', delayMs: 5 },
] as const;

for (const [line, { pending, delayMs }] of (['system', 'current'] as const satisfies readonly NatsLine[]).flatMap((line) =>
  setups.map((setup) => [line, setup] as const),
)) {
  const missing = natsUnavailable(line);
  (missing === undefined ? describe : describe.skip)(
    `nats (${line} line, max_pending ${pending}): slow consumers of large values${missing ? ` (${missing})` : ''}`,
    () => {
      let server: NatsServer;
      let store: NatsKvStore;
      beforeAll(async () => {
        const config = join(tmpdir(), `weft-nats-pending-${process.pid}-${line}-${pending}.conf`);
        writeFileSync(config, pending === 'default' ? '' : `max_pending: ${pending}\n`);
        server = await startNatsServer({ line, args: ['-c', config] });
        store = await openNatsKv({ servers: server.url, bucket: 'large', create: true });
        const value = new Uint8Array(valueBytes);
        for (let index = 0; index < values; index++) {
          value[0] = index % 256;
          await store.put(`large.${String(index).padStart(3, '0')}`, value);
        }
      }, 120_000);
      afterAll(async () => {
        await store?.close();
        await server?.stop();
      });

      it(`a state-sync watch that spends ${delayMs} ms per event delivers every value, then synced`, async () => {
        const keys: string[] = [];
        for await (const event of store.watch({ prefixes: ['large'] })) {
          if (event.type === 'synced') break;
          keys.push(event.key);
          await new Promise((resolve) => setTimeout(resolve, delayMs));
        }
        expect(new Set(keys).size).toBe(values);
        expect(keys.length).toBe(values);
      }, 120_000);

      it(`a listing whose reader spends ${delayMs} ms per value lists every key once`, async () => {
        const keys: string[] = [];
        for await (const entry of store.scan('large')) {
          expect(entry.value.length).toBe(valueBytes);
          keys.push(entry.key);
          await new Promise((resolve) => setTimeout(resolve, delayMs));
        }
        expect(keys.length).toBe(values);
        expect(new Set(keys).size).toBe(values);
      }, 120_000);
    },
  );
}
