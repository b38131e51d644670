/**
 * The fault group on real nats-servers of both lines (Debian's 2.9 and the
 * current one), reached through a loopback link that can reset and
 * partition: restarts, kill -9, pauses, resets and partitions, each with an
 * idle watch and one under continuous writes.
 */
import { openNatsKv } from '@weft/kv-nats';
import { describeKvFaults } from '@weft/kv-testkit';
import { type Link, type NatsLine, type NatsServer, natsUnavailable, serverFaults, startLink, startNatsServer } from '@weft/test-servers';
import { describe } from 'vitest';

for (const line of ['system', 'current'] as const satisfies readonly NatsLine[]) {
  const missing = natsUnavailable(line);
  let server: NatsServer;
  let link: Link;
  let lostBucket = '';
  const faults = serverFaults(() => ({ server, link }), {
    afterDataLost: {
      name: 'the bucket created again',
      // What an operator (or a deployment's setup) does after losing the store: the bucket is made again, empty.
      run: async () => void (await (await openNatsKv({ servers: server.url, bucket: lostBucket, create: { history: 10 } })).close()),
    },
  });
  if (missing !== undefined) describe.skip(`kv faults: nats ${line} (${missing})`, () => undefined);
  else
    describeKvFaults(`nats (${line} line)`, {
      setup: async () => {
        server = await startNatsServer({ line });
        link = await startLink({ target: server.port });
      },
      teardown: async () => {
        await link.close();
        await server.stop();
      },
      faults,
      open: (bucket) => {
        lostBucket = bucket;
        return openNatsKv({ servers: `nats://127.0.0.1:${link.port}`, bucket, create: { history: 10 }, timeoutMs: 1000 });
      },
    });
}
