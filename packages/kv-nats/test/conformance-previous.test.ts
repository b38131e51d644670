// The whole conformance suite and the backend's own clauses on the 2.12 line (2.12.15), the line Jepsen
// analysed, in the long run (WEFT_LONG=1): capability detection across the three lines (2.9, 2.12, 2.15) is
// what it holds, beside conformance.test.ts (2.9) and conformance-current.test.ts (2.15).
import { openNatsKv } from '@weft/kv-nats';
import { describeKvConformance, runConformanceCheck } from '@weft/kv-testkit';
import { natsUnavailable } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsClauseChecks } from './clauses.js';
import { type NatsFixture, natsHarness, natsServer } from './helpers.js';

const missing = process.env.WEFT_LONG === '1' ? natsUnavailable('previous') : 'the 2.12 line runs with WEFT_LONG=1';
const fixture = {} as NatsFixture;

if (missing !== undefined) {
  console.warn(`SKIPPING kv conformance: nats (2.12 line): ${missing}`);
  describe.skip(`kv conformance: nats, 2.12 line (${missing})`, () => undefined);
} else {
  describeKvConformance('nats (2.12 line)', {
    ...natsHarness(openNatsKv, fixture, 1),
    setup: async () => {
      Object.assign(fixture, await natsServer('previous'));
    },
    teardown: async () => {
      await fixture.raw.close();
      await fixture.server.stop();
    },
  });
  describe('nats clauses, 2.12 line', () => {
    const clauses = {} as NatsFixture;
    beforeAll(async () => {
      Object.assign(clauses, await natsServer('previous'));
    });
    afterAll(async () => {
      await clauses.raw?.close();
      await clauses.server?.stop();
    });
    it('reports the server it runs on as 2.12', () => {
      expect(clauses.server.version.startsWith('2.12.')).toBe(true);
    });
    for (const check of natsClauseChecks(openNatsKv, clauses, { emulatedTtl: false, atomicBatch: true })) {
      it(check.name, async () => {
        const outcome = await runConformanceCheck(check, natsHarness(openNatsKv, clauses), {
          propertyRuns: 10,
          seed: 1,
          log: () => undefined,
        });
        expect(outcome.status).toBe('passed');
      });
    }
  });
}
