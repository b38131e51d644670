// The whole conformance suite on the current nats-server line (2.15), beside
// conformance.test.ts on the system line (Debian's 2.9): the native paths of
// newer servers run here (multi-filter consumers since 2.10; per-message TTL
// with limit markers since 2.11, on buckets of one version per key).
import { openNatsKv } from '@weft/kv-nats';
import { describeKvConformance } from '@weft/kv-testkit';
import { natsUnavailable } from '@weft/test-servers';
import { describe } from 'vitest';
import { type NatsFixture, natsHarness, natsServer } from './helpers.js';

const missing = natsUnavailable('current');
const fixture = {} as NatsFixture;

if (missing !== undefined) {
  console.warn(`SKIPPING kv conformance: nats (current line): ${missing}`);
  describe.skip(`kv conformance: nats, current line (${missing})`, () => undefined);
} else
  describeKvConformance('nats (current line)', {
    ...natsHarness(openNatsKv, fixture, 1),
    setup: async () => {
      Object.assign(fixture, await natsServer('current'));
    },
    teardown: async () => {
      await fixture.raw.close();
      await fixture.server.stop();
    },
  });
