/**
 * A compare-and-swap whose first attempt applied but whose answer was lost:
 * the server stored the write, the client was told JetStream was
 * unavailable (as a leader being replaced answers while the write it had
 * proposed still commits), and the driver sent it again, which the server
 * refused because the write itself is now the key's last message. The
 * outcome is the write's own: `update`, `create` and `deleteWithVersion`
 * return the version it took, never `RevisionMismatch` or `AlreadyExists`
 * (seen on a 3-node 2.12 cluster under partitions). The lost answer is made
 * here by the client's connection, on a real server of each line; the
 * update is a clause (`clauses.ts`), run here on both lines by
 * `clauses.test.ts` and by the mutant set.
 */
import { connect } from '@nats-io/transport-node';
import { openNatsKv } from '@weft/kv-nats';
import { type NatsLine, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loseNextAnswer } from './clauses.js';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) => (value === undefined ? undefined : new TextDecoder().decode(value));

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
