/** The NATS backend's own clauses (clauses.ts), on both server lines. */
import { openNatsKv } from '@weft/kv-nats';
import { runConformanceCheck } from '@weft/kv-testkit';
import { type NatsLine, natsUnavailable } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsClauseChecks } from './clauses.js';
import { type NatsFixture, natsHarness, natsServer } from './helpers.js';

for (const line of ['system', 'current'] satisfies NatsLine[]) {
  describe.skipIf(natsUnavailable(line) !== undefined)(`nats clauses, ${line} line`, () => {
    const fixture = {} as NatsFixture;
    beforeAll(async () => {
      Object.assign(fixture, await natsServer(line));
    });
    afterAll(async () => {
      await fixture.raw?.close();
      await fixture.server?.stop();
    });
    for (const check of natsClauseChecks(openNatsKv, fixture, { emulatedTtl: line === 'system', atomicBatch: line !== 'system' })) {
      it(check.name, async () => {
        const outcome = await runConformanceCheck(check, natsHarness(openNatsKv, fixture), {
          propertyRuns: 10,
          seed: 1,
          log: () => undefined,
        });
        expect(outcome.status).toBe('passed');
      });
    }
  });
}
