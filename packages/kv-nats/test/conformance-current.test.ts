// The whole conformance suite on the current nats-server line (2.12), beside
// conformance.test.ts on the system line (Debian's 2.9): the native paths of
// newer servers (multi-filter consumers since 2.10) run here.
import type { NatsConnection } from '@nats-io/transport-node';
import { type NatsKvStore, openNatsKv } from '@weft/kv-nats';
import { describeKvConformance } from '@weft/kv-testkit';
import { type NatsServer, natsUnavailable } from '@weft/test-servers';
import { describe } from 'vitest';
import { consumerCount, dropBucket, natsServer } from './helpers.js';

const missing = natsUnavailable('current');
let server: NatsServer;
let raw: NatsConnection;

if (missing !== undefined) {
  console.warn(`SKIPPING kv conformance: nats (current line): ${missing}`);
  describe.skip(`kv conformance: nats, current line (${missing})`, () => undefined);
} else
  describeKvConformance('nats (current line)', {
    setup: async () => {
      ({ server, raw } = await natsServer('current'));
    },
    teardown: async () => {
      await raw.close();
      await server.stop();
    },
    open: (bucket) => openNatsKv({ servers: server.url, bucket, create: { history: 10 }, sweepIntervalMs: 100 }),
    // Unswept handles also settle a passed TTL before writing over it, so the ordering check runs too.
    openUnswept: (bucket) =>
      openNatsKv({ servers: server.url, bucket, create: { history: 10 }, sweepIntervalMs: 0, expireBeforeNextWrite: true }),
    dropBucket: (bucket) => dropBucket(raw, bucket),
    recreateBucket: (bucket) => dropBucket(raw, bucket),
    forgetHistory: async (_bucket, store) => void (await (store as NatsKvStore).compact({ olderThanMs: 0 })),
    watchResources: (bucket) => consumerCount(raw, bucket),
    expireDelayMs: 1500,
  });
