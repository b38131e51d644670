/**
 * A linearizability checker for one key of a versioned key-value store,
 * after Wing & Gong's search with Lowe's memoisation (as in Porcupine): it
 * looks for an order of the operations that respects real time (an operation
 * that completed before another was invoked comes first) and in which every
 * result is what a single register would have answered.
 *
 * Linearizability is local, so a history of several keys is linearizable
 * exactly when the history of each key is; callers split by key.
 */

/** What a client asked for. Every write writes a value no other write in the history writes. */
export type Call =
  | { readonly op: 'get' }
  | { readonly op: 'put' | 'create'; readonly value: string }
  | { readonly op: 'update'; readonly value: string; readonly expected: string }
  | { readonly op: 'delete' }
  | { readonly op: 'deleteWithVersion'; readonly expected: string };

/**
 * What it got back. `unknown` is an outcome the client cannot know
 * (`Indeterminate`, a timeout): the write may have happened at any time after
 * it was invoked, or never.
 */
export type Outcome =
  | { readonly kind: 'written'; readonly version: string }
  | { readonly kind: 'value'; readonly value: string; readonly version: string }
  | { readonly kind: 'absent' }
  | { readonly kind: 'AlreadyExists' }
  | { readonly kind: 'RevisionMismatch' }
  | { readonly kind: 'unknown' };

/** One operation of a history, with the times (any monotonic clock) it was invoked and completed. */
export interface Operation {
  readonly client: number;
  readonly key: string;
  readonly call: Call;
  readonly outcome: Outcome;
  readonly invokedAt: number;
  /** `Infinity` for an `unknown` outcome: it may take effect any time after its invocation. */
  readonly completedAt: number;
}

/** The register: no live value, or a live value with its version (`undefined` when written by an `unknown` write). */
export type State = { readonly live: false } | { readonly live: true; readonly value: string; readonly version: string | undefined };

export const absent: State = { live: false };

export function stateKey(state: State): string {
  return state.live ? `1|${state.value}|${state.version ?? '?'}` : '0';
}

/** The states a register in `state` can be in after `operation` with its outcome; none when the outcome is impossible there. */
export function step(state: State, { call, outcome }: Pick<Operation, 'call' | 'outcome'>): State[] {
  const expected = 'expected' in call ? call.expected : undefined;
  // An unknown version (written by an `unknown` write) may or may not equal the expected one.
  const mayMatch = state.live && (state.version === undefined || state.version === expected);
  const mustMatch = state.live && state.version === expected;
  const written = (value: string): State => ({ live: true, value, version: outcome.kind === 'written' ? outcome.version : undefined });
  switch (call.op) {
    case 'get':
      if (outcome.kind === 'absent') return state.live ? [] : [state];
      if (outcome.kind !== 'value' || !state.live || state.value !== outcome.value) return [];
      if (state.version !== undefined && state.version !== outcome.version) return [];
      return [{ live: true, value: state.value, version: outcome.version }];
    case 'put':
      if (outcome.kind === 'written') return [written(call.value)];
      return outcome.kind === 'unknown' ? [state, written(call.value)] : [];
    case 'create':
      if (outcome.kind === 'written') return state.live ? [] : [written(call.value)];
      if (outcome.kind === 'AlreadyExists') return state.live ? [state] : [];
      if (outcome.kind === 'unknown') return state.live ? [state] : [state, written(call.value)];
      return [];
    case 'update':
      if (outcome.kind === 'written') return mayMatch ? [written(call.value)] : [];
      if (outcome.kind === 'RevisionMismatch') return mustMatch ? [] : [state];
      if (outcome.kind === 'unknown') return mayMatch ? [state, written(call.value)] : [state];
      return [];
    case 'delete':
      if (outcome.kind === 'written') return [absent];
      return outcome.kind === 'unknown' ? [state, absent] : [];
    case 'deleteWithVersion':
      if (outcome.kind === 'written') return mayMatch ? [absent] : [];
      if (outcome.kind === 'RevisionMismatch') return mustMatch ? [] : [state];
      if (outcome.kind === 'unknown') return mayMatch ? [state, absent] : [state];
      return [];
  }
}

interface Entry {
  readonly operation: number;
  readonly isCall: boolean;
  match: Entry | undefined;
  previous: Entry | undefined;
  next: Entry | undefined;
}

/** The verdict on one key's history. `inconclusive` when the search ran out of its step budget. */
export type Verdict = 'linearizable' | 'not linearizable' | 'inconclusive';

/** A sequential specification: where each state can go on each operation, and a name per state for memoising. */
export interface Specification<O, S> {
  readonly initial: S;
  step(state: S, operation: O): S[];
  key(state: S): string;
}

/**
 * Decides whether the history of one key is linearizable, starting from a
 * key with no live value.
 *
 * @param maxSteps search budget; past it the verdict is `inconclusive`
 */
export function checkKeyHistory(operations: readonly Operation[], maxSteps = 2_000_000): Verdict {
  return linearize<Operation, State>(operations, { initial: absent, step, key: stateKey }, maxSteps);
}

/**
 * Wing & Gong's search with Lowe's memoisation over any sequential
 * specification: an order of the operations that respects real time and in
 * which every outcome is one the specification allows. It follows sets of
 * states, so an operation with several possible effects (an unknown outcome)
 * costs no backtracking of its own.
 */
export function linearize<O extends { readonly invokedAt: number; readonly completedAt: number }, S>(
  operations: readonly O[],
  specification: Specification<O, S>,
  maxSteps = 2_000_000,
): Verdict {
  const stepAll = (states: ReadonlyMap<string, S>, operation: O): Map<string, S> => {
    const next = new Map<string, S>();
    for (const state of states.values())
      for (const successor of specification.step(state, operation)) next.set(specification.key(successor), successor);
    return next;
  };
  const head: Entry = { operation: -1, isCall: false, match: undefined, previous: undefined, next: undefined };
  const events = operations.flatMap((operation, index) => [
    { time: operation.invokedAt, isCall: true, index },
    { time: operation.completedAt, isCall: false, index },
  ]);
  // At equal times calls come first: the operations are then concurrent, the permissive reading.
  events.sort((a, b) => a.time - b.time || Number(b.isCall) - Number(a.isCall));
  const calls = new Map<number, Entry>();
  let last = head;
  for (const event of events) {
    const entry: Entry = { operation: event.index, isCall: event.isCall, match: undefined, previous: last, next: undefined };
    if (event.isCall) calls.set(event.index, entry);
    else {
      const call = calls.get(event.index) as Entry;
      call.match = entry;
      entry.match = call;
    }
    last.next = entry;
    last = entry;
  }

  const lift = (entry: Entry) => {
    (entry.previous as Entry).next = entry.next;
    if (entry.next !== undefined) entry.next.previous = entry.previous;
    const match = entry.match as Entry;
    (match.previous as Entry).next = match.next;
    if (match.next !== undefined) match.next.previous = match.previous;
  };
  const unlift = (entry: Entry) => {
    const match = entry.match as Entry;
    (match.previous as Entry).next = match;
    if (match.next !== undefined) match.next.previous = match;
    (entry.previous as Entry).next = entry;
    if (entry.next !== undefined) entry.next.previous = entry;
  };

  let states = new Map<string, S>([[specification.key(specification.initial), specification.initial]]);
  let linearized = 0n;
  const seen = new Set<string>();
  const stack: Array<{ entry: Entry; states: Map<string, S> }> = [];
  let entry = head.next;
  for (let steps = 0; head.next !== undefined; steps++) {
    if (steps > maxSteps) return 'inconclusive';
    if (entry === undefined) return 'not linearizable';
    if (entry.isCall) {
      const next = stepAll(states, operations[entry.operation] as O);
      if (next.size > 0) {
        const bits = linearized | (1n << BigInt(entry.operation));
        const memo = `${bits.toString(36)}/${[...next.keys()].sort().join(',')}`;
        if (!seen.has(memo)) {
          seen.add(memo);
          stack.push({ entry, states });
          states = next;
          linearized = bits;
          lift(entry);
          entry = head.next;
          continue;
        }
      }
      entry = entry.next;
    } else {
      // A pending operation's completion came before any order could place it: undo the latest choice.
      const top = stack.pop();
      if (top === undefined) return 'not linearizable';
      states = top.states;
      linearized &= ~(1n << BigInt(top.entry.operation));
      unlift(top.entry);
      entry = top.entry.next;
    }
  }
  return 'linearizable';
}

/** The operations of `history` grouped by key, each group in invocation order. */
export function byKey(history: readonly Operation[]): Map<string, Operation[]> {
  const groups = new Map<string, Operation[]>();
  for (const operation of [...history].sort((a, b) => a.invokedAt - b.invokedAt)) {
    const group = groups.get(operation.key) ?? [];
    group.push(operation);
    groups.set(operation.key, group);
  }
  return groups;
}
