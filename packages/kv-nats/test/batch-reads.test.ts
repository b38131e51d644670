/**
 * `getMany` on NATS: on nats-server 2.11 and later it reads many keys per
 * request, a batch direct get of their last messages (one request per 256
 * keys, seen on the wire by a subscriber of the API subject); on 2.9 it
 * reads each key from the stream leader, as `get` does. Either way it gives
 * what `get` gives for each key (the conformance suite's getMany check runs
 * on both lines too).
 */
import { connect } from '@nats-io/transport-node';
import type { KvEntry } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { type NatsLine, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bytes = (text: string) => new TextEncoder().encode(text);
const shape = (entry: KvEntry | undefined) =>
  entry === undefined ? undefined : { key: entry.key, value: new TextDecoder().decode(entry.value), version: entry.version };

for (const line of ['system', 'current'] as const satisfies readonly NatsLine[]) {
  const missing = natsUnavailable(line);
  describe.skipIf(missing !== undefined)(`getMany on nats (${line} line)`, () => {
    let server: NatsServer;
    beforeAll(async () => {
      server = await startNatsServer({ line });
    });
    afterAll(async () => server?.stop());

    it(`reads ${line === 'current' ? 'in batch direct gets, one request per 256 keys' : 'each key from the leader (no batch direct get before 2.11)'}, and gives what get gives`, async () => {
      const bucket = `many_${line}`;
      const store = await openNatsKv({ servers: server.url, bucket, create: { history: 1 } });
      const watcher = await connect({ servers: server.url });
      try {
        const keys: string[] = [];
        for (let index = 0; index < 300; index++) {
          keys.push(`k.${index}`);
          if (index % 4 !== 3) await store.put(`k.${index}`, bytes(`v${index}`));
        }
        await store.delete('k.0');
        await store.putWithTtl('k.1', bytes('short'), 1);
        await new Promise((resolve) => setTimeout(resolve, 20));
        // Requests to the stream's direct get and message get APIs, as the server receives them.
        const counts = { direct: 0, leader: 0 };
        const direct = watcher.subscribe(`$JS.API.DIRECT.GET.KV_${bucket}`, { callback: () => void counts.direct++ });
        const leader = watcher.subscribe(`$JS.API.STREAM.MSG.GET.KV_${bucket}`, { callback: () => void counts.leader++ });
        await watcher.flush();
        const asked = [...keys, 'never.1', 'k.5', 'never.2'];
        const many = await store.getMany(asked);
        await watcher.flush();
        const seen = { ...counts };
        direct.unsubscribe();
        leader.unsubscribe();
        if (line === 'current') expect(seen).toEqual({ direct: Math.ceil(302 / 256), leader: 0 });
        else expect(seen).toEqual({ direct: 0, leader: asked.length });
        const one = await Promise.all(asked.map((key) => store.get(key)));
        expect(many.map(shape)).toEqual(one.map(shape));
        expect(many.filter((entry) => entry !== undefined).length).toBe(300 - 75 - 2 + 1);
        // Keys none of which has a message: the server's "no results" is an empty answer, not an error.
        expect(await store.getMany(['never.a', 'never.b'])).toEqual([undefined, undefined]);
      } finally {
        await watcher.close();
        await store.close();
      }
    });
  });
}
