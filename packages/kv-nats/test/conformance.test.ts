import type { NatsConnection } from '@nats-io/transport-node';
import { type NatsKvStore, openNatsKv } from '@weft/kv-nats';
import { describeKvConformance } from '@weft/kv-testkit';
import type { NatsServer } from '@weft/test-servers';
import { describe } from 'vitest';
import { consumerCount, dropBucket, natsMissing, natsServer } from './helpers.js';

let server: NatsServer;
let raw: NatsConnection;

if (natsMissing !== undefined) describe.skip(`kv conformance: nats (${natsMissing})`, () => undefined);
else
  describeKvConformance('nats', {
    setup: async () => {
      ({ server, raw } = await natsServer());
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
    // The next open creates it again (with create).
    recreateBucket: (bucket) => dropBucket(raw, bucket),
    // weft's own tombstone compaction, the way history becomes unprovable on NATS.
    forgetHistory: async (_bucket, store) => void (await (store as NatsKvStore).compact({ olderThanMs: 0 })),
    watchResources: (bucket) => consumerCount(raw, bucket),
    expireDelayMs: 1500,
  });
