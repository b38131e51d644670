/**
 * The fault group on real nats-servers of both lines (Debian's 2.9 and the
 * current one), reached through a loopback link that can reset and
 * partition: restarts, kill -9, pauses, resets and partitions, each with an
 * idle watch and one under continuous writes.
 */
import { openNatsKv } from '@weft/kv-nats';
import { describeKvFaults, type KvFault } from '@weft/kv-testkit';
import { type Link, type NatsLine, type NatsServer, natsUnavailable, startLink, startNatsServer } from '@weft/test-servers';
import { describe } from 'vitest';

for (const line of ['system', 'current'] as const satisfies readonly NatsLine[]) {
  const missing = natsUnavailable(line);
  let server: NatsServer;
  let link: Link;
  let lostBucket = '';
  const faults: KvFault[] = [
    {
      name: 'graceful restart',
      outcome: 'continues',
      inject: () => server.process.stop(),
      heal: () => server.process.start(),
    },
    {
      name: 'kill -9 and restart',
      outcome: 'continues',
      inject: () => server.kill(),
      heal: () => server.process.start(),
    },
    {
      name: 'SIGSTOP, then SIGCONT',
      outcome: 'continues',
      unanswered: true,
      inject: () => server.pause(),
      heal: async () => server.resume(),
    },
    {
      name: 'every connection reset',
      outcome: 'continues',
      inject: async () => link.reset(),
      heal: async () => undefined,
    },
    {
      name: 'a partition between clients and server, then healed',
      outcome: 'continues',
      unanswered: true,
      inject: async () => link.partition(),
      heal: async () => link.heal(),
    },
    {
      name: 'kill -9 and restart with the data lost, the bucket created again',
      outcome: 'expires',
      inject: () => server.kill(),
      heal: async () => {
        await server.restartEmpty();
        // What an operator (or a deployment's setup) does after losing the store: the bucket is made again, empty.
        await (await openNatsKv({ servers: server.url, bucket: lostBucket, create: { history: 10 } })).close();
      },
    },
  ];
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
