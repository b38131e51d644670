import { KvError, KvErrorCode, type KvStore, type Version } from '@weft/kv';
import { expect } from 'vitest';
import { bytes, text, WatchReader } from './helpers.js';

/** What {@link checkMachineCrash} needs from the servers behind a store. */
export interface MachineCrash {
  /** Makes everything written so far durable (the operating system's write-back of its page cache). */
  writeBack(): Promise<void>;
  /** Runs after the write-back, before the burst (a fault the burst is written under). */
  beforeBurst?(): Promise<void>;
  /**
   * The power loss: kills every server, drops what was not synced, and
   * starts them again. Returns the keys it wrote itself meanwhile, once
   * each, in order (a running watch that goes on delivers them first).
   */
  crash(): Promise<readonly string[] | undefined>;
  /** Whether the servers sync each write before acknowledging it (then a crash loses none). */
  readonly synced: boolean;
  /** Names the run in what is printed. */
  readonly label: string;
}

/** Acknowledged writes after the write-back, lost by a crash unless each was synced. */
const burst = 200;
const written = 20;

/**
 * A machine crash under a store: a first set of writes written back, a
 * running watch, a burst of acknowledged writes, the crash. What was written
 * back survives; of the burst, every write survives when the servers sync
 * each one (and the running watch goes on with the next write), and
 * otherwise what was lost is printed and reported: the running watch that
 * had delivered a lost write fails with `CursorExpired`, and a
 * compare-and-swap naming a lost version is refused, also after later
 * writes. Returns how many of the burst were lost. `store` must be empty.
 */
export async function checkMachineCrash(store: KvStore, run: MachineCrash): Promise<number> {
  const durable = await store.put('doc', bytes('written back'));
  for (let index = 0; index < written; index++) await store.put(`old.${index}`, bytes(`old ${index}`));
  await run.writeBack();

  const watch = new WatchReader(store, {});
  try {
    await watch.untilSynced();
    await run.beforeBurst?.();
    const docVersion = await store.update('doc', bytes('in the burst'), durable);
    const acknowledged = new Map<string, Version>([['doc', docVersion]]);
    for (let index = 0; index < burst; index++) acknowledged.set(`new.${index}`, await store.put(`new.${index}`, bytes(`new ${index}`)));
    const delivered = await watch.until((event) => event.type === 'put' && event.key === `new.${burst - 1}`);
    expect(delivered.length).toBe(burst + 1);

    const writtenDuring = (await run.crash()) ?? [];

    const keys = [...acknowledged.keys()];
    // Restarted servers elect leaders and load their data first: reads fail retryable until then.
    const found = await whileRetryable(() => store.getMany(keys));
    const lost = keys.filter((key, index) => found[index]?.version !== acknowledged.get(key));
    console.log(
      `[${run.label}] machine crash: ${lost.length} of ${acknowledged.size} writes acknowledged since the write-back lost` +
        `${lost.length > 0 ? `: ${lost.slice(0, 4).join(', ')}${lost.length > 4 ? ', ...' : ''}` : ''}`,
    );
    // A write that is not lost is read back as written; a lost one is absent, or the key's older value.
    for (const [index, key] of keys.entries()) {
      const entry = found[index];
      if (!lost.includes(key)) expect(text(entry?.value ?? new Uint8Array())).toBe(key === 'doc' ? 'in the burst' : `new ${key.slice(4)}`);
      else if (key === 'doc') expect(text(entry?.value ?? new Uint8Array())).toBe('written back');
      else expect(entry).toBeUndefined();
    }
    const old = await store.getMany(Array.from({ length: written }, (_, index) => `old.${index}`));
    expect(
      old.map((entry) => text(entry?.value ?? new Uint8Array())),
      'what was written back survives',
    ).toEqual(Array.from({ length: written }, (_, index) => `old ${index}`));

    if (run.synced) expect(lost, 'nothing acknowledged is lost when every write is synced').toEqual([]);
    if (lost.length === 0) {
      // The running watch goes on with the next writes, nothing repeated or skipped.
      await store.put('after', bytes('after the crash'));
      const next = await watch.until((event) => event.type === 'put' && event.key === 'after');
      expect(next.map((event) => (event.type === 'put' ? event.key : event.type))).toEqual([...writtenDuring, 'after']);
      await store.update('doc', bytes('next'), docVersion);
      return 0;
    }
    const failure = await watch.failure();
    expect(KvError.is(failure, KvErrorCode.CursorExpired), String(failure)).toBe(true);
    console.log(`[${run.label}] the running watch: ${String(failure)}`);
    const lostVersion = acknowledged.get(lost[0] as string) as Version;
    const lostKey = lost[0] as string;
    await refused(() => store.update(lostKey, bytes('over a lost write'), lostVersion));
    // Later writes take the lost positions: a compare-and-swap naming the lost write is still refused.
    for (let index = 0; index < 10; index++) await store.put(`later.${index}`, bytes('after the crash'));
    await refused(() => store.update(lostKey, bytes('over a lost write'), lostVersion));
    await refused(() => store.deleteWithVersion(lostKey, lostVersion));
    return lost.length;
  } finally {
    await watch.stop();
  }
}

/**
 * `call`, again every 100 ms while it fails with a retryable `KvError`
 * (servers electing leaders, loading their data), for up to `deadlineMs`.
 */
export async function whileRetryable<T>(call: () => Promise<T>, deadlineMs = 60_000): Promise<T> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!KvError.is(error) || !error.retryable || performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function refused(call: () => Promise<unknown>): Promise<void> {
  const error = await call().then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(KvError.is(error, KvErrorCode.RevisionMismatch), `expected RevisionMismatch, got ${String(error)}`).toBe(true);
}
