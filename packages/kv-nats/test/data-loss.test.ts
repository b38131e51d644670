/**
 * A server that forgets writes it acknowledged: its store directory put
 * back from an earlier copy, as a restore from backup, or a disk that lost
 * what it had not yet synced (JetStream acknowledges before it fsyncs),
 * would leave it. The server then hands the forgotten writes' sequences to
 * the next writes. JetStream's compare-and-swap compares sequences only,
 * so a compare-and-swap naming a forgotten write would apply to whatever
 * write now holds its sequence: weft's versions name the write, and a
 * compare-and-swap reads the key first. What was lost is printed.
 */
import { KvError, KvErrorCode, type Version } from '@weft/kv';
import { type NatsKvStore, openNatsKv } from '@weft/kv-nats';
import { type NatsLine, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array | undefined) => (value === undefined ? undefined : new TextDecoder().decode(value));
const sequenceOf = (version: Version) => Number(version.split('-')[0]);

async function refused(call: () => Promise<unknown>): Promise<KvError> {
  const error = await call().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(KvError.is(error, KvErrorCode.RevisionMismatch), `expected RevisionMismatch, got ${String(error)}`).toBe(true);
  return error as KvError;
}

for (const line of ['system', 'current'] as const satisfies readonly NatsLine[]) {
  const missing = natsUnavailable(line);
  describe.skipIf(missing !== undefined)(`a server that forgot acknowledged writes (nats ${line} line)`, () => {
    let server: NatsServer;
    beforeAll(async () => {
      server = await startNatsServer({ line });
    });
    afterAll(async () => server?.stop());

    /** Takes a copy of the server's store with every write so far; the function returned restarts it on that copy. */
    async function copyOfStore(): Promise<() => Promise<void>> {
      await server.restart();
      const copy = await server.saveData();
      return () => server.restartFrom(copy);
    }

    it('a compare-and-swap naming a forgotten write is refused after a later write took its sequence', async () => {
      const bucket = `loss_${line}`;
      const device = await openNatsKv({ servers: server.url, bucket, create: { history: 5 } });
      let other: NatsKvStore | undefined;
      try {
        const kept = await device.put('doc', bytes('kept'));
        const putBack = await copyOfStore();
        const lost = await device.update('doc', bytes('lost'), kept);
        const lostOther = await device.put('other', bytes('lost too'));
        await putBack();
        console.log(`[nats ${line}] forgotten by the server: doc at ${lost}, other at ${lostOther}`);
        expect(text((await device.get('doc'))?.value)).toBe('kept');

        // Another device writes the key: the server gives it the forgotten write's sequence.
        other = await openNatsKv({ servers: server.url, bucket, create: { history: 5 } });
        const current = await other.update('doc', bytes('written after the loss'), kept);
        expect(sequenceOf(current), 'the server handed the forgotten sequence out again').toBe(sequenceOf(lost));
        expect(current).not.toBe(lost);

        const update = await refused(() => device.update('doc', bytes('over a forgotten write'), lost));
        expect(update.message).toContain(current);
        await refused(() => device.deleteWithVersion('doc', lost));
        if (device.capabilities.commit !== false) {
          await refused(() =>
            device.commit([
              { op: 'put', key: 'side', value: bytes('x') },
              { op: 'update', key: 'doc', value: bytes('over a forgotten write'), expected: lost },
            ]),
          );
          expect(await device.get('side')).toBeUndefined();
        }
        expect(text((await device.get('doc'))?.value)).toBe('written after the loss');
        // The version read now names the current write, and compare-and-swap goes on from it.
        const read = await device.get('doc');
        expect(read?.version).toBe(current);
        await device.update('doc', bytes('next'), current);
        // A version that names the sequence only, as a nats.js revision does, keeps the sequence-only meaning.
        await device.update('other', bytes('by revision'), String(sequenceOf(await device.put('other', bytes('x')))) as Version);
        expect(text((await device.get('other'))?.value)).toBe('by revision');
      } finally {
        await device.close();
        await other?.close();
      }
    });
  });
}
