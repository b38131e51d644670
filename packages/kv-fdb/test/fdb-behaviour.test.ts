// What the FoundationDB backend guarantees beyond the shared conformance suite,
// shown on the in-process simulation of FoundationDB's transaction interface:
// unknown commit outcomes, chunked values, listings that span transactions,
// retention, TTL bookkeeping, hostile stored bytes and a missing client library.
import { KvErrorCode, ManualClock, type Version, type WatchCursor, type WatchEvent } from '@weft/kv';
import { FdbSimulation, type FdbSimulationOptions, loadFdbBinding, openFdbKv } from '@weft/kv-fdb';
import { applyEvents, bytes, expectKvError, readState, text, WatchReader } from '@weft/kv-testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { bucketPrefix, bucketRows } from './helpers.js';

const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
});

let bucketCounter = 0;
async function open(simulation: FdbSimulation, options: Partial<Parameters<typeof openFdbKv>[0]> = {}) {
  const store = await openFdbKv({ database: simulation, bucket: `b${bucketCounter++}`, sweepIntervalMs: 0, ...options });
  opened.push(store);
  return store;
}

function simulation(options: FdbSimulationOptions = {}): FdbSimulation {
  return new FdbSimulation(options);
}

/** The raw rows of a bucket, by their sub-space tag (`r/`, `c/`, `l/`, `e/`, `w/`, `h`, `z`). */
async function rowsByTag(db: FdbSimulation, bucket: string): Promise<Map<string, number>> {
  const prefix = bucketPrefix(bucket).length;
  const counts = new Map<string, number>();
  for (const [key] of await bucketRows(db, bucket)) {
    const tag = key.subarray(prefix, prefix + 2).toString('latin1');
    const name = tag.startsWith('h') || tag.startsWith('z') ? tag[0] : tag;
    counts.set(name as string, (counts.get(name as string) ?? 0) + 1);
  }
  return counts;
}

describe('fdb: commit_unknown_result', () => {
  it('an update whose commit landed but was reported unknown returns its version, not RevisionMismatch', async () => {
    const db = simulation();
    const store = await open(db);
    const first = await store.put('k', bytes('v1'));
    db.injectFaults('unknown-applied');
    const second = await store.update('k', bytes('v2'), first);
    expect(await store.get('k')).toEqual({ key: 'k', value: bytes('v2'), version: second });
    // Exactly one change was written: a watch from the first version sees one put.
    const reader = new WatchReader(store, { from: first as unknown as WatchCursor });
    const events = await reader.untilSynced();
    expect(events.filter((event) => event.type === 'put').map((event) => (event as { version: Version }).version)).toEqual([second]);
    await reader.stop();
  });

  it('a create reported unknown after landing returns its version, not AlreadyExists', async () => {
    const db = simulation();
    const store = await open(db);
    db.injectFaults('unknown-applied');
    const version = await store.create('fresh', bytes('x'));
    expect((await store.get('fresh'))?.version).toBe(version);
  });

  it('a write reported unknown without landing is retried and applied once', async () => {
    const db = simulation();
    const store = await open(db);
    db.injectFaults('unknown-not-applied', 'conflict');
    const version = await store.create('k', bytes('once'));
    expect((await store.get('k'))?.version).toBe(version);
    const events: WatchEvent[] = await new WatchReader(store).untilSynced();
    expect(events.filter((event) => event.type === 'put')).toHaveLength(1);
  });

  it('when every retry ends unknown, the write is Indeterminate (never a guessed success or failure)', async () => {
    const db = simulation();
    const store = await open(db, { maxRetries: 3 });
    db.injectFaults('unknown-not-applied', 'unknown-not-applied', 'unknown-not-applied', 'unknown-not-applied');
    const failure = await expectKvError(store.put('k', bytes('x')), KvErrorCode.Indeterminate);
    expect(failure.retryable).toBe(false);
    expect(failure.message).toMatch(/may or may not have been applied/);
    // Reading decides: here nothing landed, and the store keeps working.
    expect(await store.get('k')).toBeUndefined();
    await store.put('k', bytes('y'));
  });

  it('conflicts alone are retried until they clear; past maxRetries they fail without Indeterminate', async () => {
    const db = simulation();
    const store = await open(db, { maxRetries: 2 });
    db.injectFaults('conflict', 'conflict');
    await store.put('k', bytes('x'));
    db.injectFaults('conflict', 'conflict', 'conflict');
    const failure = await expectKvError(store.put('k', bytes('y')), KvErrorCode.OperationFailed);
    expect(failure.message).toMatch(/not_committed/);
    expect(text((await store.get('k'))?.value ?? bytes(''))).toBe('x');
  });
});

describe('fdb: values over 100 KB', () => {
  it('are chunked transparently: get, scan and watches return them whole, and rewrites leave no stale chunks', async () => {
    const db = simulation();
    const store = await open(db);
    const large = new Uint8Array(350_000).map((_, index) => index % 251);
    const reader = new WatchReader(store, { prefixes: ['blob'] });
    await reader.untilSynced();
    const version = await store.put('blob.a', large);
    expect((await rowsByTag(db, store.bucket)).get('c/')).toBe(4);
    expect(Buffer.from((await store.get('blob.a'))?.value ?? []).equals(Buffer.from(large))).toBe(true);
    const scanned = [];
    for await (const entry of store.scan('blob')) scanned.push(entry);
    expect(scanned).toHaveLength(1);
    expect(scanned[0]?.value.byteLength).toBe(350_000);
    const [event] = await reader.until((candidate) => candidate.type === 'put');
    expect(event?.type === 'put' && event.version === version && event.value.byteLength === 350_000).toBe(true);
    await reader.stop();
    const fresh = await new WatchReader(store).untilSynced();
    expect(fresh.find((candidate) => candidate.type === 'put')).toMatchObject({ key: 'blob.a', version });

    await store.put('blob.a', bytes('small'));
    expect((await rowsByTag(db, store.bucket)).get('c/')).toBeUndefined();
    await store.put('blob.a', large);
    await store.delete('blob.a');
    expect((await rowsByTag(db, store.bucket)).get('c/')).toBeUndefined();
  });

  it('up to a 9 MiB maxValueBytes fits one FoundationDB transaction; beyond it the store refuses to open', async () => {
    const db = simulation();
    const store = await open(db, { maxValueBytes: 9 * 1024 * 1024 });
    const value = new Uint8Array(9 * 1024 * 1024).fill(7);
    await store.put('huge', value);
    expect((await store.get('huge'))?.value.byteLength).toBe(9 * 1024 * 1024);
    await expectKvError(store.put('huger', new Uint8Array(9 * 1024 * 1024 + 1)), KvErrorCode.ValueTooLarge);
    expect(await store.get('huger')).toBeUndefined();
    await expectKvError(openFdbKv({ database: db, bucket: 'x', maxValueBytes: 10 * 1024 * 1024 }), KvErrorCode.InvalidArgument);
  });
});

describe('fdb: state-sync listings span transactions', () => {
  it('a listing of thousands of keys, each page a short transaction, delivers the state at its synced cursor', async () => {
    // A short transaction lifetime: one transaction over the whole bucket would be refused as too old.
    const db = simulation({ transactionLifetimeMs: 1000 });
    const store = await open(db);
    const writer = await openFdbKv({ database: db, bucket: store.bucket, sweepIntervalMs: 0 });
    opened.push(writer);
    const writes: Array<{ key: string; value: string | undefined; version: string }> = [];
    for (let index = 0; index < 3000; index += 100) {
      await Promise.all(
        Array.from({ length: 100 }, async (_, offset) => {
          const key = `k.${String(index + offset).padStart(5, '0')}`;
          writes.push({ key, value: 'v0', version: await writer.put(key, bytes('v0')) });
        }),
      );
    }
    // Keep writing while the listing runs: changes, deletes and new keys across the key space.
    let stop = false;
    const churn = (async () => {
      for (let round = 1; !stop; round++) {
        const target = `k.${String((round * 7919) % 3400).padStart(5, '0')}`;
        if (round % 3 === 0) writes.push({ key: target, value: undefined, version: await writer.delete(target) });
        else writes.push({ key: target, value: `v${round}`, version: await writer.put(target, bytes(`v${round}`)) });
      }
    })();
    const reader = new WatchReader(store);
    const listing = await reader.untilSynced();
    stop = true;
    await churn;
    const cursor = (listing.at(-1) as { cursor: string }).cursor;
    const ordered = [...writes].sort((a, b) => (a.version < b.version ? -1 : 1));
    const atSynced = new Map<string, string>();
    for (const write of ordered) {
      if (write.version > cursor) continue;
      if (write.value === undefined) atSynced.delete(write.key);
      else atSynced.set(write.key, write.value);
    }
    const changedLater = new Set(ordered.filter((write) => write.version > cursor).map((write) => write.key));
    // Before synced: every key once, each with its value at the synced cursor, in cursor order. A key is left
    // out only when it changed after that cursor, and then the live changes that follow deliver it.
    const listed = applyEvents(listing);
    expect(listing.filter((event) => event.type === 'put')).toHaveLength(listed.size);
    for (const [key, value] of listed) expect(value).toBe(atSynced.get(key));
    for (const key of atSynced.keys()) if (!listed.has(key)) expect(changedLater.has(key)).toBe(true);
    const cursors = listing.map((event) => event.cursor);
    expect([...cursors].sort()).toEqual(cursors);
    await writer.put('done', bytes('x'));
    await reader.until((event) => event.type === 'put' && event.key === 'done');
    const view = applyEvents(reader.events);
    view.delete('done');
    const final = await readState(store);
    final.delete('done');
    expect(view).toEqual(final);
    await reader.stop();
  });
});

describe('fdb: retention and the horizon', () => {
  it('trimming by age moves the horizon: older cursors fail with CursorExpired, newer ones resume', async () => {
    const db = simulation();
    const store = await open(db, { historyRetentionMs: 30 });
    const old = await store.put('a', bytes('1'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const recent = await store.put('a', bytes('2'));
    const horizon = await store.trimHistory();
    expect(store.compareCursors(horizon, old as unknown as WatchCursor)).toBeGreaterThanOrEqual(0);
    expect(store.compareCursors(horizon, recent as unknown as WatchCursor)).toBeLessThan(0);
    const expired = new WatchReader(store, { from: old as unknown as WatchCursor });
    await expectKvError(expired.next(), KvErrorCode.CursorExpired);
    const resumed = new WatchReader(store, { from: horizon });
    const events = await resumed.untilSynced();
    expect(events.map((event) => event.type)).toEqual(['put', 'synced']);
    await resumed.stop();
    expect((await rowsByTag(db, store.bucket)).get('l/')).toBe(1);
  });

  it('write ids are kept ten minutes for recognising retries, then trimmed', async () => {
    const db = simulation();
    const clock = new ManualClock(Date.now());
    const store = await open(db, { clock, historyRetentionMs: 0 });
    for (let index = 0; index < 5; index++) await store.put(`k${index}`, bytes('x'));
    await store.trimHistory();
    expect((await rowsByTag(db, store.bucket)).get('w/')).toBe(5);
    clock.advance(11 * 60 * 1000);
    await store.trimHistory();
    expect((await rowsByTag(db, store.bucket)).get('w/')).toBeUndefined();
    // historyRetentionMs 0 keeps the whole log.
    expect((await rowsByTag(db, store.bucket)).get('l/')).toBe(5);
  });

  it('a dropped and recreated bucket refuses cursors from before, and running watches end with CursorExpired', async () => {
    const db = simulation();
    const store = await open(db);
    const version = await store.put('a', bytes('1'));
    const running = new WatchReader(store);
    await running.untilSynced();
    await store.destroyBucket();
    await expectKvError(running.next(), KvErrorCode.CursorExpired);
    const again = await openFdbKv({ database: db, bucket: store.bucket, sweepIntervalMs: 0 });
    opened.push(again);
    expect(await again.get('a')).toBeUndefined();
    await expectKvError(new WatchReader(again, { from: version as unknown as WatchCursor }).next(), KvErrorCode.CursorExpired);
  });
});

describe('fdb: TTL', () => {
  it('the sweeper turns due entries into expire events and removes their record, chunks and index entry', async () => {
    const db = simulation();
    const clock = new ManualClock(Date.now());
    const store = await open(db, { clock, sweepIntervalMs: 100 });
    const reader = new WatchReader(store);
    await reader.untilSynced();
    await store.putWithTtl('short', new Uint8Array(250_000), 1000);
    await store.putWithTtl('long', bytes('x'), 60_000);
    await reader.until((event) => event.type === 'put' && event.key === 'long');
    clock.advance(1000);
    expect(await store.get('short')).toBeUndefined();
    const [expired] = await reader.until((event) => event.type === 'expire');
    expect(expired).toMatchObject({ type: 'expire', key: 'short' });
    const rows = await rowsByTag(db, store.bucket);
    expect(rows.get('r/')).toBe(1);
    expect(rows.get('c/')).toBeUndefined();
    expect(rows.get('e/')).toBe(1);
    expect(await store.entry('short')).toBeUndefined();
    expect(text((await store.get('long'))?.value ?? bytes(''))).toBe('x');
    await reader.stop();
  });

  it('a write over a passed TTL the sweeper has not reached delivers the expire first, in the same commit', async () => {
    const db = simulation();
    const clock = new ManualClock(Date.now());
    const store = await open(db, { clock });
    const reader = new WatchReader(store);
    await reader.untilSynced();
    await store.putWithTtl('session', bytes('old'), 500);
    clock.advance(600);
    const version = await store.create('session', bytes('new'));
    const events = await reader.until((event) => event.type === 'put' && event.version === version);
    expect(events.slice(-2).map((event) => event.type)).toEqual(['expire', 'put']);
    expect(events.at(-2)?.cursor.slice(0, 20)).toBe(events.at(-1)?.cursor.slice(0, 20));
    expect((await rowsByTag(db, store.bucket)).get('e/')).toBeUndefined();
    await reader.stop();
  });
});

describe('fdb: hostile bytes and bad input', () => {
  it('a corrupt record is a typed OperationFailed for that key; other keys read on', async () => {
    const db = simulation();
    const store = await open(db);
    await store.put('good', bytes('fine'));
    const tn = db.createTransaction();
    tn.set(Buffer.concat([bucketPrefix(store.bucket), Buffer.from('r/bad')]), Buffer.from('not a record'));
    await tn.commit();
    const failure = await expectKvError(store.get('bad'), KvErrorCode.OperationFailed);
    expect(failure.message).toMatch(/corrupt/);
    expect(failure.key).toBe('bad');
    expect(text((await store.get('good'))?.value ?? bytes(''))).toBe('fine');
  });

  it('bad options are refused with InvalidArgument before anything is opened', async () => {
    const db = simulation();
    await expectKvError(openFdbKv({ database: db, bucket: 'a/b' }), KvErrorCode.InvalidArgument);
    await expectKvError(openFdbKv({ database: db, bucket: 'a', namespace: 'x y' }), KvErrorCode.InvalidArgument);
    await expectKvError(openFdbKv({ database: db, bucket: 'a', maxRetries: -1 }), KvErrorCode.InvalidArgument);
    await expectKvError(openFdbKv({ database: db, bucket: 'a', clusterFile: '/etc/fdb.cluster' }), KvErrorCode.InvalidArgument);
    await expectKvError(openFdbKv({ database: {} as never, bucket: 'a' }), KvErrorCode.InvalidArgument);
  });

  it('buckets with a shared name prefix never see each other’s keys', async () => {
    const db = simulation();
    const one = await openFdbKv({ database: db, bucket: 'orders', sweepIntervalMs: 0 });
    const two = await openFdbKv({ database: db, bucket: 'orders2', sweepIntervalMs: 0 });
    opened.push(one, two);
    await one.put('a', bytes('1'));
    await two.put('b', bytes('2'));
    expect([...(await readState(one)).keys()]).toEqual(['a']);
    expect([...(await readState(two)).keys()]).toEqual(['b']);
  });
});

describe('fdb: the client library', () => {
  it('without the foundationdb package, opening says what to install', async () => {
    const failure = await expectKvError(openFdbKv({ bucket: 'x' }), KvErrorCode.Unsupported);
    expect(failure.message).toMatch(/npm install foundationdb/);
    expect(failure.message).toMatch(/foundationdb-clients/);
  });

  it('with the package but without libfdb_c, opening says the client library is missing', async () => {
    const missingLibrary = Object.assign(new Error('libfdb_c.so: cannot open shared object file: No such file or directory'), {
      code: 'ERR_DLOPEN_FAILED',
    });
    const failure = await expectKvError(
      loadFdbBinding(720, () => Promise.reject(missingLibrary)),
      KvErrorCode.Unsupported,
    );
    expect(failure.message).toMatch(/libfdb_c/);
    expect(failure.message).toMatch(/foundationdb-clients/);
    expect(failure.cause).toBe(missingLibrary);
  });

  it('a binding whose API version is already set by the program is reused', async () => {
    let selected: number | undefined;
    const binding = {
      setAPIVersion(version: number) {
        if (selected !== undefined && selected !== version)
          throw new Error(`foundationdb already initialized with API version ${selected}`);
        if (selected === version) throw new Error(`foundationdb already initialized with API version ${version}`);
        selected = version;
      },
      open: () => {
        throw new Error('not used');
      },
    };
    await loadFdbBinding(720, async () => binding);
    await loadFdbBinding(720, async () => binding);
    await expectKvError(
      loadFdbBinding(710, async () => binding),
      KvErrorCode.Unsupported,
    );
  });
});
