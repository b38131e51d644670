/**
 * Batch direct gets on NATS (nats-server 2.11+, one-replica buckets):
 * `getMany` reads many keys per request (one request per 256 keys, seen on
 * the wire by a subscriber of the API subject); on 2.9 it reads each key
 * from the stream leader, as `get` does. A listing (`scan`) and a watch's
 * state-sync read the last message of every matching key the same way, in
 * pages of about 4 MiB, with no consumer for the listing; more than 1024
 * matching keys (the server's limit) go through a consumer as before.
 * Either way they give what they give on 2.9 (the conformance suite runs on
 * both lines too). A page whose connection is cut while it comes is asked
 * again, never waited on for ever.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type KvEntry, KvError, KvErrorCode } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { type NatsLine, type NatsServer, natsUnavailable, startLink, startNatsServer } from '@weft/test-servers';
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

/** Counts the requests a bucket's stream receives on its direct get and consumer create APIs while `run` runs. */
async function requestsDuring(watcher: NatsConnection, bucket: string, run: () => Promise<void>) {
  const counts = { direct: 0, consumers: 0 };
  const direct = watcher.subscribe(`$JS.API.DIRECT.GET.KV_${bucket}`, { callback: () => void counts.direct++ });
  const consumers = watcher.subscribe(`$JS.API.CONSUMER.CREATE.KV_${bucket}.>`, { callback: () => void counts.consumers++ });
  await watcher.flush();
  try {
    await run();
    await watcher.flush();
    return { ...counts };
  } finally {
    direct.unsubscribe();
    consumers.unsubscribe();
  }
}

const missingCurrent = natsUnavailable('current');
describe.skipIf(missingCurrent !== undefined)('listings and state-sync in batch direct gets (current line)', () => {
  let server: NatsServer;
  let watcher: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer({ line: 'current' });
    watcher = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await watcher?.close();
    await server?.stop();
  });

  it('a scan reads every live key in batch direct gets with no consumer, and a watch syncs from them with one consumer for what follows', async () => {
    const bucket = 'list_batch';
    const store = await openNatsKv({ servers: server.url, bucket, create: { history: 1 } });
    try {
      const expected = new Map<string, string>();
      for (let index = 0; index < 200; index++) {
        const key = index % 2 === 0 ? `a.${index}` : `b.${index}`;
        await store.put(key, bytes(`v${index}`));
        expected.set(key, `v${index}`);
      }
      await store.delete('a.0');
      expected.delete('a.0');
      await store.putWithTtl('a.2', bytes('short'), 1);
      expected.delete('a.2');
      await new Promise((resolve) => setTimeout(resolve, 20));
      const listed = new Map<string, string>();
      const scan = await requestsDuring(watcher, bucket, async () => {
        for await (const entry of store.scan()) listed.set(entry.key, new TextDecoder().decode(entry.value));
      });
      expect(scan).toEqual({ direct: 1, consumers: 0 });
      expect(listed).toEqual(expected);
      // A prefix reads only its keys.
      const prefixed: string[] = [];
      for await (const entry of store.scan('b')) prefixed.push(entry.key);
      expect(prefixed.sort()).toEqual([...expected.keys()].filter((key) => key.startsWith('b.')).sort());

      // A watch's state-sync: the same batch, then one consumer that goes on after it.
      const watched = new Map<string, string>();
      const controller = new AbortController();
      let after = '';
      const sync = await requestsDuring(watcher, bucket, async () => {
        const iterator = store.watch({ signal: controller.signal })[Symbol.asyncIterator]();
        for (;;) {
          const next = await iterator.next();
          if (next.done === true) throw new Error('the watch ended before synced');
          if (next.value.type === 'put') watched.set(next.value.key, new TextDecoder().decode(next.value.value));
          if (next.value.type === 'synced') break;
        }
        await store.put('b.new', bytes('live'));
        for (;;) {
          const next = await iterator.next();
          if (next.done === true) throw new Error('the watch ended before the live put');
          if (next.value.type === 'put') {
            after = `${next.value.key}=${new TextDecoder().decode(next.value.value)}`;
            break;
          }
        }
        controller.abort();
        await iterator.return?.();
      });
      expect(sync).toEqual({ direct: 1, consumers: 1 });
      expect(watched).toEqual(expected);
      expect(after).toBe('b.new=live');
    } finally {
      await store.destroy();
    }
  });

  it('large values come in several pages, and more than 1024 keys go through a consumer; both list every key once', async () => {
    const big = 'large_batch';
    const store = await openNatsKv({ servers: server.url, bucket: big, create: { history: 1 } });
    const many = 'many_batch';
    const manyStore = await openNatsKv({ servers: server.url, bucket: many, create: { history: 1 } });
    try {
      // 24 values of 512 KiB: 12 MiB, three pages of 4 MiB (the server stops a page once it has sent that much).
      const value = new Uint8Array(512 * 1024).fill(7);
      for (let index = 0; index < 24; index++) await store.put(`big.${index}`, value);
      const keys: string[] = [];
      const pages = await requestsDuring(watcher, big, async () => {
        for await (const entry of store.scan()) {
          expect(entry.value.length).toBe(value.length);
          keys.push(entry.key);
        }
      });
      expect(pages.direct).toBe(3);
      expect(pages.consumers).toBe(0);
      expect(keys.sort()).toEqual(Array.from({ length: 24 }, (_, index) => `big.${index}`).sort());
      // getMany too: the page the server cut at its byte limit goes on, no key is taken for absent.
      const read = await requestsDuring(watcher, big, async () => {
        const entries = await store.getMany(keys);
        expect(entries.every((entry) => entry?.value.length === value.length)).toBe(true);
      });
      expect(read.direct).toBe(3);

      await Promise.all(Array.from({ length: 1100 }, (_, index) => manyStore.put(`m.${index}`, bytes(String(index)))));
      const listed: string[] = [];
      const fallback = await requestsDuring(watcher, many, async () => {
        for await (const entry of manyStore.scan()) listed.push(entry.key);
      });
      expect(fallback).toEqual({ direct: 1, consumers: 1 });
      expect(new Set(listed).size).toBe(1100);
      expect(listed.length).toBe(1100);
    } finally {
      await store.destroy();
      await manyStore.destroy();
    }
  });

  it('a page whose connection is cut while it comes is asked again: the scan and getMany give every key once, and a page that never ends fails typed and retryable', async () => {
    const bucket = 'cut_batch';
    const link = await startLink({ target: server.port });
    const connection = await connect({ servers: `127.0.0.1:${link.port}`, reconnectTimeWait: 50, maxReconnectAttempts: -1 });
    const store = await openNatsKv({ connection, bucket, create: { history: 1 }, timeoutMs: 1000 });
    try {
      const value = new Uint8Array(512 * 1024).fill(3);
      const keys = Array.from({ length: 24 }, (_, index) => `big.${String(index).padStart(2, '0')}`);
      for (const key of keys) await store.put(key, value);
      // Runs `fault` once the first message of the next batch has come in.
      const afterFirstMessage = (fault: () => void) => {
        const subscribe = connection.subscribe.bind(connection);
        let armed = true;
        Object.assign(connection, {
          subscribe: (subject: string, options?: { callback?: (error: Error | null, message: unknown) => void }) => {
            const callback = options?.callback;
            if (!armed || callback === undefined || !subject.startsWith('_INBOX.')) return subscribe(subject, options as never);
            return subscribe(subject, {
              ...options,
              callback: (error: Error | null, message: unknown) => {
                callback(error, message);
                if (armed && error === null) {
                  armed = false;
                  fault();
                }
              },
            } as never);
          },
        });
        return { done: () => !armed };
      };
      // The link holds what follows and resets the connection: the rest of the page is lost with it (as when the
      // server cuts a slow consumer).
      const cut = () => {
        link.partition();
        link.reset();
        link.heal();
      };

      let fault = afterFirstMessage(cut);
      const listed: string[] = [];
      const scan = await requestsDuring(watcher, bucket, async () => {
        for await (const entry of store.scan()) {
          expect(entry.value).toEqual(value);
          listed.push(entry.key);
        }
      });
      expect(fault.done()).toBe(true);
      expect(listed.sort()).toEqual(keys);
      // Three pages, and the one that was cut asked again.
      expect(scan.direct).toBe(4);

      fault = afterFirstMessage(cut);
      const read = await requestsDuring(watcher, bucket, async () => {
        const entries = await store.getMany(keys);
        expect(entries.map((entry) => entry?.key)).toEqual(keys);
        expect(entries.every((entry) => entry?.value.length === value.length)).toBe(true);
      });
      expect(fault.done()).toBe(true);
      expect(read.direct).toBe(4);

      // The rest of the page held while the connection stays open: the page never ends, and the read fails typed and
      // retryable, either at nats.js's deadline for a batch (Timeout) or once the pings find the connection dead
      // (NotConnected: the link holds the new connection too).
      fault = afterFirstMessage(() => link.partition());
      const failure = await (async () => {
        for await (const _ of store.scan()) break;
      })().catch((error: unknown) => error);
      link.heal();
      expect(fault.done()).toBe(true);
      expect(KvError.is(failure, KvErrorCode.Timeout) || KvError.is(failure, KvErrorCode.NotConnected)).toBe(true);
      expect((failure as KvError).retryable).toBe(true);
    } finally {
      await store.destroy();
      await connection.close();
      await link.close();
    }
  });
});
