/**
 * `commit`: several writes in one atomic step. Every precondition holds or
 * nothing is written; readers and watchers never see part of a commit; a
 * commit's writes reach watchers one after another, in op order.
 */
import { type KvCommitOp, KvErrorCode, type KvStore, type Version, type WatchEvent } from '@weft/kv';
import { expect } from 'vitest';
import type { CheckContext } from '../harness.js';
import { bytes, expectKvError, text, WatchReader } from '../helpers.js';
import { check } from './contract.js';

/** The raw latest record of every key, as `op@version`, to show that a refused commit changed nothing. */
async function records(store: KvStore, keys: readonly string[]): Promise<string[]> {
  return Promise.all(
    keys.map(async (key) => {
      const record = await store.entry(key);
      return record === undefined ? `${key}: never` : `${key}: ${record.op}@${record.version}`;
    }),
  );
}

/** The operations of a watch's events that belong to keys of `prefix`, with their values. */
const labelled = (events: readonly WatchEvent[], prefix: string) =>
  events.flatMap((event) =>
    event.type !== 'synced' && event.key.startsWith(prefix)
      ? [`${event.key}=${event.type === 'put' ? text(event.value) : event.type}`]
      : [],
  );

export const commitChecks = [
  check(
    'commit',
    'a commit applies every operation in op order and returns one version per operation',
    async (context) => {
      const store = await context.open();
      const kept = await store.put('cas', bytes('old'));
      const doomed = await store.put('gone', bytes('old'));
      await store.put('tomb', bytes('old'));
      const versions = await store.commit([
        { op: 'put', key: 'plain', value: bytes('1') },
        { op: 'create', key: 'fresh', value: bytes('2') },
        { op: 'update', key: 'cas', value: bytes('3'), expected: kept },
        { op: 'deleteWithVersion', key: 'gone', expected: doomed },
        { op: 'delete', key: 'tomb' },
        { op: 'putWithTtl', key: 'leased', value: bytes('4'), ttlMs: 60_000 },
      ]);
      expect(versions).toHaveLength(6);
      for (const [index, key] of ['plain', 'fresh', 'cas', 'gone', 'tomb', 'leased'].entries()) {
        expect((await store.entry(key))?.version, `the version of ${key}`).toBe(versions[index]);
      }
      expect(text((await store.get('cas'))?.value ?? bytes(''))).toBe('3');
      expect(await store.get('gone')).toBeUndefined();
      expect((await store.entry('tomb'))?.op).toBe('delete');
      expect(text((await store.get('leased'))?.value ?? bytes(''))).toBe('4');
      expect(await store.commit([])).toEqual([]);
      // The versions a commit returns are the keys' versions: compare-and-swap takes them.
      await store.update('fresh', bytes('5'), versions[1] as Version);
    },
    ['commit'],
  ),
  check(
    'commit',
    'a commit whose precondition fails writes nothing, and its error names the first failing operation',
    async (context) => {
      const store = await context.open();
      const live = await store.put('live', bytes('v'));
      await store.put('stale', bytes('1'));
      const stale = (await store.entry('stale'))?.version as Version;
      await store.put('stale', bytes('2'));
      const keys = ['a', 'b', 'live', 'stale', 'absent'];
      const failing: Array<[string, KvCommitOp, KvErrorCode]> = [
        ['create over a live value', { op: 'create', key: 'live', value: bytes('x') }, KvErrorCode.AlreadyExists],
        ['update on a stale version', { op: 'update', key: 'stale', value: bytes('x'), expected: stale }, KvErrorCode.RevisionMismatch],
        ['update of an absent key', { op: 'update', key: 'absent', value: bytes('x'), expected: live }, KvErrorCode.RevisionMismatch],
        ['deleteWithVersion on a stale version', { op: 'deleteWithVersion', key: 'stale', expected: stale }, KvErrorCode.RevisionMismatch],
      ];
      for (const [what, op, code] of failing) {
        for (const position of ['first', 'middle', 'last'] as const) {
          const before = await records(store, keys);
          const others: KvCommitOp[] = [
            { op: 'put', key: 'a', value: bytes(`${what} ${position}`) },
            { op: 'update', key: 'live', value: bytes('y'), expected: live },
          ].filter((other) => other.key !== op.key) as KvCommitOp[];
          const ops =
            position === 'first'
              ? [op, ...others]
              : position === 'middle'
                ? [others[0] as KvCommitOp, op, ...others.slice(1)]
                : [...others, op];
          const error = await expectKvError(store.commit(ops), code, `a commit with ${what} (${position})`);
          expect(error.key, `the key named by a commit with ${what} (${position})`).toBe(op.key);
          expect(await records(store, keys), `the records after a refused commit with ${what} (${position})`).toEqual(before);
        }
      }
      // With two failing operations, the error names the first.
      const error = await expectKvError(
        store.commit([
          { op: 'put', key: 'b', value: bytes('x') },
          { op: 'update', key: 'stale', value: bytes('x'), expected: stale },
          { op: 'create', key: 'live', value: bytes('x') },
        ]),
        KvErrorCode.RevisionMismatch,
      );
      expect(error.key).toBe('stale');
      expect(await store.get('b')).toBeUndefined();
    },
    ['commit'],
  ),
  check(
    'commit',
    'limits and bad input refuse the whole commit before any write, with a typed error',
    async (context) => {
      const store = await context.open();
      const limits = store.capabilities.commit;
      if (limits === false) throw new Error('unreachable: the check requires commit');
      const probe: KvCommitOp = { op: 'put', key: 'probe', value: bytes('must not land') };
      const refused = async (ops: unknown, code: KvErrorCode, what: string) => {
        await expectKvError(store.commit(ops as KvCommitOp[]), code, what);
        expect(await store.entry('probe'), `the probe after ${what}`).toBeUndefined();
      };
      const tooMany = Array.from({ length: limits.maxOps + 1 }, (_, index) => ({ op: 'put', key: `many.${index}`, value: bytes('x') }));
      await refused([probe, ...tooMany.slice(1)], KvErrorCode.Unsupported, `a commit of ${limits.maxOps + 1} operations`);
      const largest = store.capabilities.maxValueBytes;
      if (largest > 0 && Math.ceil((limits.maxBytes + 1) / largest) < limits.maxOps) {
        // One buffer for every operation: the limit is on the bytes a commit carries, not on memory here.
        const big = new Uint8Array(largest);
        const count = Math.floor(limits.maxBytes / largest) + 1;
        const ops = Array.from({ length: count }, (_, index) => ({ op: 'put', key: `big.${index}`, value: big }));
        await refused([probe, ...ops], KvErrorCode.ValueTooLarge, `a commit of ${count * largest} value bytes`);
      }
      await refused(
        [probe, { op: 'put', key: 'over', value: new Uint8Array(largest + 1) }],
        KvErrorCode.ValueTooLarge,
        'one value too large',
      );
      await refused([probe, { op: 'put', key: 'a..b', value: bytes('x') }], KvErrorCode.InvalidKey, 'an invalid key');
      await refused([probe, { op: 'put', key: 'probe', value: bytes('again') }], KvErrorCode.InvalidArgument, 'a key twice');
      await refused([probe, { op: 'purge', key: 'p' }], KvErrorCode.InvalidArgument, 'an op a commit does not take');
      await refused([probe, { op: 'put', key: 'p', value: 'text' }], KvErrorCode.InvalidArgument, 'a value that is not bytes');
      await refused([probe, { op: 'putWithTtl', key: 'p', value: bytes('x'), ttlMs: -1 }], KvErrorCode.InvalidArgument, 'a bad TTL');
      await refused(
        [probe, { op: 'update', key: 'p', value: bytes('x'), expected: 'not a version' }],
        KvErrorCode.InvalidArgument,
        'a bad version',
      );
      await refused([probe, null], KvErrorCode.InvalidArgument, 'an operation that is not an object');
      await refused({ length: 1, 0: probe }, KvErrorCode.InvalidArgument, 'operations that are not an array');
    },
    ['commit'],
  ),
  check(
    'commit',
    'concurrent readers never see part of a commit',
    async (context) => {
      const writer = await context.open();
      const reader = await context.open();
      const rounds = context.harness.clock === undefined ? 150 : 50;
      let done = false;
      let stop = false;
      const writing = (async () => {
        try {
          for (let round = 1; round <= rounds && !stop; round++) {
            await writer.commit([
              { op: 'put', key: 'pair.a', value: bytes(String(round)) },
              { op: 'put', key: 'pair.b', value: bytes(String(round)) },
            ]);
          }
        } finally {
          done = true;
        }
      })();
      const read = async (key: string) => Number(text((await reader.get(key))?.value ?? bytes('0')));
      let reads = 0;
      try {
        while (!done || reads === 0) {
          // Both keys change in one step: whichever is read first, the second cannot be older.
          const a = await read('pair.a');
          const b = await read('pair.b');
          expect(b, `pair.b read after pair.a was ${a}`).toBeGreaterThanOrEqual(a);
          const b2 = await read('pair.b');
          const a2 = await read('pair.a');
          expect(a2, `pair.a read after pair.b was ${b2}`).toBeGreaterThanOrEqual(b2);
          reads++;
        }
      } catch (error) {
        // The writer stops before the handles close, so a failing read leaves no commit behind it.
        stop = true;
        await writing.catch(() => undefined);
        throw error;
      }
      await writing;
      expect(await read('pair.a')).toBe(rounds);
      expect(await read('pair.b')).toBe(rounds);
    },
    ['commit'],
  ),
  check(
    'commit',
    "watchers receive a commit's writes one after another, in op order, and a state-sync listing never shows part of one",
    async (context) => {
      const store = await context.open();
      const other = await context.open();
      const watch = new WatchReader(store, {});
      await watch.untilSynced();
      const count = 40;
      const listings: WatchEvent[][] = [];
      const commits = async (handle: KvStore, name: string) => {
        for (let round = 1; round <= count; round++) {
          await handle.commit([
            { op: 'put', key: `${name}.x`, value: bytes(String(round)) },
            { op: 'put', key: `${name}.y`, value: bytes(String(round)) },
            { op: 'put', key: `${name}.z`, value: bytes(String(round)) },
          ]);
          if (round % 10 === 0) {
            // A state-sync watch starting while commits run.
            const late = new WatchReader(handle, { prefixes: [name] });
            listings.push(await late.untilSynced());
            await late.stop();
          }
        }
      };
      await Promise.all([commits(store, 'one'), commits(other, 'two')]);
      const last = (name: string) =>
        watch.events.some((event) => event.type === 'put' && event.key === `${name}.z` && text(event.value) === String(count));
      await watch.until(() => last('one') && last('two'));
      // Every round's last commit arrives (a backend keeping one version per key may skip writes whose keys were
      // written again; here every commit writes all three keys); each commit's writes arrive together, in op order.
      const puts = watch.events.flatMap((event) => (event.type === 'put' ? [`${event.key}=${text(event.value)}`] : []));
      for (const [index, put] of puts.entries()) {
        const [key, round] = put.split('=') as [string, string];
        const name = key.slice(0, key.indexOf('.'));
        const at = key.endsWith('.x') ? 0 : key.endsWith('.y') ? 1 : 2;
        const group = puts.slice(index - at, index - at + 3);
        expect(group, `the writes around ${put}: one commit's three, in op order`).toEqual([
          `${name}.x=${round}`,
          `${name}.y=${round}`,
          `${name}.z=${round}`,
        ]);
      }
      for (const name of ['one', 'two']) {
        const rounds = puts.filter((put) => put.startsWith(`${name}.x=`)).map((put) => Number(put.split('=')[1]));
        expect(rounds, `the rounds of ${name} the watch received, in order`).toEqual([...rounds].sort((a, b) => a - b));
      }
      for (const listing of listings) {
        const values = new Set(listing.flatMap((event) => (event.type === 'put' ? [text(event.value)] : [])));
        expect(values.size, `the values of one commit's keys in a state-sync listing: ${[...values].join(', ')}`).toBe(1);
      }
      await watch.stop();
    },
    ['commit'],
  ),
  check(
    'commit',
    'a watch resumed from a cursor inside a commit delivers the rest of it',
    async (context) => {
      const store = await context.open();
      const watch = new WatchReader(store, { prefixes: ['c'] });
      await watch.untilSynced();
      await store.commit([
        { op: 'put', key: 'c.1', value: bytes('1') },
        { op: 'put', key: 'c.2', value: bytes('2') },
        { op: 'delete', key: 'c.3' },
      ]);
      const [first] = await watch.until((event) => event.type === 'put' && event.key === 'c.1');
      await watch.stop();
      const resumed = new WatchReader(store, { prefixes: ['c'], from: (first as WatchEvent).cursor });
      const events = await resumed.untilSynced();
      expect(labelled(events, 'c.')).toEqual(['c.2=2', 'c.3=delete']);
      await resumed.stop();
    },
    ['commit'],
  ),
  check(
    'commit',
    'the capability tells where commit works: limits of positive whole numbers, or false and every commit refused up front with Unsupported',
    async (context: CheckContext) => {
      const store = await context.open();
      const limits = store.capabilities.commit;
      if (limits === false) {
        await expectKvError(store.commit([{ op: 'put', key: 'probe', value: bytes('x') }]), KvErrorCode.Unsupported);
        await expectKvError(store.commit([]), KvErrorCode.Unsupported, 'an empty commit');
        expect(await store.entry('probe')).toBeUndefined();
        return;
      }
      expect(Number.isInteger(limits.maxOps) && limits.maxOps > 0, `maxOps ${limits.maxOps}`).toBe(true);
      expect(Number.isInteger(limits.maxBytes) && limits.maxBytes >= store.capabilities.maxValueBytes, `maxBytes ${limits.maxBytes}`).toBe(
        true,
      );
    },
  ),
];
