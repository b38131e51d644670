import { KvErrorCode, type Version, type WatchCursor } from '@weft/kv';
import { expect } from 'vitest';
import type { ConformanceCheck } from '../harness.js';
import { bytes, drain, expectKvError, text } from '../helpers.js';
import { check, keyedOperations } from './contract.js';

/** Malformed arguments, the closed state and capabilities: typed errors, and nothing stored changes. */
export const badInputChecks: ConformanceCheck[] = [
  // ----------------------------------------------------------- bad input
  check('bad input', 'malformed versions give InvalidArgument, foreign ones RevisionMismatch; nothing stored changes', async (context) => {
    const store = await context.open();
    const version = await store.put('k', bytes('kept'));
    for (const malformed of ['', ' ', 'not a version', '\u0000', 'x'.repeat(5000), 42, undefined, null]) {
      const code = KvErrorCode.InvalidArgument;
      await expectKvError(store.update('k', bytes('x'), malformed as unknown as Version), code);
      await expectKvError(store.deleteWithVersion('k', malformed as unknown as Version), code);
    }
    const other = await store.put('other', bytes('o'));
    await expectKvError(store.update('k', bytes('x'), other), KvErrorCode.RevisionMismatch);
    const read = await store.get('k');
    expect(read?.version).toBe(version);
    expect(text(read?.value ?? bytes(''))).toBe('kept');
  }),
  check('bad input', 'malformed cursors and prefixes are refused with typed errors', async (context) => {
    const store = await context.open();
    await store.put('k', bytes('v'));
    for (const malformed of ['', 'garbage', '\u0000', 'x'.repeat(5000), 42, null]) {
      await expectKvError(async () => {
        const iterator = store.watch({ from: malformed as unknown as WatchCursor })[Symbol.asyncIterator]();
        try {
          await iterator.next();
        } finally {
          await iterator.return?.();
        }
      }, KvErrorCode.InvalidArgument);
    }
    await expectKvError(async () => store.watch({ prefixes: [] })[Symbol.asyncIterator]().next(), KvErrorCode.InvalidKey);
    await expectKvError(
      async () =>
        store
          .watch({ prefixes: ['ok', 'bad..prefix'] })
          [Symbol.asyncIterator]()
          .next(),
      KvErrorCode.InvalidKey,
    );
    expect(() => store.compareCursors('garbage' as WatchCursor, 'garbage' as WatchCursor)).toThrow();
    expect(text((await store.get('k'))?.value ?? bytes(''))).toBe('v');
  }),
  check(
    'bad input',
    'a bucket name that breaks the rules (characters, more than 128 of them) gives InvalidArgument at open',
    async (context) => {
      for (const bucket of ['x'.repeat(129), 'has space', 'dot.ted', '']) {
        await expectKvError(context.harness.open(bucket), KvErrorCode.InvalidArgument);
      }
    },
  ),

  check('bad input', 'non-binary values and bad TTLs give InvalidArgument and write nothing', async (context) => {
    const store = await context.open();
    await store.put('k', bytes('kept'));
    for (const value of ['text', 42, null, undefined, [1, 2, 3], { length: 1 }]) {
      await expectKvError(store.put('k', value as unknown as Uint8Array), KvErrorCode.InvalidArgument);
      await expectKvError(store.create('new', value as unknown as Uint8Array), KvErrorCode.InvalidArgument);
    }
    if (store.capabilities.ttl) {
      // Past 100 years is refused alike on every backend (NATS could not carry it).
      for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '100', 1e15]) {
        await expectKvError(store.putWithTtl('k', bytes('x'), ttl as number), KvErrorCode.InvalidArgument);
      }
    } else {
      await expectKvError(store.putWithTtl('k', bytes('x'), 1000), KvErrorCode.Unsupported);
    }
    if (!store.capabilities.purge) await expectKvError(store.purge('k'), KvErrorCode.Unsupported);
    expect(text((await store.get('k'))?.value ?? bytes(''))).toBe('kept');
    expect(await store.get('new')).toBeUndefined();
  }),
  check('bad input', 'after close every operation throws Closed, and the data stays for other clients', async (context) => {
    const store = await context.open();
    const other = await context.open();
    const version = await store.put('k', bytes('kept'));
    await store.close();
    await store.close();
    for (const [operation, call] of keyedOperations(store, 'k', version)) await expectKvError(call, KvErrorCode.Closed, operation);
    const read = await other.get('k');
    expect(read?.version).toBe(version);
    expect(text(read?.value ?? bytes(''))).toBe('kept');
  }),

  check('bad input', 'a listing in progress when its handle closes ends with Closed at its next step', async (context) => {
    const writer = await context.open();
    await Promise.all(Array.from({ length: 40 }, (_, index) => writer.put(`l.${index}`, bytes('v'))));
    for (const operation of ['keys', 'scan'] as const) {
      const store = await context.open();
      const listing = (operation === 'keys' ? store.keys('l') : store.scan('l'))[Symbol.asyncIterator]();
      expect((await listing.next()).done, `${operation}() listed nothing`).toBe(false);
      await store.close();
      await expectKvError(listing.next(), KvErrorCode.Closed, `${operation}() after close`);
    }
    expect(await drain(writer.keys('l'))).toHaveLength(40);
  }),

  check('bad input', 'disposing a handle (await using) closes it like close(), and closes only it', async (context) => {
    const store = await context.open();
    const other = await context.open();
    const version = await store.put('k', bytes('kept'));
    const watch = store.watch({ prefixes: ['k'] })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.type).toBe('put');
    expect((await watch.next()).value?.type).toBe('synced');
    // Observed before disposing: the watch may end while the disposal still waits for the connection.
    const ended = expectKvError(watch.next(), KvErrorCode.Closed);
    await store[Symbol.asyncDispose]();
    await ended;
    await expectKvError(store.get('k'), KvErrorCode.Closed);
    expect((await other.get('k'))?.version).toBe(version);
  }),

  // -------------------------------------------------------- capabilities
  check('capabilities', 'capabilities are reported at open with meaningful values', async (context) => {
    const store = await context.open();
    const capabilities = store.capabilities;
    expect(typeof capabilities.ttl).toBe('boolean');
    expect(typeof capabilities.purge).toBe('boolean');
    expect(['native', 'emulated']).toContain(capabilities.multiPrefixWatch);
    expect(Number.isInteger(capabilities.maxValueBytes) && capabilities.maxValueBytes > 0).toBe(true);
    expect(typeof capabilities.readYourWrites).toBe('boolean');
    expect(capabilities.history >= 1).toBe(true);
    expect(store.bucket).toBe(context.bucket);
    expect(typeof store.backend).toBe('string');
  }),
];
