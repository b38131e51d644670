import { acquireLease, KvErrorCode, type KvStore } from '@weft/kv';
import { expect } from 'vitest';
import type { CheckContext, ConformanceCheck } from '../harness.js';
import { expectKvError, sleep } from '../helpers.js';
import { check } from './contract.js';

/** The lease's clock: the harness's manual clock when it has one, otherwise wall time. */
function leaseClock(context: CheckContext): () => number {
  const clock = context.harness.clock;
  return clock === undefined ? Date.now : () => clock.now();
}

async function pass(context: CheckContext, ms: number): Promise<void> {
  if (context.harness.clock !== undefined) context.harness.clock.advance(ms);
  else await sleep(ms);
}

export const leaseChecks: ConformanceCheck[] = [
  check('lease', 'of eight clients racing for a lease, exactly one holds it', async (context) => {
    const clients: KvStore[] = await Promise.all(Array.from({ length: 8 }, () => context.open()));
    const clock = leaseClock(context);
    const leases = await Promise.all(
      clients.map((client, index) => acquireLease(client, { key: 'jobs.gc', holder: `client-${index}`, ttlMs: 60_000, clock })),
    );
    expect(leases.filter((lease) => lease !== undefined).length).toBe(1);
    const again = await acquireLease(clients[0] as KvStore, { key: 'jobs.gc', holder: 'late', ttlMs: 60_000, clock });
    expect(again).toBeUndefined();
  }),
  check('lease', 'a released lease can be taken at once; renewing keeps it', async (context) => {
    const [a, b] = [await context.open(), await context.open()];
    const clock = leaseClock(context);
    const lease = await acquireLease(a, { key: 'lock', holder: 'a', ttlMs: 60_000, clock });
    expect(lease?.held).toBe(true);
    await lease?.renew();
    expect(await acquireLease(b, { key: 'lock', holder: 'b', ttlMs: 60_000, clock })).toBeUndefined();
    expect(await lease?.release()).toBe(true);
    const taken = await acquireLease(b, { key: 'lock', holder: 'b', ttlMs: 60_000, clock });
    expect(taken?.holder).toBe('b');
  }),
  check('lease', 'an expired lease is taken over, and the old holder can neither renew nor release it', async (context) => {
    const [a, b] = [await context.open(), await context.open()];
    const clock = leaseClock(context);
    const ttlMs = 300;
    const old = await acquireLease(a, { key: 'lock', holder: 'a', ttlMs, clock });
    expect(old).toBeDefined();
    await pass(context, ttlMs + 50);
    expect(old?.held).toBe(false);
    const fresh = await acquireLease(b, { key: 'lock', holder: 'b', ttlMs: 60_000, clock });
    expect(fresh?.holder).toBe('b');
    await expectKvError(async () => old?.renew(), KvErrorCode.RevisionMismatch);
    expect(await old?.release()).toBe(false);
    expect(await acquireLease(a, { key: 'lock', holder: 'a', ttlMs: 60_000, clock })).toBeUndefined();
    expect(fresh?.held).toBe(true);
  }),
];
