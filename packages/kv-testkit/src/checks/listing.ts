import type { KvStore } from '@weft/kv';
import { expect } from 'vitest';
import type { ConformanceCheck } from '../harness.js';
import { applyEvents, bytes, expectCursorOrder, readState, sortedEntries, text, WatchReader } from '../helpers.js';
import { check } from './contract.js';

/**
 * Two other clients writing without pause until `stop()`: puts, deletes and
 * new keys under `churn`, never touching `stable`. Every value ever written
 * to a key is kept, so a listing can be checked for values nobody wrote.
 */
function churn(writers: readonly KvStore[]) {
  const written = new Map<string, Set<string>>();
  let running = true;
  let writes = 0;
  let waiting: Array<() => void> = [];
  const loops = writers.map(async (writer, client) => {
    for (let step = 0; running; step++) {
      const key = step % 5 === 4 ? `churn.new.${client}.${step}` : `churn.${(step * 7 + client * 13) % 100}`;
      if (step % 3 === 2) await writer.delete(key);
      else {
        const value = `w${client}-${step}`;
        const values = written.get(key) ?? new Set<string>();
        values.add(value);
        written.set(key, values);
        await writer.put(key, bytes(value));
      }
      writes++;
      for (const resolve of waiting) resolve();
      waiting = [];
      // Let timers and I/O run between writes: a backend that answers without I/O would otherwise starve the reader.
      await new Promise((resolve) => setImmediate(resolve));
    }
  });
  return {
    written,
    get writes() {
      return writes;
    },
    /** Resolves once another write has completed: a reader that awaits it now and then is sure to be overtaken. */
    nextWrite(): Promise<void> {
      return new Promise((resolve) => waiting.push(resolve));
    },
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

async function fill(store: KvStore): Promise<void> {
  for (let index = 0; index < 200; index++) await store.put(`stable.${index}`, bytes(`stable-${index}`));
  for (let index = 0; index < 100; index++) await store.put(`churn.${index}`, bytes(`initial-${index}`));
}

/** Listing clauses under load: other clients write all through a listing, not only after its first entry. */
export const listingChecks: readonly ConformanceCheck[] = [
  check(
    'reads',
    'keys() and scan() list every key that stays live through the listing once, while other clients write continuously',
    async (context) => {
      const store = await context.open();
      await fill(store);
      const writers = churn([await context.open(), await context.open()]);
      try {
        for (let round = 0; round < 2; round++) {
          const before = writers.writes;
          const scanned = new Map<string, string>();
          for await (const entry of store.scan()) {
            expect(scanned.has(entry.key), `scan listed ${entry.key} twice`).toBe(false);
            scanned.set(entry.key, text(entry.value));
            // Every few entries the listing waits for a write, so writes land all through it, whatever the backend's speed.
            if (scanned.size % 5 === 0) await writers.nextWrite();
          }
          const listed: string[] = [];
          for await (const key of store.keys()) {
            listed.push(key);
            if (listed.length % 5 === 0) await writers.nextWrite();
          }
          expect(new Set(listed).size, 'keys() listed a key twice').toBe(listed.length);
          expect(writers.writes, 'the other clients wrote during the listing').toBeGreaterThan(before);
          for (let index = 0; index < 200; index++) {
            expect(scanned.get(`stable.${index}`), `scan lost stable.${index}, live all through it`).toBe(`stable-${index}`);
            expect(listed, `keys() lost stable.${index}, live all through it`).toContain(`stable.${index}`);
          }
          for (const [key, value] of scanned) {
            if (key.startsWith('stable.')) continue;
            const index = Number(key.split('.')[1]);
            const written = writers.written.get(key);
            expect(written?.has(value) || value === `initial-${index}`, `scan gave ${key} the value ${value}, which nobody wrote`).toBe(
              true,
            );
          }
        }
      } finally {
        await writers.stop();
      }
    },
  ),
  check('watch', 'state-sync stays complete while other clients write continuously through the whole listing', async (context) => {
    const store = await context.open();
    await fill(store);
    const writers = churn([await context.open(), await context.open()]);
    const watch = new WatchReader(store);
    try {
      for (let read = 1; (await watch.next())?.type !== 'synced'; read++) if (read % 5 === 0) await writers.nextWrite();
      const afterSynced = writers.writes;
      // Keep writing a while past the synced marker, so the live part races the writers too.
      while (writers.writes < afterSynced + 40) await new Promise((resolve) => setTimeout(resolve, 5));
    } finally {
      await writers.stop();
    }
    const listing = watch.events.slice(
      0,
      watch.events.findIndex((event) => event.type === 'synced'),
    );
    for (let index = 0; index < 200; index++) {
      expect(
        listing.some((event) => event.type === 'put' && event.key === `stable.${index}`),
        `the listing lost stable.${index}, live all through it`,
      ).toBe(true);
    }
    await store.put('sentinel', bytes('end'));
    await watch.until((event) => event.type === 'put' && event.key === 'sentinel');
    expectCursorOrder(store, watch.events);
    const view = applyEvents(watch.events);
    view.delete('sentinel');
    const state = await readState(store);
    state.delete('sentinel');
    expect(sortedEntries(view)).toEqual(sortedEntries(state));
    await watch.stop();
  }),
];
