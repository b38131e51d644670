import type { KvStore } from '@weft/kv';
import type { ConformanceCheck } from '../harness.js';
import { byKey, checkKeyHistory, type Operation } from '../linearizability/checker.js';
import { checkHistory } from '../linearizability/multi-key.js';
import { formatHistory, shrinkKeyHistory } from '../linearizability/report.js';
import { recordCommitHistory, recordHistory } from '../linearizability/workload.js';
import { check } from './contract.js';

/** The shape of a linearizability run. */
export interface LinearizabilityRun {
  /** Concurrent clients, each on its own handle. @default 8 */
  readonly clients?: number;
  /** Keys the clients share in each history. @default 3 */
  readonly keys?: number;
  /** @default 30 */
  readonly operationsPerClient?: number;
  readonly histories: number;
  /** History `n` runs the workload of seed `seed + n`. */
  readonly seed: number;
  readonly log: (message: string) => void;
}

/** Two writes of one key that returned one version: a version names one write, whatever the order. */
function repeatedVersion(operations: readonly Operation[]): string | undefined {
  const versions = new Set<string>();
  for (const { outcome } of operations) {
    if (outcome.kind !== 'written') continue;
    if (versions.has(outcome.version)) return outcome.version;
    versions.add(outcome.version);
  }
  return undefined;
}

/**
 * Records `histories` concurrent histories on `stores` (one client each) and
 * decides each key's history with the checker; throws on the first one that
 * is not linearizable, with its seed and a shrunk history.
 */
export async function checkLinearizability(stores: readonly KvStore[], run: LinearizabilityRun): Promise<void> {
  const keyCount = run.keys ?? 3;
  const operationsPerClient = run.operationsPerClient ?? 30;
  run.log(
    `linearizability: ${run.histories} histories of ${stores.length} clients x ${operationsPerClient} operations on ${keyCount} keys, seed ${run.seed} (replay with WEFT_SEED=${run.seed})`,
  );
  let inconclusive = 0;
  let operations = 0;
  for (let index = 0; index < run.histories; index++) {
    const seed = run.seed + index;
    const keys = Array.from({ length: keyCount }, (_, key) => `lin.h${index}.k${key}`);
    const history = await recordHistory(stores, { keys, operationsPerClient, seed });
    operations += history.length;
    for (const [key, keyHistory] of byKey(history)) {
      const repeated = repeatedVersion(keyHistory);
      if (repeated !== undefined) {
        throw new Error(`history ${index} (seed ${seed}): two writes of ${key} returned version ${repeated}\n${formatHistory(keyHistory)}`);
      }
      const verdict = checkKeyHistory(keyHistory);
      if (verdict === 'inconclusive') inconclusive++;
      if (verdict === 'not linearizable') {
        const shrunk = shrinkKeyHistory(keyHistory);
        throw new Error(
          `history ${index} of key ${key} is not linearizable (workload seed ${seed}; replay the run with WEFT_SEED=${run.seed}); ` +
            `${shrunk.length} of its ${keyHistory.length} operations, still not linearizable:\n${formatHistory(shrunk)}`,
        );
      }
    }
  }
  run.log(
    `linearizability: ${operations} operations, every key's history linearizable${inconclusive > 0 ? ` (${inconclusive} inconclusive: search budget spent)` : ''}`,
  );
}

/**
 * Records histories with commits across two or three keys among single-key
 * operations, and decides each as a whole: keys that commits connect are
 * checked together against a store of several registers (linearizability
 * is local to each such group). Fewer clients and operations per history
 * than the single-key check keep the whole-group search within its budget;
 * a group past the budget counts as inconclusive and is reported.
 */
export async function checkCommitLinearizability(stores: readonly KvStore[], run: LinearizabilityRun): Promise<void> {
  const keyCount = run.keys ?? 3;
  const operationsPerClient = run.operationsPerClient ?? 12;
  run.log(
    `linearizability with commits: ${run.histories} histories of ${stores.length} clients x ${operationsPerClient} operations on ${keyCount} keys, seed ${run.seed} (replay with WEFT_SEED=${run.seed})`,
  );
  let inconclusive = 0;
  let operations = 0;
  let commits = 0;
  for (let index = 0; index < run.histories; index++) {
    const seed = run.seed + index;
    const keys = Array.from({ length: keyCount }, (_, key) => `lin.c${index}.k${key}`);
    const history = await recordCommitHistory(stores, { keys, operationsPerClient, seed });
    operations += history.length;
    commits += history.filter((operation) => 'writes' in operation).length;
    const { verdict, group } = checkHistory(history, 500_000);
    if (verdict === 'inconclusive') inconclusive++;
    if (verdict === 'not linearizable') {
      throw new Error(
        `history ${index} with commits is not linearizable (workload seed ${seed}; replay the run with WEFT_SEED=${run.seed}); its keys' operations:\n${formatHistory(group ?? history)}`,
      );
    }
  }
  run.log(
    `linearizability with commits: ${operations} operations (${commits} commits), every history linearizable as a whole${inconclusive > 0 ? ` (${inconclusive} inconclusive: search budget spent)` : ''}`,
  );
}

/** The linearizability clause: concurrent clients on separate handles see one register per key. */
export const linearizabilityChecks: readonly ConformanceCheck[] = [
  check(
    'linearizability',
    'concurrent get, put, create, update, delete and deleteWithVersion from separate handles are linearizable',
    async (context) => {
      const clients = 8;
      const stores = [];
      for (let client = 0; client < clients; client++) stores.push(await context.open());
      await checkLinearizability(stores, {
        histories: context.linearizabilityHistories,
        seed: context.seed ?? (Math.random() * 0x7fffffff) | 0,
        log: context.log,
      });
    },
  ),
  check(
    'linearizability',
    'concurrent commits across two or three keys, among single-key operations from separate handles, are linearizable as a whole',
    async (context) => {
      const stores = [];
      for (let client = 0; client < 4; client++) stores.push(await context.open());
      await checkCommitLinearizability(stores, {
        histories: Math.max(4, Math.ceil(context.linearizabilityHistories / 3)),
        seed: context.seed ?? (Math.random() * 0x7fffffff) | 0,
        log: context.log,
      });
    },
    ['commit'],
  ),
];
