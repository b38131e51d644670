/**
 * The linearizability checker itself, on histories whose verdict is known:
 * hand-written anomalies (the NATS create race among them) must be refused,
 * and any history made by a real register, however its operations overlap,
 * must be accepted.
 */
import { fc, test } from '@fast-check/vitest';
import {
  type AnyOperation,
  type Call,
  type CommitOperation,
  type CommitWrite,
  checkHistory,
  checkKeyHistory,
  connectedGroups,
  formatHistory,
  type Operation,
  type Outcome,
  shrinkKeyHistory,
} from '@weft/kv-testkit';
import { describe, expect, it } from 'vitest';

/** An operation on key `k` from `invokedAt` to `completedAt` (Infinity for an unknown outcome). */
function op(client: number, invokedAt: number, completedAt: number, call: Call, outcome: Outcome): Operation {
  return { client, key: 'k', call, outcome, invokedAt, completedAt };
}
const written = (version: string): Outcome => ({ kind: 'written', version });
const value = (text: string, version: string): Outcome => ({ kind: 'value', value: text, version });
const absent: Outcome = { kind: 'absent' };
const get: Call = { op: 'get' };

describe('linearizability checker', () => {
  it('accepts a sequential history a register would give', () => {
    const history = [
      op(0, 0, 1, { op: 'create', value: 'a' }, written('1')),
      op(1, 2, 3, get, value('a', '1')),
      op(0, 4, 5, { op: 'update', value: 'b', expected: '1' }, written('2')),
      op(1, 6, 7, { op: 'update', value: 'c', expected: '1' }, { kind: 'RevisionMismatch' }),
      op(0, 8, 9, { op: 'delete' }, written('3')),
      op(1, 10, 11, { op: 'create', value: 'd' }, written('4')),
      op(0, 12, 13, { op: 'deleteWithVersion', expected: '4' }, written('5')),
      op(1, 14, 15, get, absent),
    ];
    expect(checkKeyHistory(history)).toBe('linearizable');
  });

  it('refuses a stale read after a completed write', () => {
    const history = [op(0, 0, 1, { op: 'put', value: 'a' }, written('1')), op(1, 2, 3, get, absent)];
    expect(checkKeyHistory(history)).toBe('not linearizable');
  });

  it('refuses AlreadyExists from a create that overlapped only a delete of a tombstoned key (the NATS create race)', () => {
    const history = [
      op(0, 0, 1, { op: 'put', value: 'a' }, written('1')),
      op(0, 2, 3, { op: 'delete' }, written('2')),
      op(1, 4, 8, { op: 'delete' }, written('3')),
      op(2, 5, 9, { op: 'create', value: 'b' }, { kind: 'AlreadyExists' }),
    ];
    expect(checkKeyHistory(history)).toBe('not linearizable');
    // With a put overlapping it, AlreadyExists is a possible answer.
    expect(checkKeyHistory([...history, op(3, 4, 6, { op: 'put', value: 'c' }, written('4'))])).toBe('linearizable');
  });

  it('refuses two successful updates that expected the same version', () => {
    const history = [
      op(0, 0, 1, { op: 'put', value: 'a' }, written('1')),
      op(1, 2, 5, { op: 'update', value: 'b', expected: '1' }, written('2')),
      op(2, 2, 5, { op: 'update', value: 'c', expected: '1' }, written('3')),
    ];
    expect(checkKeyHistory(history)).toBe('not linearizable');
  });

  it('refuses two creates that both won, and a create over a live value', () => {
    expect(
      checkKeyHistory([op(0, 0, 3, { op: 'create', value: 'a' }, written('1')), op(1, 1, 4, { op: 'create', value: 'b' }, written('2'))]),
    ).toBe('not linearizable');
    expect(
      checkKeyHistory([op(0, 0, 1, { op: 'put', value: 'a' }, written('1')), op(1, 2, 3, { op: 'create', value: 'b' }, written('2'))]),
    ).toBe('not linearizable');
  });

  it('refuses a read of a value with another version than its write returned, and a value nobody wrote', () => {
    expect(checkKeyHistory([op(0, 0, 1, { op: 'put', value: 'a' }, written('1')), op(1, 2, 3, get, value('a', '9'))])).toBe(
      'not linearizable',
    );
    expect(checkKeyHistory([op(1, 2, 3, get, value('ghost', '1'))])).toBe('not linearizable');
  });

  it('refuses a deleteWithVersion that succeeded on a tombstone', () => {
    const history = [
      op(0, 0, 1, { op: 'put', value: 'a' }, written('1')),
      op(0, 2, 3, { op: 'delete' }, written('2')),
      op(1, 4, 5, { op: 'deleteWithVersion', expected: '1' }, written('3')),
    ];
    expect(checkKeyHistory(history)).toBe('not linearizable');
  });

  it('lets an overlapping read see the value before or after a write', () => {
    const before = [op(0, 0, 1, { op: 'put', value: 'a' }, written('1')), op(0, 2, 6, { op: 'put', value: 'b' }, written('2'))];
    expect(checkKeyHistory([...before, op(1, 3, 4, get, value('a', '1'))])).toBe('linearizable');
    expect(checkKeyHistory([...before, op(1, 3, 4, get, value('b', '2'))])).toBe('linearizable');
  });

  it('lets a write of unknown outcome take effect late or never, but not be undone', () => {
    const unknownPut = op(0, 0, Number.POSITIVE_INFINITY, { op: 'put', value: 'a' }, { kind: 'unknown' });
    expect(checkKeyHistory([unknownPut, op(1, 10, 11, get, absent)])).toBe('linearizable');
    expect(checkKeyHistory([unknownPut, op(1, 10, 11, get, value('a', '7'))])).toBe('linearizable');
    expect(checkKeyHistory([unknownPut, op(1, 10, 11, get, value('a', '7')), op(1, 12, 13, get, absent)])).toBe('not linearizable');
    // An update expecting the version the unknown write got, read from a get, may succeed.
    expect(
      checkKeyHistory([
        unknownPut,
        op(1, 10, 11, get, value('a', '7')),
        op(1, 12, 13, { op: 'update', value: 'b', expected: '7' }, written('8')),
      ]),
    ).toBe('linearizable');
  });

  it('shrinks a failing history to its writes and the read that contradicts them', () => {
    const history: Operation[] = [];
    for (let index = 0; index < 20; index++) {
      history.push(op(index % 3, index * 10, index * 10 + 5, { op: 'put', value: `v${index}` }, written(`${index + 1}`)));
      history.push(op(3, index * 10 + 6, index * 10 + 7, get, value(`v${index}`, `${index + 1}`)));
    }
    history.push(op(4, 1000, 1001, get, value('v3', '4')));
    expect(checkKeyHistory(history)).toBe('not linearizable');
    history.push(op(0, 2000, 2001, { op: 'put', value: 'late' }, written('99')));
    const shrunk = shrinkKeyHistory(history);
    // Every write before the stale read stays (dropping one could invent an anomaly); the other reads and the late write go.
    expect(shrunk.filter((operation) => operation.call.op === 'get')).toHaveLength(1);
    expect(shrunk).toHaveLength(21);
    expect(checkKeyHistory(shrunk)).toBe('not linearizable');
    expect(formatHistory(shrunk)).toContain('get() -> v3 @ 4');
  });
});

type Step = { readonly op: 'get' | 'put' | 'create' | 'update' | 'delete' | 'deleteWithVersion'; readonly stale: boolean };

/** Runs `steps` on a real register at increasing linearization points and spreads each operation's interval around its point. */
function registerHistory(steps: readonly Step[], spreads: readonly number[]): Operation[] {
  let live: { value: string; version: string } | undefined;
  let nextVersion = 1;
  const history: Operation[] = [];
  steps.forEach((step, index) => {
    const point = index * 10;
    const spread = spreads[index % spreads.length] ?? 0;
    const expected = step.stale || live === undefined ? `${Math.max(1, nextVersion - 2)}` : live.version;
    let call: Call;
    let outcome: Outcome;
    const write = (text: string | undefined): Outcome => {
      const version = `${nextVersion++}`;
      live = text === undefined ? undefined : { value: text, version };
      return { kind: 'written', version };
    };
    switch (step.op) {
      case 'get':
        call = { op: 'get' };
        outcome = live === undefined ? { kind: 'absent' } : { kind: 'value', ...live };
        break;
      case 'put':
        call = { op: 'put', value: `v${index}` };
        outcome = write(`v${index}`);
        break;
      case 'create':
        call = { op: 'create', value: `v${index}` };
        outcome = live === undefined ? write(`v${index}`) : { kind: 'AlreadyExists' };
        break;
      case 'update':
        call = { op: 'update', value: `v${index}`, expected };
        outcome = live?.version === expected ? write(`v${index}`) : { kind: 'RevisionMismatch' };
        break;
      case 'delete':
        call = { op: 'delete' };
        outcome = write(undefined);
        break;
      case 'deleteWithVersion':
        call = { op: 'deleteWithVersion', expected };
        outcome = live?.version === expected ? write(undefined) : { kind: 'RevisionMismatch' };
        break;
    }
    history.push({ client: index % 4, key: 'k', call, outcome, invokedAt: point - spread, completedAt: point + spread });
  });
  return history;
}

const stepArbitrary = fc.record({
  op: fc.constantFrom<Step['op']>('get', 'put', 'create', 'update', 'delete', 'deleteWithVersion'),
  stale: fc.boolean(),
});

describe('linearizability checker on histories of a real register', () => {
  test.prop([fc.array(stepArbitrary, { maxLength: 40 }), fc.array(fc.nat({ max: 35 }), { minLength: 1, maxLength: 8 })], {
    numRuns: 300,
  })('accepts every history a register produced, however much its operations overlap', (steps, spreads) => {
    expect(checkKeyHistory(registerHistory(steps, spreads))).toBe('linearizable');
  });
});

/** An operation on `key`. */
function on(key: string, client: number, invokedAt: number, completedAt: number, call: Call, outcome: Outcome): Operation {
  return { client, key, call, outcome, invokedAt, completedAt };
}
function commit(
  client: number,
  invokedAt: number,
  completedAt: number,
  writes: readonly CommitWrite[],
  outcome: CommitOperation['outcome'],
): CommitOperation {
  return { client, writes, outcome, invokedAt, completedAt };
}
const put = (key: string, text: string): CommitWrite => ({ key, call: { op: 'put', value: text } });

describe('linearizability checker, histories with commits', () => {
  it('accepts reads that see a commit whole, before or after it, while it overlaps them', () => {
    const history: AnyOperation[] = [
      commit(0, 0, 10, [put('a', 'a1'), put('b', 'b1')], { kind: 'committed', versions: ['1', '2'] }),
      on('a', 1, 1, 2, get, absent),
      on('b', 1, 3, 4, get, absent),
      on('a', 2, 5, 6, get, value('a1', '1')),
      on('b', 2, 7, 8, get, value('b1', '2')),
    ];
    expect(checkHistory(history).verdict).toBe('linearizable');
  });

  it('refuses a read that saw part of a commit', () => {
    const history: AnyOperation[] = [
      commit(0, 0, 1, [put('a', 'a1'), put('b', 'b1')], { kind: 'committed', versions: ['1', '2'] }),
      on('a', 1, 2, 3, get, value('a1', '1')),
      on('b', 1, 4, 5, get, absent),
    ];
    const { verdict, group } = checkHistory(history);
    expect(verdict).toBe('not linearizable');
    expect(formatHistory(group ?? [])).toContain('commit(a: put(a1), b: put(b1)) -> versions 1, 2');
  });

  it('refuses a refused commit whose every precondition held, and accepts one whose precondition failed', () => {
    const created = on('a', 1, 0, 1, { op: 'create', value: 'a0' }, written('1'));
    const refusedWithoutCause: AnyOperation[] = [
      created,
      commit(0, 2, 3, [{ key: 'a', call: { op: 'update', value: 'x', expected: '1' } }, put('b', 'y')], { kind: 'refused' }),
    ];
    expect(checkHistory(refusedWithoutCause).verdict).toBe('not linearizable');
    const refusedStale: AnyOperation[] = [
      created,
      commit(0, 2, 3, [put('b', 'y'), { key: 'a', call: { op: 'update', value: 'x', expected: '9' } }], { kind: 'refused' }),
      on('b', 1, 4, 5, get, absent),
    ];
    expect(checkHistory(refusedStale).verdict).toBe('linearizable');
  });

  it('lets a commit of unknown outcome land late or never, but whole', () => {
    const late: AnyOperation[] = [
      commit(0, 0, Number.POSITIVE_INFINITY, [put('a', 'a1'), put('b', 'b1')], { kind: 'unknown' }),
      on('a', 1, 1, 2, get, absent),
      on('a', 1, 3, 4, get, value('a1', '7')),
      on('b', 1, 5, 6, get, value('b1', '8')),
    ];
    expect(checkHistory(late).verdict).toBe('linearizable');
    const torn: AnyOperation[] = [
      commit(0, 0, Number.POSITIVE_INFINITY, [put('a', 'a1'), put('b', 'b1')], { kind: 'unknown' }),
      on('a', 1, 1, 2, get, value('a1', '7')),
      on('b', 1, 3, 4, get, absent),
    ];
    expect(checkHistory(torn).verdict).toBe('not linearizable');
  });

  it('checks keys that no commit connects apart, and keys a commit connects together', () => {
    const history: AnyOperation[] = [
      commit(0, 0, 1, [put('a', 'a1'), put('b', 'b1')], { kind: 'committed', versions: ['1', '2'] }),
      on('c', 1, 0, 1, { op: 'put', value: 'c1' }, written('3')),
      commit(0, 2, 3, [put('b', 'b2'), put('d', 'd1')], { kind: 'committed', versions: ['4', '5'] }),
    ];
    expect(
      connectedGroups(history)
        .map((group) => group.length)
        .sort(),
    ).toEqual([1, 2]);
  });
});
