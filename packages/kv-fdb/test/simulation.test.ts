// The in-process FoundationDB simulation is itself tested for every semantic
// the backend relies on: if it drifted from FoundationDB, the fdb-simulated
// conformance run would prove nothing.
import { fc, test } from '@fast-check/vitest';
import { FdbError, FdbErrorCode, FdbSimulation, type FdbTransaction, isMaybeCommitted, isRetryable } from '@weft/kv-fdb';
import { describe, expect, it } from 'vitest';

const b = (text: string) => Buffer.from(text, 'latin1');
const s = (bytes: Buffer | undefined) => bytes?.toString('latin1');

async function expectFdbError(action: Promise<unknown> | (() => unknown), code: number): Promise<FdbError> {
  let failure: unknown;
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (error) {
    failure = error;
  }
  expect(failure, `expected FDB error ${code}`).toBeInstanceOf(FdbError);
  expect((failure as FdbError).code).toBe(code);
  return failure as FdbError;
}

async function commitSet(db: FdbSimulation, key: string, value: string): Promise<void> {
  const tn = db.createTransaction();
  tn.set(b(key), b(value));
  await tn.commit();
}

async function read(db: FdbSimulation, key: string): Promise<string | undefined> {
  const tn = db.createTransaction();
  return s(await tn.get(b(key)));
}

describe('FdbSimulation: transactions', () => {
  it('a transaction reads one snapshot, even after another commit', async () => {
    const db = new FdbSimulation();
    await commitSet(db, 'a', '1');
    const reader = db.createTransaction();
    expect(s(await reader.get(b('a')))).toBe('1');
    await commitSet(db, 'a', '2');
    await commitSet(db, 'b', 'new');
    expect(s(await reader.get(b('a')))).toBe('1');
    expect(await reader.get(b('b'))).toBeUndefined();
    expect((await reader.getRange(b('a'), b('z'))).map(([key]) => s(key))).toEqual(['a']);
  });

  it('a read that a later commit invalidated fails with not_committed, and onError makes the retry see the new value', async () => {
    const db = new FdbSimulation();
    await commitSet(db, 'counter', '0');
    const first = db.createTransaction();
    const second = db.createTransaction();
    const increment = async (tn: FdbTransaction) => tn.set(b('counter'), b(String(Number(s(await tn.get(b('counter')))) + 1)));
    await increment(first);
    await increment(second);
    await first.commit();
    const conflict = await expectFdbError(second.commit(), FdbErrorCode.notCommitted);
    expect(isRetryable(conflict)).toBe(true);
    expect(isMaybeCommitted(conflict)).toBe(false);
    await second.onError(conflict);
    await increment(second);
    await second.commit();
    expect(await read(db, 'counter')).toBe('2');
    expect(db.stats.conflicts).toBe(1);
  });

  it('blind writes and disjoint reads do not conflict', async () => {
    const db = new FdbSimulation();
    const first = db.createTransaction();
    const second = db.createTransaction();
    await first.get(b('x'));
    await second.get(b('y'));
    first.set(b('x'), b('1'));
    second.set(b('y'), b('1'));
    second.set(b('x'), b('2'));
    await second.commit();
    // first read x, which second wrote after first's read version: first conflicts.
    await expectFdbError(first.commit(), FdbErrorCode.notCommitted);
    const blind = db.createTransaction();
    blind.set(b('x'), b('3'));
    await commitSet(db, 'x', '4');
    await blind.commit();
    expect(await read(db, 'x')).toBe('3');
  });

  it('a range read conflicts with a later commit inside the range, not outside it', async () => {
    const db = new FdbSimulation();
    const inside = db.createTransaction();
    await inside.getRange(b('m'), b('n'));
    inside.set(b('result'), b('1'));
    const outside = db.createTransaction();
    await outside.getRange(b('p'), b('q'));
    outside.set(b('result2'), b('1'));
    await commitSet(db, 'm5', 'x');
    await expectFdbError(inside.commit(), FdbErrorCode.notCommitted);
    await outside.commit();
  });

  it('reads see the transaction’s own writes, clears and cleared ranges', async () => {
    const db = new FdbSimulation();
    for (const key of ['a', 'b', 'c', 'd']) await commitSet(db, key, key);
    const tn = db.createTransaction();
    tn.set(b('b'), b('B'));
    tn.clear(b('a'));
    tn.clearRange(b('c'), b('d'));
    tn.set(b('bb'), b('new'));
    expect(s(await tn.get(b('b')))).toBe('B');
    expect(await tn.get(b('a'))).toBeUndefined();
    const rows = await tn.getRange(b('a'), b('z'));
    expect(rows.map(([key, value]) => `${s(key)}=${s(value)}`)).toEqual(['b=B', 'bb=new', 'd=d']);
    const reversed = await tn.getRange(b('a'), b('z'), { reverse: true, limit: 2 });
    expect(reversed.map(([key]) => s(key))).toEqual(['d', 'bb']);
    expect(await read(db, 'b')).toBe('b');
  });

  it('versionstamps increase with commit order and fill keys and values at commit', async () => {
    const db = new FdbSimulation();
    const stamps: Buffer[] = [];
    for (let index = 0; index < 5; index++) {
      const tn = db.createTransaction();
      tn.setVersionstampedKey(b('log/'), b('#'), b(`entry ${index}`));
      tn.setVersionstampedValue(b('head'), b('!'));
      const stamp = tn.getVersionstamp();
      await tn.commit();
      stamps.push(await stamp);
    }
    for (let index = 1; index < stamps.length; index++) {
      expect(Buffer.compare(stamps[index - 1] as Buffer, stamps[index] as Buffer)).toBeLessThan(0);
    }
    const tn = db.createTransaction();
    const log = await tn.getRange(b('log/'), b('log0'));
    expect(log.map(([key]) => key)).toEqual(stamps.map((stamp) => Buffer.concat([b('log/'), stamp, b('#')])));
    expect(log.map(([, value]) => s(value))).toEqual(['entry 0', 'entry 1', 'entry 2', 'entry 3', 'entry 4']);
    expect(await tn.get(b('head'))).toEqual(Buffer.concat([stamps[4] as Buffer, b('!')]));
  });

  it('reading what this transaction wrote with a versionstamp fails with accessed_unreadable', async () => {
    const db = new FdbSimulation();
    const tn = db.createTransaction();
    tn.setVersionstampedValue(b('head'), b(''));
    tn.setVersionstampedKey(b('log/'), b(''), b('x'));
    await expectFdbError(tn.get(b('head')), FdbErrorCode.accessedUnreadable);
    await expectFdbError(tn.getRange(b('log/'), b('log0')), FdbErrorCode.accessedUnreadable);
    expect(await tn.get(b('other'))).toBeUndefined();
  });

  it('a read-only transaction has no versionstamp', async () => {
    const db = new FdbSimulation();
    const tn = db.createTransaction();
    await tn.get(b('a'));
    const stamp = tn.getVersionstamp();
    await tn.commit();
    await expectFdbError(stamp, 2021);
  });
});

describe('FdbSimulation: limits', () => {
  it('refuses values over 100 KB, keys over 10 KB and transactions over 10 MB at commit, writing nothing', async () => {
    const db = new FdbSimulation();
    const big = db.createTransaction();
    big.set(b('v'), Buffer.alloc(100_001));
    await expectFdbError(big.commit(), FdbErrorCode.valueTooLarge);
    const longKey = db.createTransaction();
    longKey.set(Buffer.alloc(10_001, 0x61), b('x'));
    await expectFdbError(longKey.commit(), FdbErrorCode.keyTooLarge);
    const huge = db.createTransaction();
    for (let index = 0; index < 101; index++) huge.set(b(`k${index}`), Buffer.alloc(100_000));
    await expectFdbError(huge.commit(), FdbErrorCode.transactionTooLarge);
    expect(await read(db, 'v')).toBeUndefined();
    expect(await read(db, 'k0')).toBeUndefined();
    const fits = db.createTransaction();
    fits.set(b('v'), Buffer.alloc(100_000));
    await fits.commit();
  });

  it('a transaction past its lifetime fails with transaction_too_old, and a retry succeeds', async () => {
    const db = new FdbSimulation({ transactionLifetimeMs: 20 });
    const tn = db.createTransaction();
    await tn.get(b('a'));
    await new Promise((resolve) => setTimeout(resolve, 60));
    const old = await expectFdbError(tn.get(b('a')), FdbErrorCode.transactionTooOld);
    await tn.onError(old);
    tn.set(b('a'), b('1'));
    await tn.commit();
    expect(await read(db, 'a')).toBe('1');
  });

  it('a transaction past its timeout fails with transaction_timed_out, which is not retryable', async () => {
    const db = new FdbSimulation();
    const tn = db.createTransaction({ timeoutMs: 10 });
    await new Promise((resolve) => setTimeout(resolve, 40));
    const timedOut = await expectFdbError(tn.get(b('a')), FdbErrorCode.transactionTimedOut);
    await expect(tn.onError(timedOut)).rejects.toBe(timedOut);
  });
});

describe('FdbSimulation: faults', () => {
  it('commit_unknown_result can leave the commit applied or not, and both are retryable', async () => {
    const db = new FdbSimulation();
    db.injectFaults('unknown-applied', 'unknown-not-applied', 'conflict');
    const applied = db.createTransaction();
    applied.set(b('a'), b('1'));
    const first = await expectFdbError(applied.commit(), FdbErrorCode.commitUnknownResult);
    expect(isMaybeCommitted(first)).toBe(true);
    expect(isRetryable(first)).toBe(true);
    expect(await read(db, 'a')).toBe('1');
    const notApplied = db.createTransaction();
    notApplied.set(b('b'), b('1'));
    await expectFdbError(notApplied.commit(), FdbErrorCode.commitUnknownResult);
    expect(await read(db, 'b')).toBeUndefined();
    const conflicted = db.createTransaction();
    conflicted.set(b('c'), b('1'));
    await expectFdbError(conflicted.commit(), FdbErrorCode.notCommitted);
    expect(await read(db, 'c')).toBeUndefined();
    await commitSet(db, 'c', '2');
    expect(await read(db, 'c')).toBe('2');
  });
});

describe('FdbSimulation: watches', () => {
  it('a watch becomes active at commit and fires after a committed change, not before', async () => {
    const db = new FdbSimulation();
    await commitSet(db, 'head', '1');
    const tn = db.createTransaction();
    expect(s(await tn.get(b('head')))).toBe('1');
    const watch = tn.watch(b('head'));
    await tn.commit();
    expect(db.activeWatches()).toBe(1);
    let fired: boolean | undefined;
    void watch.promise.then((changed) => {
      fired = changed;
    });
    const pending = db.createTransaction();
    pending.set(b('head'), b('2'));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(fired).toBeUndefined();
    await pending.commit();
    expect(await watch.promise).toBe(true);
    expect(db.activeWatches()).toBe(0);
  });

  it('writing the same value does not fire a watch; a change between the read and the commit fires it at once', async () => {
    const db = new FdbSimulation();
    await commitSet(db, 'k', 'same');
    const tn = db.createTransaction();
    await tn.get(b('k'));
    const watch = tn.watch(b('k'));
    await commitSet(db, 'k', 'changed');
    await tn.commit();
    expect(await watch.promise).toBe(true);
    const quiet = db.createTransaction();
    await quiet.get(b('k'));
    const unchanged = quiet.watch(b('k'));
    await quiet.commit();
    await commitSet(db, 'k', 'changed');
    await commitSet(db, 'other', 'x');
    expect(db.activeWatches(b('k'))).toBe(1);
    unchanged.cancel();
    expect(await unchanged.promise).toBe(false);
    expect(db.activeWatches()).toBe(0);
  });

  it('a watch of a transaction that fails to commit never becomes active', async () => {
    const db = new FdbSimulation();
    const tn = db.createTransaction();
    await tn.get(b('k'));
    tn.set(b('k'), b('mine'));
    const watch = tn.watch(b('other'));
    await commitSet(db, 'k', 'theirs');
    await expectFdbError(tn.commit(), FdbErrorCode.notCommitted);
    expect(await watch.promise).toBe(false);
    expect(db.activeWatches()).toBe(0);
  });
});

describe('FdbSimulation: ranges agree with a sorted map', () => {
  type Operation =
    | { kind: 'set'; key: string; value: string }
    | { kind: 'clear'; key: string }
    | { kind: 'clearRange'; start: string; end: string };
  const key = fc.stringMatching(/^[a-d]{1,3}$/);
  const operation: fc.Arbitrary<Operation> = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), key, value: fc.stringMatching(/^[0-9]{1,3}$/) }),
    fc.record({ kind: fc.constant('clear' as const), key }),
    fc.record({ kind: fc.constant('clearRange' as const), start: key, end: key }),
  );
  const seed = Number(process.env.WEFT_SEED ?? Date.now() % 2 ** 31);
  console.log(`simulation range model: seed ${seed} (replay with WEFT_SEED=${seed})`);
  test.prop([fc.array(fc.array(operation, { maxLength: 8 }), { maxLength: 6 }), key, key, fc.boolean(), fc.integer({ min: 1, max: 10 })], {
    seed,
    numRuns: 150,
  })('committed and uncommitted writes, read back with limits in both directions', async (transactions, start, end, reverse, limit) => {
    const db = new FdbSimulation();
    const model = new Map<string, string>();
    const apply = (target: Map<string, string>, op: Operation) => {
      if (op.kind === 'set') target.set(op.key, op.value);
      else if (op.kind === 'clear') target.delete(op.key);
      else for (const existing of [...target.keys()]) if (existing >= op.start && existing < op.end) target.delete(existing);
    };
    const run = (tn: FdbTransaction, op: Operation) => {
      if (op.kind === 'set') tn.set(b(op.key), b(op.value));
      else if (op.kind === 'clear') tn.clear(b(op.key));
      else tn.clearRange(b(op.start), b(op.end));
    };
    for (const [index, ops] of transactions.entries()) {
      const tn = db.createTransaction();
      const view = new Map(model);
      for (const op of ops) {
        run(tn, op);
        apply(view, op);
      }
      const expected = [...view].filter(([candidate]) => candidate >= start && candidate < end).sort(([a], [z]) => (a < z ? -1 : 1));
      if (reverse) expected.reverse();
      const rows = await tn.getRange(b(start), b(end), { reverse, limit });
      expect(rows.map(([k, v]) => [s(k), s(v)])).toEqual(expected.slice(0, limit));
      // Every other transaction commits; the rest are abandoned and leave no trace.
      if (index % 2 === 0) {
        await tn.commit();
        for (const op of ops) apply(model, op);
      } else tn.cancel();
    }
    const check = db.createTransaction();
    const all = await check.getRange(b(''), b('\xff'));
    expect(all.map(([k, v]) => [s(k), s(v)])).toEqual([...model].sort(([a], [z]) => (a < z ? -1 : 1)));
  });
});
