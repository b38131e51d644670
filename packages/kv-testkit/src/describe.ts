import { afterAll, beforeAll, describe, it } from 'vitest';
import { badInputChecks } from './checks/bad-input.js';
import { commitChecks } from './checks/commit.js';
import { contractChecks } from './checks/contract.js';
import { leaseChecks } from './checks/lease.js';
import { lifecycleChecks } from './checks/lifecycle.js';
import { linearizabilityChecks } from './checks/linearizability.js';
import { listingChecks } from './checks/listing.js';
import { modelChecks } from './checks/model.js';
import { watchChecks } from './checks/watch.js';
import type { ConformanceCheck, KvConformanceHarness, KvConformanceOptions } from './harness.js';
import { runConformanceCheck } from './runner.js';

/** Every check of the conformance suite, grouped by contract clause, in the order they run. */
export const kvConformanceChecks: readonly ConformanceCheck[] = [
  ...contractChecks,
  ...commitChecks,
  ...badInputChecks,
  ...watchChecks,
  ...listingChecks,
  ...lifecycleChecks,
  ...leaseChecks,
  ...linearizabilityChecks,
  ...modelChecks,
];

function numberFromEnvironment(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  return Number.isFinite(value) ? value : undefined;
}

/**
 * Registers the whole `@weft/kv` conformance suite with vitest for one
 * backend: one `describe` per contract clause, one test per check. Checks the
 * backend cannot run (a capability it reports false, a harness hook it lacks)
 * are reported as skipped with the reason.
 *
 * ```ts
 * import { openMemoryKv, createMemoryKvServer } from '@weft/kv';
 * import { describeKvConformance } from '@weft/kv-testkit';
 *
 * const server = createMemoryKvServer();
 * describeKvConformance('memory', { open: (bucket) => openMemoryKv({ server, bucket }) });
 * ```
 *
 * @param name shown in test names, e.g. `redis-cluster`
 * @param harness how to reach the backend; a bare function is taken as `open`
 */
export function describeKvConformance(
  name: string,
  harness: KvConformanceHarness | KvConformanceHarness['open'],
  options: KvConformanceOptions = {},
): void {
  const resolved: KvConformanceHarness = typeof harness === 'function' ? { open: harness } : harness;
  const propertyRuns = options.propertyRuns ?? numberFromEnvironment('WEFT_PROPERTY_RUNS') ?? 200;
  const seed = options.seed ?? numberFromEnvironment('WEFT_SEED');
  const linearizabilityHistories =
    options.linearizabilityHistories ??
    numberFromEnvironment('WEFT_LINEARIZABILITY_HISTORIES') ??
    (process.env.WEFT_LONG === '1' ? 2000 : 60);
  const timeout = options.timeoutMs ?? 60_000;
  const log = (message: string) => console.log(`[kv conformance: ${name}] ${message}`);

  describe(`kv conformance: ${name}`, () => {
    beforeAll(async () => resolved.setup?.(), timeout);
    afterAll(async () => resolved.teardown?.(), timeout);
    const groups = [...new Set(kvConformanceChecks.map((check) => check.group))];
    for (const group of groups) {
      describe(group, () => {
        for (const check of kvConformanceChecks.filter((candidate) => candidate.group === group)) {
          it(
            check.name,
            async (context) => {
              const outcome = await runConformanceCheck(check, resolved, { propertyRuns, seed, linearizabilityHistories, log });
              if (outcome.status === 'skipped') {
                log(`skipped "${group}: ${check.name}": ${outcome.reason}`);
                context.skip(outcome.reason);
              }
            },
            group === 'model' || group === 'linearizability' ? Math.max(timeout, 300_000) : timeout,
          );
        }
      });
    }
  });
}
