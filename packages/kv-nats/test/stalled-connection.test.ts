/**
 * A connection that stalls without closing: the path between the client and
 * its server drops everything both ways while the socket stays open (a
 * half-open connection after a network change, a stateful firewall that
 * forgot it, a partition). Nothing errors; only a ping that goes
 * unanswered can tell. A handle whose connection weft opened must find out
 * within a few of its deadlines and reconnect through another address of
 * its `servers`, and a running watch must continue with no gap; the client
 * library's own default (a ping every two minutes, two unanswered) would
 * leave every call failing for four minutes or more.
 *
 * One server, reached through two loopback links: the one the connection
 * took is cut (held, not closed) and never healed during the check.
 */
import { KvError } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { WatchReader } from '@weft/kv-testkit';
import { type Link, type NatsServer, natsUnavailable, startLink, startNatsServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const missing = natsUnavailable('current');
const bytes = (text: string) => new TextEncoder().encode(text);

describe.skipIf(missing !== undefined)('a connection that stalls without closing', () => {
  let server: NatsServer;
  let links: Link[];
  beforeAll(async () => {
    server = await startNatsServer({ line: 'current' });
    links = [await startLink({ target: server.port }), await startLink({ target: server.port })];
  });
  afterAll(async () => {
    for (const link of links ?? []) link.heal();
    for (const link of links ?? []) await link.close();
    await server?.stop();
  });

  it('is found by its pings and replaced through another address; calls and a running watch go on', async () => {
    const store = await openNatsKv({
      servers: links.map((link) => `nats://127.0.0.1:${link.port}`),
      bucket: 'stall',
      create: { history: 1 },
      timeoutMs: 1000,
    });
    try {
      await store.put('a', bytes('1'));
      const watch = new WatchReader(store, {});
      await watch.untilSynced();
      const used = links.find((link) => link.connections > 0);
      expect(used, 'the connection goes through one of the links').toBeDefined();
      (used as Link).partition();

      // Each call settles typed while the connection is stalled, then they succeed once it was replaced.
      const started = Date.now();
      const failures: string[] = [];
      for (;;) {
        try {
          await store.put('b', bytes('2'));
          break;
        } catch (error) {
          expect(KvError.is(error), String(error)).toBe(true);
          failures.push((error as KvError).code);
          expect(Date.now() - started, `still failing after 30 s: ${failures.join(', ')}`).toBeLessThan(30_000);
        }
      }
      console.log(
        `[stalled connection] writes failed ${failures.length} times (${[...new Set(failures)].join(', ')}) before the connection was replaced`,
      );
      expect((await store.get('b'))?.value).toEqual(bytes('2'));
      await watch.until((event) => event.type === 'put' && event.key === 'b', 30_000);
      expect(watch.events.filter((event) => event.type === 'put').map((event) => (event.type === 'put' ? event.key : ''))).toEqual([
        'a',
        'b',
      ]);
      await watch.stop();
    } finally {
      await store.close();
    }
  }, 90_000);
});
