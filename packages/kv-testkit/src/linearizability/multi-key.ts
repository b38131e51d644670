/**
 * Linearizability of histories with commits: a commit writes several keys in
 * one step, so its keys' histories are no longer independent and a per-key
 * decomposition no longer holds. The history is split instead into groups of
 * keys that commits connect (linearizability is local to each group), and
 * each group is decided as a whole against a store of several registers,
 * with the same search and step budget as single keys.
 */
import { absent, type Call, linearize, type Operation, type State, stateKey, step, type Verdict } from './checker.js';

/** One write of a commit. */
export type CommitWrite = { readonly key: string; readonly call: Exclude<Call, { readonly op: 'get' }> };

/**
 * A commit's outcome: every write applied, with its version (in op order);
 * refused (a precondition failed: nothing written); or unknown.
 */
export type CommitOutcome =
  | { readonly kind: 'committed'; readonly versions: readonly string[] }
  | { readonly kind: 'refused' }
  | { readonly kind: 'unknown' };

/** One commit of a history. */
export interface CommitOperation {
  readonly client: number;
  readonly writes: readonly CommitWrite[];
  readonly outcome: CommitOutcome;
  readonly invokedAt: number;
  /** `Infinity` for an `unknown` outcome. */
  readonly completedAt: number;
}

/** An operation of a history with commits: a single-key operation or a commit. */
export type AnyOperation = Operation | CommitOperation;

const isCommit = (operation: AnyOperation): operation is CommitOperation => 'writes' in operation;

/** The keys an operation touches. */
export function keysOf(operation: AnyOperation): string[] {
  return isCommit(operation) ? operation.writes.map((write) => write.key) : [operation.key];
}

/** Several registers: a state per key (absent when not in the map). */
type Registers = ReadonlyMap<string, State>;

function registersKey(registers: Registers): string {
  return [...registers.entries()]
    .filter(([, state]) => state.live)
    .map(([key, state]) => `${key}=${stateKey(state)}`)
    .sort()
    .join(';');
}

function withState(registers: Registers, key: string, state: State): Registers {
  const next = new Map(registers);
  next.set(key, state);
  return next;
}

/** Whether a write's precondition may hold, and must hold, in `state` (an unknown version may or may not match). */
function precondition(state: State, call: CommitWrite['call']): { may: boolean; must: boolean } {
  switch (call.op) {
    case 'create':
      return { may: !state.live, must: !state.live };
    case 'update':
    case 'deleteWithVersion': {
      const may = state.live && (state.version === undefined || state.version === call.expected);
      return { may, must: state.live && state.version === call.expected };
    }
    default:
      return { may: true, must: true };
  }
}

/** The registers after every write of a commit, with the versions it returned (`undefined`: not known). */
function applied(registers: Registers, writes: readonly CommitWrite[], versions: readonly string[] | undefined): Registers {
  let next = registers;
  for (const [index, { key, call }] of writes.entries()) {
    const written: State =
      call.op === 'delete' || call.op === 'deleteWithVersion' ? absent : { live: true, value: call.value, version: versions?.[index] };
    next = withState(next, key, written);
  }
  return next;
}

function stepRegisters(registers: Registers, operation: AnyOperation): Registers[] {
  if (!isCommit(operation)) {
    const state = registers.get(operation.key) ?? absent;
    return step(state, operation).map((successor) => withState(registers, operation.key, successor));
  }
  const checks = operation.writes.map(({ key, call }) => precondition(registers.get(key) ?? absent, call));
  const allMay = checks.every((check) => check.may);
  const allMust = checks.every((check) => check.must);
  switch (operation.outcome.kind) {
    case 'committed':
      return allMay ? [applied(registers, operation.writes, operation.outcome.versions)] : [];
    case 'refused':
      // Nothing written; some precondition must be able to fail here.
      return allMust ? [] : [registers];
    case 'unknown':
      return allMay ? [registers, applied(registers, operation.writes, undefined)] : [registers];
  }
}

/** The operations of `history` in groups of keys that commits connect, each group in invocation order. */
export function connectedGroups(history: readonly AnyOperation[]): AnyOperation[][] {
  const parent = new Map<string, string>();
  const find = (key: string): string => {
    let root = key;
    while (parent.get(root) !== root && parent.get(root) !== undefined) root = parent.get(root) as string;
    parent.set(key, root);
    return root;
  };
  for (const operation of history) {
    const [first, ...rest] = keysOf(operation) as [string, ...string[]];
    if (!parent.has(first)) parent.set(first, first);
    for (const key of rest) {
      if (!parent.has(key)) parent.set(key, key);
      parent.set(find(key), find(first));
    }
  }
  const groups = new Map<string, AnyOperation[]>();
  for (const operation of [...history].sort((a, b) => a.invokedAt - b.invokedAt)) {
    const root = find(keysOf(operation)[0] as string);
    const group = groups.get(root) ?? [];
    group.push(operation);
    groups.set(root, group);
  }
  return [...groups.values()];
}

/**
 * Decides whether a history of several keys, commits among them, is
 * linearizable, starting from keys with no live value: each group of keys
 * that commits connect as a whole.
 *
 * @param maxSteps search budget per group; past it that group's verdict is `inconclusive`
 */
export function checkHistory(history: readonly AnyOperation[], maxSteps = 2_000_000): { verdict: Verdict; group?: AnyOperation[] } {
  let inconclusive: AnyOperation[] | undefined;
  for (const group of connectedGroups(history)) {
    const verdict = linearize<AnyOperation, Registers>(group, { initial: new Map(), step: stepRegisters, key: registersKey }, maxSteps);
    if (verdict === 'not linearizable') return { verdict, group };
    if (verdict === 'inconclusive') inconclusive = group;
  }
  return inconclusive === undefined ? { verdict: 'linearizable' } : { verdict: 'inconclusive', group: inconclusive };
}
