/**
 * A server that forgets writes it acknowledged: its store directory put
 * back from an earlier copy, as a restore from backup, or a disk that lost
 * what it had not yet synced (JetStream acknowledges before it fsyncs),
 * would leave it. The server then hands the forgotten writes' sequences to
 * the next writes. JetStream's compare-and-swap compares sequences only,
 * so a compare-and-swap naming a forgotten write would apply to whatever
 * write now holds its sequence: weft's versions name the write, and a
 * compare-and-swap reads the key first. A watch that read a forgotten
 * write would go on after the sequence it read, past the writes that took
 * the forgotten sequences: weft's cursors carry the time the server stored
 * the message they name, and a watch whose message is gone fails with
 * `CursorExpired`. What was lost is printed.
 */
import { KvError, KvErrorCode, type Version, type WatchCursor, type WatchEvent } from '@weft/kv';
import { type NatsKvStore, openNatsKv } from '@weft/kv-nats';
import { WatchReader } from '@weft/kv-testkit';
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

    it('watches that read a forgotten write fail with CursorExpired, even after later writes took its sequence; a watch from before the loss goes on', async () => {
      const bucket = `watch_${line}`;
      const writer = await openNatsKv({ servers: server.url, bucket, create: { history: 5 } });
      const watcher = await openNatsKv({ servers: server.url, bucket, create: { history: 5 } });
      try {
        await writer.put('a', bytes('kept'));
        const running = new WatchReader(watcher, {});
        const beforeLoss = (await running.untilSynced()).at(-1) as WatchEvent;
        const idle = new WatchReader(watcher, { prefixes: ['unrelated'] });
        await idle.untilSynced();
        const putBack = await copyOfStore();
        await writer.put('b', bytes('lost'));
        await writer.put('c', bytes('lost'));
        const lost = (await running.until((event) => event.type === 'put' && event.key === 'c')).at(-1) as WatchEvent;
        await putBack();
        console.log(`[nats ${line}] the running watch read up to ${lost.cursor}, which the server forgot`);
        // The server takes writes again, at the forgotten sequences and past them.
        for (const key of ['x', 'y', 'z']) await writer.put(key, bytes('after the loss'));

        const failure = await running.failure();
        expect(KvError.is(failure, KvErrorCode.CursorExpired), String(failure)).toBe(true);
        expect(String(failure)).toMatch(/lost writes|no longer holds/);
        for (const from of [lost.cursor]) {
          const resumed = new WatchReader(watcher, { from });
          const error = await resumed.failure();
          expect(KvError.is(error, KvErrorCode.CursorExpired), `resumed from ${from}: ${String(error)}`).toBe(true);
        }
        // A watch on other keys read nothing the server forgot: it goes on, and sees their next write.
        await writer.put('unrelated.1', bytes('after the loss'));
        const [next] = (await idle.until((event) => event.type === 'put')).slice(-1);
        expect(next).toMatchObject({ type: 'put', key: 'unrelated.1' });
        await idle.stop();

        // From before the loss: every write after it, none forgotten.
        const resumed = new WatchReader(watcher, { from: beforeLoss.cursor });
        const seen = await resumed.until((event) => event.type === 'put' && event.key === 'z');
        expect(seen.flatMap((event) => (event.type === 'put' ? [event.key] : []))).toEqual(['x', 'y', 'z']);
        await resumed.stop();
        // A cursor in the older form, without the time, still resumes (it cannot be checked).
        const plain = beforeLoss.cursor.replace(/\.[0-9a-z]+@/, '@') as WatchCursor;
        expect(plain).not.toBe(beforeLoss.cursor);
        const old = new WatchReader(watcher, { from: plain });
        expect((await old.until((event) => event.type === 'put' && event.key === 'z')).length).toBeGreaterThan(0);
        await old.stop();
      } finally {
        await writer.close();
        await watcher.close();
      }
    });
  });
}
