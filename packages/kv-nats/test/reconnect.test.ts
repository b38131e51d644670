/**
 * Calls made while a handle's connection is down. nats.js drops what was
 * queued on a connection while it was down once it reconnects, so a
 * request sent in that window is never answered: a write made right after
 * a server restart failed, `Indeterminate`, only at its deadline, though
 * the server was back within a second. weft holds requests while the
 * connection is down and sends them once it is back; when it does not come
 * back within the deadline, the call fails `NotConnected` (retryable) and
 * nothing was written.
 */

import { connect } from '@nats-io/transport-node';
import { KvError, KvErrorCode, type Version } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { type NatsLine, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) => (value === undefined ? undefined : new TextDecoder().decode(value));

for (const line of ['system', 'current'] as const satisfies readonly NatsLine[]) {
  const missing = natsUnavailable(line);
  describe.skipIf(missing !== undefined)(`calls while the connection is down (nats ${line} line)`, () => {
    let server: NatsServer;
    beforeAll(async () => {
      server = await startNatsServer({ line });
    });
    afterAll(async () => server?.stop());

    it('reads and writes sent at once after a restart wait for the connection and succeed', async () => {
      const store = await openNatsKv({ servers: server.url, bucket: `restart_${line}`, create: { history: 5 } });
      try {
        const before: Version[] = [];
        for (let index = 0; index < 5; index++) before.push(await store.put(`k.${index}`, bytes(`v${index}`)));
        for (let round = 0; round < 3; round++) {
          await server.restart();
          // Sent while the client has not reconnected yet: every one must be answered, none left to its deadline.
          const results = await Promise.allSettled([
            ...before.map((version, index) => store.update(`k.${index}`, bytes(`r${round}`), version)),
            store.put(`fresh.${round}`, bytes('new')),
            store.create(`created.${round}`, bytes('new')),
            store.get('k.0'),
            store.delete(`fresh.${round - 1}`),
          ]);
          const failed = results.flatMap((result) => (result.status === 'rejected' ? [String(result.reason)] : []));
          expect(failed, `calls made right after restart ${round + 1}`).toEqual([]);
          for (const [index, result] of results.slice(0, before.length).entries()) {
            before[index] = (result as PromiseFulfilledResult<Version>).value;
          }
        }
        for (let index = 0; index < 5; index++) expect(text((await store.get(`k.${index}`))?.value)).toBe('r2');
        expect(text((await store.get('fresh.2'))?.value)).toBe('new');
        expect(await store.get('fresh.1')).toBeUndefined();
      } finally {
        await store.close();
      }
    });

    it('a server that stays down fails a write NotConnected (retryable) within the deadline, and nothing is written', async () => {
      // A connection of the caller's, so the check can wait until the client has seen its server go.
      const connection = await connect({ servers: server.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
      const store = await openNatsKv({ connection, bucket: `down_${line}`, create: { history: 5 }, timeoutMs: 500 });
      try {
        const version = await store.put('a', bytes('1'));
        const disconnected = (async () => {
          for await (const status of connection.status()) if (status.type === 'disconnect') return;
        })();
        await server.kill();
        await disconnected;
        const errors: unknown[] = [];
        for (const write of [() => store.put('b', bytes('2')), () => store.update('a', bytes('3'), version)]) {
          errors.push(
            await write().then(
              () => undefined,
              (error: unknown) => error,
            ),
          );
        }
        await server.restart();
        for (const error of errors) {
          expect(KvError.is(error, KvErrorCode.NotConnected), String(error)).toBe(true);
          expect((error as KvError).retryable).toBe(true);
        }
        // Nothing was sent: the key stays absent and the version still names the value.
        expect(await store.get('b')).toBeUndefined();
        expect(text((await store.get('a'))?.value)).toBe('1');
        await store.update('a', bytes('4'), version);
      } finally {
        await store.close();
        await connection.close();
      }
    });
  });
}
