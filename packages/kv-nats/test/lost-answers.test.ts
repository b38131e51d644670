/**
 * A compare-and-swap whose first attempt applied but whose answer was lost:
 * the server stored the write, the client was told JetStream was
 * unavailable (as a leader being replaced answers while the write it had
 * proposed still commits), and the driver sent it again, which the server
 * refused because the write itself is now the key's last message. The
 * outcome is the write's own: `update`, `create` and `deleteWithVersion`
 * return the version it took, never `RevisionMismatch` or `AlreadyExists`
 * (seen on a 3-node 2.12 cluster under partitions). The lost answer is made
 * here by the client's connection, on a real server of each line.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { openNatsKv } from '@weft/kv-nats';
import { type NatsLine, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) => (value === undefined ? undefined : new TextDecoder().decode(value));

/** Makes the next request to `subject` reach the server and then fail as unavailable, once. */
function loseNextAnswer(connection: NatsConnection, subject: string): { lost: () => number } {
  const request = connection.request.bind(connection);
  let armed = true;
  let lost = 0;
  Object.assign(connection, {
    request: async (to: string, payload?: Uint8Array, options?: object) => {
      const reply = await request(to, payload, options as never);
      if (armed && to === subject) {
        armed = false;
        lost++;
        throw new Error('JetStream system temporarily unavailable');
      }
      return reply;
    },
  });
  return { lost: () => lost };
}

for (const line of ['system', 'current'] as const satisfies readonly NatsLine[]) {
  const missing = natsUnavailable(line);
  describe.skipIf(missing !== undefined)(`a compare-and-swap whose answer was lost (nats, ${line} line)`, () => {
    let server: NatsServer;
    beforeAll(async () => {
      server = await startNatsServer({ line });
    });
    afterAll(async () => server?.stop());

    const bucketed = async (name: string) => {
      const connection = await connect({ servers: server.url });
      const store = await openNatsKv({ connection, bucket: name, create: { history: 5 }, sweepIntervalMs: 0 });
      return { connection, store, subject: `$KV.${name}.k` };
    };

    it('update returns the version its first attempt took', async () => {
      const { connection, store, subject } = await bucketed(`lost_update_${line}`);
      try {
        const before = await store.put('k', bytes('before'));
        const lost = loseNextAnswer(connection, subject);
        const version = await store.update('k', bytes('after'), before);
        expect(lost.lost()).toBe(1);
        const entry = await store.get('k');
        expect(text(entry?.value)).toBe('after');
        expect(entry?.version).toBe(version);
      } finally {
        await store.destroy();
        await connection.close();
      }
    });

    it('create returns the version its first attempt took, not AlreadyExists', async () => {
      const { connection, store, subject } = await bucketed(`lost_create_${line}`);
      try {
        const lost = loseNextAnswer(connection, subject);
        const version = await store.create('k', bytes('created'));
        expect(lost.lost()).toBe(1);
        const entry = await store.get('k');
        expect(text(entry?.value)).toBe('created');
        expect(entry?.version).toBe(version);
        // Another create still finds it.
        await expect(store.create('k', bytes('again'))).rejects.toMatchObject({ code: 'AlreadyExists' });
      } finally {
        await store.destroy();
        await connection.close();
      }
    });

    it('deleteWithVersion returns the tombstone its first attempt wrote', async () => {
      const { connection, store, subject } = await bucketed(`lost_delete_${line}`);
      try {
        const before = await store.put('k', bytes('before'));
        const lost = loseNextAnswer(connection, subject);
        const version = await store.deleteWithVersion('k', before);
        expect(lost.lost()).toBe(1);
        expect(await store.get('k')).toBeUndefined();
        expect((await store.entry('k'))?.version).toBe(version);
      } finally {
        await store.destroy();
        await connection.close();
      }
    });
  });
}
