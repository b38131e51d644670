/**
 * `@weft/kv-testkit`: the conformance suite of the `@weft/kv` contract.
 *
 * A backend proves itself in a few lines of vitest:
 *
 * ```ts
 * import { describeKvConformance } from '@weft/kv-testkit';
 * describeKvConformance('redis', { open: (bucket) => openRedisKv({ url, bucket }) });
 * ```
 *
 * The suite has example checks for every clause of the contract, a
 * fast-check model-based run against a reference model, concurrent CAS races,
 * watch checks (state-sync completeness, cursor order, resume, expiry,
 * multi-prefix, release), a linearizability check of concurrent histories
 * from separate handles, and bad-input checks. Checks are plain data
 * ({@link kvConformanceChecks}) so they can also run outside vitest's
 * registration, e.g. to prove the suite catches a broken backend.
 *
 * @packageDocumentation
 */

export { contractChecks, invalidKeys } from './checks/contract.js';
export { leaseChecks } from './checks/lease.js';
export { lifecycleChecks } from './checks/lifecycle.js';
export {
  checkCommitLinearizability,
  checkLinearizability,
  type LinearizabilityRun,
  linearizabilityChecks,
} from './checks/linearizability.js';
export { listingChecks } from './checks/listing.js';
export { modelChecks } from './checks/model.js';
export { watchChecks } from './checks/watch.js';
export { checkMachineCrash, type MachineCrash, whileRetryable } from './crash.js';
export { describeKvConformance, kvConformanceChecks } from './describe.js';
export { describeKvFaults, type KvFault, type KvFaultHarness } from './faults.js';
export type { CheckContext, ConformanceCheck, KvConformanceHarness, KvConformanceOptions, Requirement } from './harness.js';
export { applyEvents, bytes, drain, expectKvError, readState, sleep, text, WatchReader } from './helpers.js';
export { byKey, type Call, checkKeyHistory, type Operation, type Outcome, type Verdict } from './linearizability/checker.js';
export {
  type AnyOperation,
  type CommitOperation,
  type CommitOutcome,
  type CommitWrite,
  checkHistory,
  connectedGroups,
} from './linearizability/multi-key.js';
export { formatHistory, shrinkKeyHistory } from './linearizability/report.js';
export { recordCommitHistory, recordHistory, seededRandom, type WorkloadOptions } from './linearizability/workload.js';
export {
  describeKvMutants,
  describeSourceMutants,
  type KvMutantsOptions,
  type SourceCheck,
  type SourceMutant,
  type SourceMutantsOptions,
  writeMutant,
} from './mutants.js';
export { type CheckOutcome, type CheckSettings, findFailingCheck, freshBucketName, runConformanceCheck } from './runner.js';
