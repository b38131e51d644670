import { openNatsKv } from '@weft/kv-nats';
import { describeKvConformance } from '@weft/kv-testkit';
import { describe } from 'vitest';
import { type NatsFixture, natsHarness, natsMissing, natsServer } from './helpers.js';

const fixture = {} as NatsFixture;

if (natsMissing !== undefined) describe.skip(`kv conformance: nats (${natsMissing})`, () => undefined);
else
  describeKvConformance('nats', {
    ...natsHarness(openNatsKv, fixture),
    setup: async () => {
      Object.assign(fixture, await natsServer());
    },
    teardown: async () => {
      await fixture.raw.close();
      await fixture.server.stop();
    },
  });
