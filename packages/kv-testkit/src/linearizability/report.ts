import { checkKeyHistory, type Operation } from './checker.js';
import type { AnyOperation } from './multi-key.js';

/** An operation that leaves the register as it found it, whatever the order: a read or a refused conditional write. */
function isReadOnly(operation: Operation): boolean {
  return operation.call.op === 'get' || operation.outcome.kind === 'AlreadyExists' || operation.outcome.kind === 'RevisionMismatch';
}

/**
 * The shortest prefix that is not linearizable, cut only at a moment when
 * every operation invoked before it had completed: what comes after such a
 * moment follows it in any order, so the prefix is a true witness.
 */
function failingPrefix(operations: readonly Operation[], maxSteps?: number): Operation[] {
  const sorted = [...operations].sort((a, b) => a.invokedAt - b.invokedAt);
  let completedBefore = Number.NEGATIVE_INFINITY;
  for (let cut = 1; cut < sorted.length; cut++) {
    completedBefore = Math.max(completedBefore, (sorted[cut - 1] as Operation).completedAt);
    if (completedBefore >= (sorted[cut] as Operation).invokedAt) continue;
    const prefix = sorted.slice(0, cut);
    if (checkKeyHistory(prefix, maxSteps) === 'not linearizable') return prefix;
  }
  return sorted;
}

/**
 * A smaller history of one key that is still not linearizable, and a true
 * witness: it keeps the shortest failing prefix, then drops only operations
 * whose removal cannot turn a linearizable history into one that is not
 * (reads and refused writes, which change no state, and writes invoked after
 * every other operation completed, which come last in any order).
 */
export function shrinkKeyHistory(operations: readonly Operation[], maxSteps?: number): Operation[] {
  let current = failingPrefix(operations, maxSteps);
  for (let changed = true; changed; ) {
    changed = false;
    for (let index = current.length - 1; index >= 0; index--) {
      const operation = current[index] as Operation;
      const candidate = current.filter((_, position) => position !== index);
      const last = candidate.every((other) => other.completedAt < operation.invokedAt);
      if (!isReadOnly(operation) && !last) continue;
      if (checkKeyHistory(candidate, maxSteps) === 'not linearizable') {
        current = candidate;
        changed = true;
      }
    }
  }
  return current;
}

function describeCall(operation: Pick<Operation, 'call'>): string {
  const { call } = operation;
  switch (call.op) {
    case 'get':
    case 'delete':
      return `${call.op}()`;
    case 'put':
    case 'create':
      return `${call.op}(${call.value})`;
    case 'update':
      return `update(${call.value}, expected ${call.expected})`;
    case 'deleteWithVersion':
      return `deleteWithVersion(expected ${call.expected})`;
  }
}

function describeOutcome(operation: Operation): string {
  const { outcome } = operation;
  switch (outcome.kind) {
    case 'written':
      return `version ${outcome.version}`;
    case 'value':
      return `${outcome.value} @ ${outcome.version}`;
    case 'absent':
      return 'absent';
    case 'unknown':
      return 'outcome unknown';
    default:
      return outcome.kind;
  }
}

/** One line per operation in invocation order, with times in milliseconds from the first invocation; a commit names each write. */
export function formatHistory(operations: readonly AnyOperation[]): string {
  const sorted = [...operations].sort((a, b) => a.invokedAt - b.invokedAt);
  const start = sorted[0]?.invokedAt ?? 0;
  const ms = (time: number) => (Number.isFinite(time) ? (time - start).toFixed(3).padStart(9) : '      end');
  return sorted
    .map((operation) => {
      const when = `  [${ms(operation.invokedAt)} .. ${ms(operation.completedAt)}] client ${operation.client}`;
      if (!('writes' in operation)) return `${when} ${operation.key}: ${describeCall(operation)} -> ${describeOutcome(operation)}`;
      const writes = operation.writes.map((write) => `${write.key}: ${describeCall(write)}`).join(', ');
      const { outcome } = operation;
      const result =
        outcome.kind === 'committed'
          ? `versions ${outcome.versions.join(', ')}`
          : outcome.kind === 'refused'
            ? 'refused'
            : 'outcome unknown';
      return `${when} commit(${writes}) -> ${result}`;
    })
    .join('\n');
}
