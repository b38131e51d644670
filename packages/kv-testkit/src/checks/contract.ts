import { type KvError, KvErrorCode, type KvStore, maxGetManyKeys, type Version, type WatchCursor } from '@weft/kv';
import { expect } from 'vitest';
import type { CheckContext, ConformanceCheck, Requirement } from '../harness.js';
import { bytes, drain, eventually, expectKvError, readState, sleep, text, WatchReader } from '../helpers.js';

/** Builds a check; exported checks are plain data so they can run outside vitest too. */
export function check(
  group: string,
  name: string,
  run: (context: CheckContext) => Promise<void>,
  requires?: Requirement[],
): ConformanceCheck {
  return requires === undefined ? { group, name, run } : { group, name, run, requires };
}

/** Keys every backend must refuse, one per rule. */
export const invalidKeys: ReadonlyArray<readonly [string, unknown]> = [
  ['empty', ''],
  ['leading dot', '.a'],
  ['trailing dot', 'a.'],
  ['empty token', 'a..b'],
  ['lone dot', '.'],
  ['space', 'a b'],
  ['NATS wildcard *', 'a.*'],
  ['NATS wildcard >', 'a.>'],
  ['non-ASCII', 'caf\u00e9'],
  ['control character', 'a\nb'],
  ['colon', 'a:b'],
  ['too long (1025 bytes)', 'k'.repeat(1025)],
  ['not a string', 42],
  ['undefined', undefined],
];

/** Every operation that takes a key, called with `key`. */

export function keyedOperations(store: KvStore, key: string, version: Version): Array<[string, () => Promise<unknown>]> {
  const value = bytes('x');
  return [
    ['get', () => store.get(key)],
    ['getMany', () => store.getMany(['fine', key])],
    ['entry', () => store.entry(key)],
    ['put', () => store.put(key, value)],
    ['create', () => store.create(key, value)],
    ['update', () => store.update(key, value, version)],
    ['delete', () => store.delete(key)],
    ['deleteWithVersion', () => store.deleteWithVersion(key, version)],
    ['putWithTtl', () => store.putWithTtl(key, value, 60_000)],
    ['purge', () => store.purge(key)],
    ['keys', () => drain(store.keys(key))],
    ['scan', () => drain(store.scan(key))],
    [
      'watch',
      async () =>
        store
          .watch({ prefixes: [key] })
          [Symbol.asyncIterator]()
          .next(),
    ],
  ];
}

export async function waitForExpiry(context: CheckContext, ttlMs: number): Promise<void> {
  const clock = context.harness.clock;
  if (clock !== undefined) clock.advance(ttlMs);
  else await sleep(ttlMs + 5);
}

const expireDelay = (context: CheckContext) => context.harness.expireDelayMs ?? 5000;

export const contractChecks: ConformanceCheck[] = [
  // ---------------------------------------------------------------- keys
  check('keys', 'every invalid key is refused with InvalidKey before any I/O, by every operation', async (context) => {
    const store = await context.open();
    const version = await store.put('keep', bytes('kept'));
    for (const [rule, key] of invalidKeys) {
      for (const [operation, call] of keyedOperations(store, key as string, version)) {
        // An omitted prefix means the whole bucket, so undefined is a valid prefix for keys and scan.
        if (key === undefined && (operation === 'keys' || operation === 'scan')) continue;
        await expectKvError(call, KvErrorCode.InvalidKey, `${operation} with a key that is ${rule}`);
      }
    }
    expect(text((await store.get('keep'))?.value ?? bytes('lost'))).toBe('kept');
    expect(await drain(store.keys())).toEqual(['keep']);
  }),
  check('keys', 'the whole token alphabet and a 1024-byte key round-trip', async (context) => {
    const store = await context.open();
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ.abcdefghijklmnopqrstuvwxyz.0123456789.under_score.eq=ual.sl/ash.da-sh';
    const longest = `long.${'x'.repeat(1024 - 5)}`;
    for (const key of [alphabet, longest, 'a', '-', '_', '=', '/']) {
      const version = await store.put(key, bytes(key.slice(0, 8)));
      expect((await store.get(key))?.version).toBe(version);
    }
    expect((await drain(store.keys())).sort()).toEqual([alphabet, longest, 'a', '-', '_', '=', '/'].sort());
  }),
  check('keys', 'a prefix matches whole tokens: a.b matches a.b and a.b.c, never a.bc', async (context) => {
    const store = await context.open();
    for (const key of ['a', 'a.b', 'a.b.c', 'a.b.c.d', 'a.bc', 'a.bc.d', 'ab', 'b.a.b']) await store.put(key, bytes(key));
    expect((await drain(store.keys('a.b'))).sort()).toEqual(['a.b', 'a.b.c', 'a.b.c.d']);
    expect((await drain(store.scan('a.b.c'))).map((entry) => entry.key).sort()).toEqual(['a.b.c', 'a.b.c.d']);
    expect((await drain(store.keys('a'))).sort()).toEqual(['a', 'a.b', 'a.b.c', 'a.b.c.d', 'a.bc', 'a.bc.d']);
    expect(await drain(store.keys('a.b.c.d.e'))).toEqual([]);
  }),

  // -------------------------------------------------------------- values
  check('values', 'values round-trip byte for byte: empty, every byte value, and the largest allowed size', async (context) => {
    const store = await context.open();
    const everyByte = Uint8Array.from({ length: 256 }, (_, index) => index);
    const largest = new Uint8Array(Math.min(store.capabilities.maxValueBytes, 1024 * 1024));
    for (let index = 0; index < largest.length; index++) largest[index] = (index * 31 + 7) & 0xff;
    for (const [key, value] of [
      ['empty', new Uint8Array(0)],
      ['every-byte', everyByte],
      ['largest', largest],
    ] as const) {
      await store.put(key, value);
      const read = await store.get(key);
      expect(read?.value.byteLength, key).toBe(value.byteLength);
      expect(Buffer.from(read?.value ?? []).equals(Buffer.from(value)), key).toBe(true);
    }
  }),
  check('values', 'a value over maxValueBytes throws ValueTooLarge and writes nothing', async (context) => {
    const store = await context.open();
    const version = await store.put('big', bytes('small'));
    const oversize = new Uint8Array(store.capabilities.maxValueBytes + 1);
    await expectKvError(store.put('big', oversize), KvErrorCode.ValueTooLarge);
    await expectKvError(store.update('big', oversize, version), KvErrorCode.ValueTooLarge);
    await expectKvError(store.create('new', oversize), KvErrorCode.ValueTooLarge);
    if (store.capabilities.ttl) await expectKvError(store.putWithTtl('big', oversize, 60_000), KvErrorCode.ValueTooLarge);
    const read = await store.get('big');
    expect(read?.version).toBe(version);
    expect(text(read?.value ?? bytes(''))).toBe('small');
    expect(await store.get('new')).toBeUndefined();
  }),
  check('values', 'changing a buffer after writing or reading it does not change the stored value', async (context) => {
    const store = await context.open();
    const written = bytes('original');
    await store.put('k', written);
    written.fill(0);
    const read = await store.get('k');
    expect(text(read?.value ?? bytes(''))).toBe('original');
    read?.value.fill(0);
    expect(text((await store.get('k'))?.value ?? bytes(''))).toBe('original');
  }),

  // ------------------------------------------------------------ versions
  check('versions', 'every write gives the key a new version, and get reports the latest', async (context) => {
    const store = await context.open();
    const seen = new Set<string>();
    const first = await store.create('k', bytes('1'));
    seen.add(first);
    const second = await store.put('k', bytes('2'));
    const third = await store.update('k', bytes('3'), second);
    const tombstone = await store.delete('k');
    const recreated = await store.create('k', bytes('4'));
    for (const version of [second, third, tombstone, recreated]) {
      expect(seen.has(version), `version ${version} was already used for this key`).toBe(false);
      seen.add(version);
    }
    expect((await store.get('k'))?.version).toBe(recreated);
    for (const version of seen) expect(typeof version).toBe('string');
  }),

  // --------------------------------------------------------------- reads
  check('reads', 'get returns undefined for absent, deleted and purged keys', async (context) => {
    const store = await context.open();
    expect(await store.get('never')).toBeUndefined();
    await store.put('deleted', bytes('x'));
    await store.delete('deleted');
    expect(await store.get('deleted')).toBeUndefined();
    if (store.capabilities.purge) {
      await store.put('purged', bytes('x'));
      await store.purge('purged');
      expect(await store.get('purged')).toBeUndefined();
    }
  }),
  check(
    'reads',
    "getMany gives, in the keys' order, what get gives for each: live, absent, deleted, purged, expired and repeated keys, another handle's latest write, and more keys than one request of a batching backend reads",
    async (context) => {
      const store = await context.open();
      const other = await context.open();
      const clock = context.harness.clock;
      const keys: string[] = [];
      for (let index = 0; index < 300; index++) {
        const key = `many.k${index}`;
        keys.push(key);
        if (index % 3 !== 2) await (index % 2 === 0 ? store : other).put(key, bytes(`v${index}`));
      }
      await store.put('many.deleted', bytes('x'));
      await store.delete('many.deleted');
      if (store.capabilities.purge) {
        await store.put('many.purged', bytes('x'));
        await store.purge('many.purged');
      }
      await other.put('many.k0', bytes('newest'));
      if (store.capabilities.ttl) {
        await store.putWithTtl('many.expired', bytes('gone'), clock === undefined ? 50 : 1000);
        if (clock !== undefined) clock.advance(1000);
        await eventually(async () => (await store.get('many.expired')) === undefined, 'the TTL to pass');
      }
      const asked = ['many.never', ...keys, 'many.deleted', 'many.purged', 'many.expired', 'many.k1', 'many.k0', 'many.never'];
      const expected = await Promise.all(asked.map((key) => store.get(key)));
      for (const reader of [store, other]) {
        const got = await reader.getMany(asked);
        expect(got.length).toBe(asked.length);
        for (const [index, key] of asked.entries()) {
          const want = expected[index];
          const have = got[index];
          expect(have === undefined ? undefined : { key: have.key, value: text(have.value), version: have.version }, key).toEqual(
            want === undefined ? undefined : { key: want.key, value: text(want.value), version: want.version },
          );
        }
      }
      expect(text((await store.getMany(['many.k0']))[0]?.value ?? bytes(''))).toBe('newest');
      expect(await store.getMany([])).toEqual([]);
    },
  ),
  check('reads', 'getMany refuses what is not an array of keys, or more than maxGetManyKeys, with InvalidArgument', async (context) => {
    const store = await context.open();
    await expectKvError(() => store.getMany('many.k0' as unknown as string[]), KvErrorCode.InvalidArgument, 'getMany of a string');
    await expectKvError(
      () => store.getMany(Array.from({ length: maxGetManyKeys + 1 }, (_, index) => `k${index}`)),
      KvErrorCode.InvalidArgument,
      'getMany of too many keys',
    );
  }),
  check('reads', 'entry returns the raw latest record, tombstones included', async (context) => {
    const store = await context.open();
    expect(await store.entry('never')).toBeUndefined();
    const putVersion = await store.put('k', bytes('v'));
    const live = await store.entry('k');
    expect(live?.op).toBe('put');
    expect(live?.version).toBe(putVersion);
    expect(live?.op === 'put' ? text(live.value) : undefined).toBe('v');
    const deleteVersion = await store.delete('k');
    expect(await store.entry('k')).toEqual({ key: 'k', op: 'delete', version: deleteVersion });
    if (store.capabilities.purge) {
      await store.put('p', bytes('v'));
      const purgeVersion = await store.purge('p');
      expect(await store.entry('p')).toEqual({ key: 'p', op: 'purge', version: purgeVersion });
    }
  }),
  check('reads', 'keys and scan stream every live key and no tombstone, across pages', async (context) => {
    const store = await context.open();
    const expected = new Map<string, string>();
    for (let index = 0; index < 600; index++) {
      const key = `item.${String(index).padStart(4, '0')}`;
      await store.put(key, bytes(`v${index}`));
      expected.set(key, `v${index}`);
    }
    for (let index = 0; index < 600; index += 7) {
      const key = `item.${String(index).padStart(4, '0')}`;
      await store.delete(key);
      expected.delete(key);
    }
    const keys = await drain(store.keys('item'));
    expect(keys.length).toBe(expected.size);
    expect(new Set(keys)).toEqual(new Set(expected.keys()));
    expect(await readState(store, 'item')).toEqual(expected);
    const iterable = store.keys();
    expect(Array.isArray(iterable)).toBe(false);
  }),

  check('reads', 'keys and scan finish while other clients keep writing, and list every key that stayed', async (context) => {
    const store = await context.open();
    const writers = await Promise.all([context.open(), context.open(), context.open(), context.open()]);
    for (let index = 0; index < 50; index++) await store.put(`stable.${index}`, bytes('s'));
    let writing = true;
    // Several clients keep the bucket busy, so a listing that waits for a quiet moment never ends.
    const busy = Promise.all(
      writers.map(async (writer, index) => {
        for (let round = 0; writing && round < 10_000; round++) await writer.put(`churn.${index}.${round % 5}`, bytes(String(round)));
      }),
    );
    try {
      for (let pass = 0; pass < 3; pass++) {
        const keys = await drain(store.keys('stable'));
        expect(keys.length).toBe(50);
        const all = await drain(store.scan());
        expect(all.filter((entry) => entry.key.startsWith('stable.')).length).toBe(50);
      }
    } finally {
      writing = false;
      await busy;
    }
  }),

  // -------------------------------------------------------------- writes
  check('writes', 'create fails with AlreadyExists on a live value and succeeds over a tombstone', async (context) => {
    const store = await context.open();
    const first = await store.create('k', bytes('1'));
    const error = await expectKvError(store.create('k', bytes('2')), KvErrorCode.AlreadyExists);
    expect(error.key).toBe('k');
    expect((await store.get('k'))?.version).toBe(first);
    await store.delete('k');
    const again = await store.create('k', bytes('3'));
    expect(text((await store.get('k'))?.value ?? bytes(''))).toBe('3');
    expect((await store.get('k'))?.version).toBe(again);
  }),
  check('writes', 'update succeeds only on the current version; absent and deleted count as different', async (context) => {
    const store = await context.open();
    const first = await store.put('k', bytes('1'));
    const second = await store.update('k', bytes('2'), first);
    await expectKvError(store.update('k', bytes('stale'), first), KvErrorCode.RevisionMismatch);
    expect(text((await store.get('k'))?.value ?? bytes(''))).toBe('2');
    const tombstone = await store.delete('k');
    await expectKvError(store.update('k', bytes('x'), second), KvErrorCode.RevisionMismatch);
    await expectKvError(store.update('k', bytes('x'), tombstone), KvErrorCode.RevisionMismatch);
    await expectKvError(store.update('absent', bytes('x'), second), KvErrorCode.RevisionMismatch);
    expect(await store.get('k')).toBeUndefined();
    expect(await store.get('absent')).toBeUndefined();
  }),
  check(
    'writes',
    'a refused compare-and-swap names the key, the version expected and the version found, in the same words on every backend',
    async (context) => {
      const store = await context.open();
      const first = await store.put('k', bytes('1'));
      const second = await store.put('k', bytes('2'));
      const suffix = (error: KvError) => error.message.slice(error.message.indexOf(`key 'k': `) + `key 'k': `.length);
      const stale = await expectKvError(store.update('k', bytes('x'), first), KvErrorCode.RevisionMismatch);
      expect(stale.message).toContain(`key 'k': `);
      expect(suffix(stale)).toBe(`expected version ${first}, found version ${second}`);
      const staleDelete = await expectKvError(store.deleteWithVersion('k', first), KvErrorCode.RevisionMismatch);
      expect(suffix(staleDelete)).toBe(`expected version ${first}, found version ${second}`);
      const exists = await expectKvError(store.create('k', bytes('x')), KvErrorCode.AlreadyExists);
      expect(suffix(exists)).toBe(`a live value already exists (version ${second})`);
      const tombstone = await store.delete('k');
      const gone = await expectKvError(store.update('k', bytes('x'), second), KvErrorCode.RevisionMismatch);
      expect(suffix(gone)).toBe(`expected version ${second}, found no live value`);
      const onTombstone = await expectKvError(store.update('k', bytes('x'), tombstone), KvErrorCode.RevisionMismatch);
      expect(suffix(onTombstone)).toBe(`expected version ${tombstone}, found no live value`);
    },
  ),
  check('writes', 'delete writes a tombstone; deleteWithVersion deletes only on a matching version', async (context) => {
    const store = await context.open();
    const first = await store.put('k', bytes('1'));
    const second = await store.put('k', bytes('2'));
    await expectKvError(store.deleteWithVersion('k', first), KvErrorCode.RevisionMismatch);
    expect(text((await store.get('k'))?.value ?? bytes(''))).toBe('2');
    const tombstone = await store.deleteWithVersion('k', second);
    expect(await store.get('k')).toBeUndefined();
    expect((await store.entry('k'))?.version).toBe(tombstone);
    await expectKvError(store.deleteWithVersion('k', tombstone), KvErrorCode.RevisionMismatch);
    await expectKvError(store.deleteWithVersion('never', second), KvErrorCode.RevisionMismatch);
    const blind = await store.delete('never');
    expect(await store.entry('never')).toEqual({ key: 'never', op: 'delete', version: blind });
  }),

  // ----------------------------------------------------------------- ttl
  check(
    'ttl',
    'the server never holds a TTL shorter than the one given (rounding to its resolution goes up)',
    async (context) => {
      const store = await context.open();
      const hook = context.harness.ttlHeld as NonNullable<typeof context.harness.ttlHeld>;
      for (const ttl of [1, 999, 1000, 1001, 1500, 2999, 61_000]) {
        const key = `held.${ttl}`;
        await store.putWithTtl(key, bytes('x'), ttl);
        const held = await hook(context.bucket, key);
        // undefined: this bucket's TTLs are the client's own (an emulation), exact to the millisecond.
        if (held !== undefined) expect(held, `the TTL the server holds for a putWithTtl of ${ttl} ms`).toBeGreaterThanOrEqual(ttl);
      }
    },
    ['ttl', 'ttlHeld'],
  ),
  check(
    'ttl',
    'an entry with a TTL is visible until the TTL passes and never after',
    async (context) => {
      const store = await context.open();
      const clock = context.harness.clock;
      await store.putWithTtl('long', bytes('stays'), 60_000);
      expect(text((await store.get('long'))?.value ?? bytes(''))).toBe('stays');
      const ttl = clock === undefined ? 400 : 1000;
      await store.putWithTtl('short', bytes('goes'), ttl);
      if (clock !== undefined) {
        clock.advance(ttl - 1);
        expect(text((await store.get('short'))?.value ?? bytes(''))).toBe('goes');
        clock.advance(1);
      } else {
        await sleep(ttl + 5);
      }
      // Every read that starts after the TTL has passed must miss, from any handle, before or after the sweep.
      const other = await context.open();
      const deadline = Date.now() + expireDelay(context) + 500;
      do {
        expect(await store.get('short')).toBeUndefined();
        expect(await other.get('short')).toBeUndefined();
        expect(await store.entry('short')).toBeUndefined();
        expect(await drain(store.keys())).toEqual(['long']);
        if (clock !== undefined) break;
        await sleep(50);
      } while (Date.now() < deadline);
    },
    ['ttl'],
  ),
  check(
    'ttl',
    'an expiry shows up in watches as an expire event',
    async (context) => {
      const store = await context.open();
      await store.put('other', bytes('x'));
      const watch = new WatchReader(store, {});
      await watch.untilSynced();
      const ttl = context.harness.clock === undefined ? 300 : 1000;
      await store.putWithTtl('k', bytes('v'), ttl);
      await watch.until((event) => event.type === 'put' && event.key === 'k');
      await waitForExpiry(context, ttl);
      const events = await watch.until((event) => event.type !== 'synced' && event.key === 'k', expireDelay(context) + 10_000);
      expect(events.at(-1)?.type).toBe('expire');
      expect(await store.get('k')).toBeUndefined();
      await watch.stop();
    },
    ['ttl'],
  ),
  check(
    'ttl',
    'a plain put clears the TTL; create over an expired entry succeeds and its old version is stale',
    async (context) => {
      const store = await context.open();
      const ttl = context.harness.clock === undefined ? 300 : 1000;
      await store.putWithTtl('cleared', bytes('1'), ttl);
      await store.put('cleared', bytes('2'));
      const expiring = await store.putWithTtl('expiring', bytes('1'), ttl);
      await waitForExpiry(context, ttl);
      if (context.harness.clock === undefined) await sleep(Math.min(expireDelay(context), 2000));
      expect(text((await store.get('cleared'))?.value ?? bytes(''))).toBe('2');
      expect(await store.get('expiring')).toBeUndefined();
      await expectKvError(store.update('expiring', bytes('x'), expiring), KvErrorCode.RevisionMismatch);
      await store.create('expiring', bytes('again'));
      expect(text((await store.get('expiring'))?.value ?? bytes(''))).toBe('again');
    },
    ['ttl'],
  ),
  check(
    'ttl',
    'a delete or purge before the TTL passes ends the TTL: no expire event follows and the tombstone stays',
    async (context) => {
      const store = await context.open();
      const watch = new WatchReader(store, {});
      await watch.untilSynced();
      const ttl = context.harness.clock === undefined ? 300 : 1000;
      await store.putWithTtl('deleted', bytes('1'), ttl);
      await store.putWithTtl('purged', bytes('1'), ttl);
      await store.delete('deleted');
      await store.purge('purged');
      // The witness expires no earlier than the two would have: once its expire event is seen, theirs would have come.
      await store.putWithTtl('witness', bytes('1'), ttl);
      await waitForExpiry(context, ttl);
      await watch.until((event) => event.type === 'expire' && event.key === 'witness', expireDelay(context) + 10_000);
      await store.put('after', bytes('a'));
      await watch.until((event) => event.type === 'put' && event.key === 'after');
      const late = watch.events.filter((event) => event.type === 'expire' && event.key !== 'witness');
      expect(late, 'expire events of keys deleted or purged before their TTL passed').toEqual([]);
      expect((await store.entry('deleted'))?.op).toBe('delete');
      expect((await store.entry('purged'))?.op).toBe('purge');
      await watch.stop();
    },
    ['ttl'],
  ),

  // --------------------------------------------------------------- purge
  check(
    'purge',
    'purge deletes the key and watchers see a purge event',
    async (context) => {
      const store = await context.open();
      await store.put('k', bytes('1'));
      const watch = new WatchReader(store, { prefixes: ['k'] });
      await watch.untilSynced();
      await store.purge('k');
      const events = await watch.until((event) => event.type !== 'synced');
      expect(events.at(-1)?.type).toBe('purge');
      expect(await store.get('k')).toBeUndefined();
      expect(await drain(store.keys())).toEqual([]);
      await watch.stop();
    },
    ['purge'],
  ),
  check(
    'purge',
    'purge reclaims history: a watch resumed from before it sees the purge, not the purged values',
    async (context) => {
      const store = await context.open();
      await store.put('marker', bytes('m'));
      const start = new WatchReader(store, {});
      const [first] = await start.untilSynced();
      await start.stop();
      const from = first?.cursor as WatchCursor;
      for (let index = 0; index < 5; index++) await store.put('k', bytes(`secret-${index}`));
      await store.purge('k');
      await store.put('after', bytes('a'));
      const resumed = new WatchReader(store, { from });
      const events = await resumed.until((event) => event.type === 'put' && event.key === 'after');
      const forKey = events.filter((event) => event.type !== 'synced' && event.key === 'k');
      expect(forKey.map((event) => event.type)).toEqual(['purge']);
      await resumed.stop();
    },
    ['purge'],
  ),

  // ----------------------------------------------------------------- cas
  check('cas', 'concurrent updates from one version: exactly one wins, the rest get RevisionMismatch', async (context) => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => context.open()));
    const [first] = clients as [KvStore];
    for (let round = 0; round < 5; round++) {
      const base = await first.put('counter', bytes(`base-${round}`));
      const outcomes = await Promise.allSettled(clients.map((client, index) => client.update('counter', bytes(`writer-${index}`), base)));
      const winners = outcomes.flatMap((outcome, index) => (outcome.status === 'fulfilled' ? [{ index, version: outcome.value }] : []));
      expect(winners.length, `round ${round}`).toBe(1);
      for (const outcome of outcomes) {
        if (outcome.status === 'rejected') expect((outcome.reason as { code?: string }).code).toBe(KvErrorCode.RevisionMismatch);
      }
      const read = await first.get('counter');
      expect(read?.version).toBe(winners[0]?.version);
      expect(text(read?.value ?? bytes(''))).toBe(`writer-${winners[0]?.index}`);
    }
  }),
  check('cas', 'concurrent creates of one key: exactly one wins, the rest get AlreadyExists', async (context) => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => context.open()));
    const outcomes = await Promise.allSettled(clients.map((client, index) => client.create('lock', bytes(`owner-${index}`))));
    const winners = outcomes.filter((outcome) => outcome.status === 'fulfilled');
    expect(winners.length).toBe(1);
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') expect((outcome.reason as { code?: string }).code).toBe(KvErrorCode.AlreadyExists);
    }
  }),
  check('cas', 'concurrent increments through update never lose a write', async (context) => {
    const clients = await Promise.all(Array.from({ length: 4 }, () => context.open()));
    const [first] = clients as [KvStore];
    await first.put('n', bytes('0'));
    const perClient = 10;
    await Promise.all(
      clients.map(async (client) => {
        for (let done = 0; done < perClient; ) {
          const current = await client.get('n');
          if (current === undefined) throw new Error('counter vanished');
          try {
            await client.update('n', bytes(String(Number(text(current.value)) + 1)), current.version);
            done++;
          } catch (error) {
            if ((error as { code?: string }).code !== KvErrorCode.RevisionMismatch) throw error;
          }
        }
      }),
    );
    expect(text((await first.get('n'))?.value ?? bytes(''))).toBe(String(clients.length * perClient));
  }),
];
