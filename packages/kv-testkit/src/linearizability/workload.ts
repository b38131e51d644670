import { performance } from 'node:perf_hooks';
import { type KvCommitOp, KvError, KvErrorCode, type KvStore, type Version } from '@weft/kv';
import type { Call, Operation, Outcome } from './checker.js';
import type { AnyOperation, CommitOutcome, CommitWrite } from './multi-key.js';

/** A seeded pseudo-random source (mulberry32): one seed, one workload. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The shape of one concurrent workload. */
export interface WorkloadOptions {
  /** Keys the clients share; few, so that operations collide. */
  readonly keys: readonly string[];
  readonly operationsPerClient: number;
  readonly seed: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Weights of the operations a client picks: conditional writes and deletes often, so that they race.
const weights: ReadonlyArray<readonly [Call['op'], number]> = [
  ['get', 25],
  ['put', 10],
  ['create', 25],
  ['update', 15],
  ['delete', 15],
  ['deleteWithVersion', 10],
];
const totalWeight = weights.reduce((sum, [, weight]) => sum + weight, 0);

export function pick(random: () => number): Call['op'] {
  let roll = random() * totalWeight;
  for (const [op, weight] of weights) {
    roll -= weight;
    if (roll < 0) return op;
  }
  return 'get';
}

export function outcomeOfError(error: unknown, call: Call): Outcome | undefined {
  if (KvError.is(error, KvErrorCode.AlreadyExists) && call.op === 'create') return { kind: 'AlreadyExists' };
  if (KvError.is(error, KvErrorCode.RevisionMismatch) && (call.op === 'update' || call.op === 'deleteWithVersion')) {
    return { kind: 'RevisionMismatch' };
  }
  // A failed read constrains nothing; a failed write may still have landed.
  return call.op === 'get' ? undefined : { kind: 'unknown' };
}

export async function perform(store: KvStore, key: string, call: Call): Promise<Outcome> {
  switch (call.op) {
    case 'get': {
      const entry = await store.get(key);
      return entry === undefined ? { kind: 'absent' } : { kind: 'value', value: decoder.decode(entry.value), version: entry.version };
    }
    case 'put':
      return { kind: 'written', version: await store.put(key, encoder.encode(call.value)) };
    case 'create':
      return { kind: 'written', version: await store.create(key, encoder.encode(call.value)) };
    case 'update':
      return { kind: 'written', version: await store.update(key, encoder.encode(call.value), call.expected as Version) };
    case 'delete':
      return { kind: 'written', version: await store.delete(key) };
    case 'deleteWithVersion':
      return { kind: 'written', version: await store.deleteWithVersion(key, call.expected as Version) };
  }
}

/**
 * Runs one client per store at once, each making `operationsPerClient`
 * random operations on the shared keys with no pause between them, and
 * records when each was invoked and completed and what it returned.
 * Conditional writes expect the version the client saw last (or, one time
 * in four, any version seen for the key), so that some of them are stale.
 */
export async function recordHistory(stores: readonly KvStore[], options: WorkloadOptions): Promise<Operation[]> {
  const random = seededRandom(options.seed);
  const history: Operation[] = [];
  const versionsSeen = new Map<string, string[]>();
  // The random choices are drawn up front, per client, so one seed gives one workload whatever the timing.
  const plans = stores.map((_, client) =>
    Array.from({ length: options.operationsPerClient }, (_, index) => ({
      key: options.keys[Math.floor(random() * options.keys.length)] as string,
      op: pick(random),
      stale: random() < 0.25,
      pickStale: random(),
      value: `c${client}.${index}`,
    })),
  );
  await Promise.all(
    stores.map(async (store, client) => {
      const lastSeen = new Map<string, string>();
      for (const plan of plans[client] ?? []) {
        const seen = versionsSeen.get(plan.key) ?? [];
        const expected = plan.stale && seen.length > 0 ? seen[Math.floor(plan.pickStale * seen.length)] : lastSeen.get(plan.key);
        let call: Call;
        if (plan.op === 'put' || plan.op === 'create') call = { op: plan.op, value: plan.value };
        else if (plan.op === 'update' && expected !== undefined) call = { op: 'update', value: plan.value, expected };
        else if (plan.op === 'deleteWithVersion' && expected !== undefined) call = { op: 'deleteWithVersion', expected };
        else if (plan.op === 'delete') call = { op: 'delete' };
        else call = { op: 'get' };
        const invokedAt = performance.now();
        let outcome: Outcome | undefined;
        try {
          outcome = await perform(store, plan.key, call);
        } catch (error) {
          outcome = outcomeOfError(error, call);
        }
        const completedAt = outcome?.kind === 'unknown' ? Number.POSITIVE_INFINITY : performance.now();
        if (outcome === undefined) continue;
        history.push({ client, key: plan.key, call, outcome, invokedAt, completedAt });
        const version = outcome.kind === 'written' || outcome.kind === 'value' ? outcome.version : undefined;
        if (version !== undefined) {
          lastSeen.set(plan.key, version);
          versionsSeen.set(plan.key, [...(versionsSeen.get(plan.key) ?? []), version]);
        }
      }
    }),
  );
  return history;
}

/**
 * The workload of {@link recordHistory} with commits among the single-key
 * operations: one operation in three is a commit of writes to two or three
 * of the keys, each write of a kind the single-key workload picks (a read
 * becomes a put), conditional ones expecting the version the client saw
 * last or, one time in four, any version seen.
 */
export async function recordCommitHistory(stores: readonly KvStore[], options: WorkloadOptions): Promise<AnyOperation[]> {
  const random = seededRandom(options.seed);
  const history: AnyOperation[] = [];
  const versionsSeen = new Map<string, string[]>();
  const plans = stores.map((_, client) =>
    Array.from({ length: options.operationsPerClient }, (_, index) => {
      const commit = random() < 1 / 3;
      const count = commit ? Math.min(options.keys.length, 2 + Math.floor(random() * 2)) : 1;
      const start = Math.floor(random() * options.keys.length);
      const keys = Array.from({ length: count }, (_, offset) => options.keys[(start + offset) % options.keys.length] as string);
      return {
        commit,
        writes: keys.map((key) => ({ key, op: pick(random), stale: random() < 0.25, pickStale: random() })),
        value: `c${client}.${index}`,
      };
    }),
  );
  await Promise.all(
    stores.map(async (store, client) => {
      const lastSeen = new Map<string, string>();
      const saw = (key: string, version: string) => {
        lastSeen.set(key, version);
        versionsSeen.set(key, [...(versionsSeen.get(key) ?? []), version]);
      };
      const callOf = (plan: { key: string; op: Call['op']; stale: boolean; pickStale: number }, value: string, write: boolean): Call => {
        const seen = versionsSeen.get(plan.key) ?? [];
        const expected = plan.stale && seen.length > 0 ? seen[Math.floor(plan.pickStale * seen.length)] : lastSeen.get(plan.key);
        if (plan.op === 'update' && expected !== undefined) return { op: 'update', value, expected };
        if (plan.op === 'deleteWithVersion' && expected !== undefined) return { op: 'deleteWithVersion', expected };
        if (plan.op === 'delete') return { op: 'delete' };
        if (plan.op === 'create') return { op: 'create', value };
        return write || plan.op === 'put' ? { op: 'put', value } : { op: 'get' };
      };
      for (const plan of plans[client] ?? []) {
        if (!plan.commit) {
          const [single] = plan.writes as [(typeof plan.writes)[number]];
          const call = callOf(single, plan.value, false);
          const invokedAt = performance.now();
          let outcome: Outcome | undefined;
          try {
            outcome = await perform(store, single.key, call);
          } catch (error) {
            outcome = outcomeOfError(error, call);
          }
          const completedAt = outcome?.kind === 'unknown' ? Number.POSITIVE_INFINITY : performance.now();
          if (outcome === undefined) continue;
          history.push({ client, key: single.key, call, outcome, invokedAt, completedAt });
          if (outcome.kind === 'written' || outcome.kind === 'value') saw(single.key, outcome.version);
          continue;
        }
        const writes = plan.writes.map((write, index) => ({
          key: write.key,
          call: callOf(write, `${plan.value}.${index}`, true) as CommitWrite['call'],
        }));
        const ops = writes.map(({ key, call }): KvCommitOp => {
          switch (call.op) {
            case 'update':
              return { op: 'update', key, value: encoder.encode(call.value), expected: call.expected as Version };
            case 'deleteWithVersion':
              return { op: 'deleteWithVersion', key, expected: call.expected as Version };
            case 'delete':
              return { op: 'delete', key };
            default:
              return { op: call.op, key, value: encoder.encode(call.value) };
          }
        });
        const invokedAt = performance.now();
        let outcome: CommitOutcome;
        try {
          outcome = { kind: 'committed', versions: await store.commit(ops) };
        } catch (error) {
          outcome =
            KvError.is(error, KvErrorCode.AlreadyExists) || KvError.is(error, KvErrorCode.RevisionMismatch)
              ? { kind: 'refused' }
              : { kind: 'unknown' };
        }
        const completedAt = outcome.kind === 'unknown' ? Number.POSITIVE_INFINITY : performance.now();
        history.push({ client, writes, outcome, invokedAt, completedAt });
        if (outcome.kind === 'committed') {
          for (const [index, { key }] of writes.entries()) saw(key, outcome.versions[index] as string);
        }
      }
    }),
  );
  return history;
}
