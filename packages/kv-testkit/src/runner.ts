import { randomBytes } from 'node:crypto';
import type { KvStore } from '@weft/kv';
import type { CheckContext, ConformanceCheck, KvConformanceHarness, Requirement } from './harness.js';
import { setWatchDeadline } from './helpers.js';

let bucketCounter = 0;

/** A bucket name no other check (or concurrent test process) uses. */
export function freshBucketName(): string {
  bucketCounter++;
  return `conf-${process.pid.toString(36)}-${bucketCounter}-${randomBytes(3).toString('hex')}`;
}

/** The outcome of one check. A failure is thrown, not returned. */
export type CheckOutcome = { readonly status: 'passed' } | { readonly status: 'skipped'; readonly reason: string };

/** Settings a run passes down to each check. */
export interface CheckSettings {
  readonly propertyRuns: number;
  readonly seed: number | undefined;
  /** @default 60 */
  readonly linearizabilityHistories?: number;
  readonly log: (message: string) => void;
}

/**
 * Runs one check in a fresh bucket, closing every handle it opened and
 * dropping the bucket afterwards. Returns `skipped` with a reason when the
 * backend lacks what the check requires.
 */
export async function runConformanceCheck(
  check: ConformanceCheck,
  harness: KvConformanceHarness,
  settings: CheckSettings,
): Promise<CheckOutcome> {
  setWatchDeadline(harness.watchDeadlineMs ?? 20_000);
  const bucket = freshBucketName();
  const handles: KvStore[] = [];
  const open = async (unswept = false) => {
    if (unswept && harness.openUnswept === undefined) throw new Error('the harness has no openUnswept hook');
    const store = await (unswept && harness.openUnswept !== undefined ? harness.openUnswept(bucket) : harness.open(bucket));
    handles.push(store);
    return store;
  };
  try {
    // A check of unswept TTLs opens every handle without a sweeper, this first one too: its sweeper would hide the bug.
    const first = await open(check.requires?.includes('openUnswept') === true && harness.openUnswept !== undefined);
    const missing = missingRequirement(check.requires ?? [], first, harness);
    if (missing !== undefined) return { status: 'skipped', reason: missing };
    let opened = false;
    const context: CheckContext = {
      harness,
      bucket,
      propertyRuns: settings.propertyRuns,
      seed: settings.seed,
      linearizabilityHistories: settings.linearizabilityHistories ?? 60,
      // The first call hands out the handle opened above, so a check that needs one handle opens one.
      open: async () => {
        if (!opened) {
          opened = true;
          return first;
        }
        return open();
      },
      openUnswept: () => open(true),
      log: settings.log,
    };
    await check.run(context);
    return { status: 'passed' };
  } finally {
    await Promise.allSettled(handles.map((store) => store.close()));
    await harness.dropBucket?.(bucket).catch(() => undefined);
  }
}

function missingRequirement(requires: readonly Requirement[], store: KvStore, harness: KvConformanceHarness): string | undefined {
  for (const requirement of requires) {
    switch (requirement) {
      case 'ttl':
        if (!store.capabilities.ttl) return `the ${store.backend} backend reports ttl: false (putWithTtl throws Unsupported)`;
        break;
      case 'expireBeforeNextWrite':
        if (!store.capabilities.expireBeforeNextWrite) {
          return `the ${store.backend} backend reports expireBeforeNextWrite: false (a write over a passed, unswept TTL comes without an expire event)`;
        }
        break;
      case 'purge':
        if (!store.capabilities.purge) return `the ${store.backend} backend reports purge: false (purge throws Unsupported)`;
        break;
      case 'commit':
        if (store.capabilities.commit === false)
          return `bucket '${store.bucket}' on ${store.backend} reports commit: false (commit throws Unsupported)`;
        break;
      case 'forgetHistory':
        if (harness.forgetHistory === undefined) return 'the harness has no forgetHistory hook to make history expire';
        break;
      case 'rewind':
        if (harness.rewind === undefined) return 'the harness has no rewind hook to put back an older copy of the bucket on the server';
        break;
      case 'watchResources':
        if (harness.watchResources === undefined) return 'the harness has no watchResources hook to count server-side watch resources';
        break;
      case 'openUnswept':
        if (harness.openUnswept === undefined) return 'the harness has no openUnswept hook to open a handle without a TTL sweeper';
        break;
      case 'recreateBucket':
        if (harness.recreateBucket === undefined) return 'the harness has no recreateBucket hook to destroy and re-create a bucket';
        break;
      case 'ttlHeld':
        if (harness.ttlHeld === undefined) return 'the harness has no ttlHeld hook (the backend does not hand TTLs to its server)';
        break;
    }
  }
  return undefined;
}

/**
 * Runs the given checks in order and returns the first that fails (its name
 * and error), or `undefined` when all pass or are skipped: the quick way to
 * prove a deliberately broken backend is caught.
 */
export async function findFailingCheck(
  checks: readonly ConformanceCheck[],
  harness: KvConformanceHarness,
  settings: CheckSettings,
): Promise<{ readonly check: ConformanceCheck; readonly error: unknown } | undefined> {
  for (const check of checks) {
    try {
      await runConformanceCheck(check, harness, settings);
    } catch (error) {
      return { check, error };
    }
  }
  return undefined;
}
