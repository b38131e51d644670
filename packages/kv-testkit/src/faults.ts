import { KvError, KvErrorCode, type KvStore, type Version, type WatchEvent } from '@weft/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, describeEvents } from './helpers.js';
import { byKey, checkKeyHistory, type Operation } from './linearizability/checker.js';
import { formatHistory, shrinkKeyHistory } from './linearizability/report.js';
import { recordHistory } from './linearizability/workload.js';
import { freshBucketName } from './runner.js';

/** One way a server fails, and how the backend's running watches must come out of it. */
export interface KvFault {
  /** What happens, e.g. `kill -9 and restart (AOF)`. */
  readonly name: string;
  /**
   * What a watch running across it must do: `continues` (the server kept
   * its history: no gap, no duplicate), `expires` (the history is gone:
   * it fails with `CursorExpired`, never silently), or `may-lose` (a
   * failover that may drop the last acknowledged writes: the lost writes
   * are found and printed, a compare-and-swap naming one is refused, and the
   * watch either continues with every surviving write exactly once and none
   * of the lost ones, or fails with `CursorExpired`).
   */
  readonly outcome: 'continues' | 'expires' | 'may-lose';
  /**
   * True when the server cannot answer while the fault holds (paused,
   * partitioned): a read and a write sent then must settle, with `Timeout`,
   * `Indeterminate` or another typed error, before the fault is healed.
   */
  readonly unanswered?: boolean;
  /** Breaks the server. */
  inject(): Promise<void>;
  /** Ends the fault: the server answers again (restarted, resumed, reconnected). */
  heal(): Promise<void>;
}

/** How the fault group reaches a backend and breaks its server. */
export interface KvFaultHarness {
  /** Opens a new client handle on `bucket`, as the conformance harness does. */
  open(bucket: string): Promise<KvStore>;
  /** The faults to run, each with a watch that is idle and one under continuous writes. */
  readonly faults: readonly KvFault[];
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  /**
   * How long, after healing, the watch may take to deliver the writes made
   * after it (or to fail) before the check reports it silent. @default 60000
   */
  readonly settleMs?: number;
}

/** How often each fault is injected and healed in one check. */
const cycles = process.env.WEFT_LONG === '1' ? 5 : 1;

/** A write that the server acknowledged: its key and the version it returned. */
interface Acknowledged {
  readonly key: string;
  readonly version: Version;
}

/** Codes a write or read may settle with while the server is broken: typed, and never a hang. */
const faultCodes: ReadonlySet<string> = new Set([
  KvErrorCode.Timeout,
  KvErrorCode.Indeterminate,
  KvErrorCode.NotConnected,
  KvErrorCode.ConnectionFailed,
]);

/**
 * The fault group: for each fault, a running state-sync watch (idle, and
 * under a writer that never stops) goes through the fault. Afterwards:
 *
 * - every operation sent while the server could not answer (a read, a write
 *   and, with an idle watch, a listing) has settled with a typed error
 *   (nothing hangs);
 * - a fault that keeps the history: the watch delivered every acknowledged
 *   write exactly once, in cursor order, writes made after healing included;
 * - a fault that loses it: the watch failed with `CursorExpired`;
 * - either way, never a watch that stops silently.
 */
export function describeKvFaults(name: string, harness: KvFaultHarness): void {
  const settleMs = harness.settleMs ?? 60_000;
  describe(`kv faults: ${name}`, () => {
    beforeAll(async () => harness.setup?.(), 120_000);
    afterAll(async () => harness.teardown?.(), 120_000);
    for (const fault of harness.faults) {
      for (const busy of [false, true]) {
        const what = busy ? 'under continuous writes' : 'idle';
        const expectation =
          fault.outcome === 'continues'
            ? 'continues with no gap and no duplicate'
            : fault.outcome === 'expires'
              ? 'fails with CursorExpired (the history is gone)'
              : 'continues exactly or fails with CursorExpired, and every acknowledged write is readable or reported lost';
        it(`${fault.name}: a watch ${what} ${expectation}`, () => runFault(name, harness, fault, busy, settleMs), settleMs * 3);
      }
    }
  });
}

async function runFault(suite: string, harness: KvFaultHarness, fault: KvFault, busy: boolean, settleMs: number): Promise<void> {
  const bucket = freshBucketName();
  const watcher = await harness.open(bucket);
  const writer = await harness.open(bucket);
  // Under writes, two more clients race compare-and-swap operations through the fault: a history checked for
  // linearizability afterwards (a write that failed typed counts as of unknown outcome).
  const racers = busy ? [await harness.open(bucket), await harness.open(bucket)] : [];
  const seed = Number(process.env.WEFT_SEED ?? Math.floor(Math.random() * 2 ** 31));
  try {
    const acknowledged: Acknowledged[] = [{ key: 'seed', version: await writer.put('seed', bytes('0')) }];
    const watch = collect(watcher);
    await watch.until((events) => events.some((event) => event.type === 'synced'), settleMs, 'synced');

    let writing = busy;
    const writes = busy
      ? (async () => {
          for (let index = 0; writing; index++) {
            const key = `busy.${index}`;
            try {
              acknowledged.push({ key, version: await writer.put(key, bytes(String(index))) });
            } catch (error) {
              assertFaultError(error, `busy write of ${key}`);
            }
          }
        })()
      : Promise.resolve();

    // Rounds of 20 operations per client on two fresh keys each, until the writer stops: some rounds span the fault.
    const racing = (async () => {
      const history: Operation[] = [];
      for (let round = 0; racers.length > 0 && writing; round++) {
        const keys = [`race.${round}.a`, `race.${round}.b`];
        history.push(...(await recordHistory(racers, { keys, operationsPerClient: 20, seed: seed + round })));
      }
      return history;
    })();
    // The fault comes back `cycles` times in one check (five with WEFT_LONG=1), each healed before the next.
    for (let cycle = 0; cycle < cycles; cycle++) {
      await fault.inject();
      let healed = false;
      const heal = async () => {
        if (healed) return;
        healed = true;
        await fault.heal();
      };
      try {
        if (fault.unanswered === true) {
          // Sent while nothing answers: each must settle, typed, before the server is back.
          const read = await writer.get('seed').then(
            () => undefined,
            (error: unknown) => error,
          );
          assertFaultError(read, 'a read while the server cannot answer', true);
          const write = await writer.put('probe', bytes('x')).then(
            () => undefined,
            (error: unknown) => error,
          );
          assertFaultError(write, 'a write while the server cannot answer', true);
          if (!busy && cycle === 0) {
            // A listing's step has its deadline too (once: on some backends it waits out a lost fetch first).
            const listing = await (async () => {
              for await (const _ of writer.keys()) {
                // each step must settle
              }
            })().then(
              () => undefined,
              (error: unknown) => error,
            );
            assertFaultError(listing, 'a listing while the server cannot answer', true);
          }
        }
      } finally {
        // Healed whatever happened, so a failing check leaves the server as the next one needs it.
        await heal();
      }
      if (cycle + 1 < cycles) {
        const key = `between.${cycle}`;
        acknowledged.push({ key, version: await putUntilAcknowledged(writer, key, String(cycle), settleMs) });
      }
    }

    // Acknowledged writes after healing: the watch must deliver them (or fail typed).
    for (let index = 0; index < 5; index++) {
      const key = `after.${index}`;
      acknowledged.push({ key, version: await putUntilAcknowledged(writer, key, String(index), settleMs) });
    }
    writing = false;
    await writes;
    // A fault that loses acknowledged writes breaks linearizability by design; the watch's CursorExpired is the check there.
    const history = await racing;
    if (fault.outcome === 'continues') checkHistory(suite, fault, history, seed);
    // A failover that lost acknowledged writes breaks linearizability by design: checked only when it lost none.
    const checkUnlessLost = (lost: ReadonlySet<string>) => {
      if (fault.outcome === 'may-lose' && lost.size === 0) checkHistory(suite, fault, history, seed);
    };
    const last = acknowledged[acknowledged.length - 1] as Acknowledged;
    await watch.until(
      (events) => events.some((event) => event.type === 'put' && event.key === last.key && event.version === last.version),
      settleMs,
      `the put of ${last.key} at ${last.version}`,
    );

    if (fault.outcome === 'expires') {
      expect(watch.error, `the watch should have failed with CursorExpired; events: ${describeEvents(watch.events)}`).toBeDefined();
      expect(KvError.is(watch.error) && watch.error.code).toBe(KvErrorCode.CursorExpired);
      return;
    }
    let lost = new Set<string>();
    if (fault.outcome === 'may-lose') {
      lost = await lostWrites(writer, acknowledged);
      console.log(
        `[kv faults: ${suite}] ${fault.name}: ${lost.size} of ${acknowledged.length} acknowledged writes lost${lost.size > 0 ? ` (${namedLost([...lost])})` : ''}; the watch ${watch.error === undefined ? 'continued' : `failed: ${String(watch.error)}`}`,
      );
      checkUnlessLost(lost);
      if (watch.error !== undefined) {
        expect(KvError.is(watch.error) && watch.error.code, `the watch failed: ${String(watch.error)}`).toBe(KvErrorCode.CursorExpired);
        return;
      }
      acknowledged.splice(0, acknowledged.length, ...acknowledged.filter(({ key, version }) => !lost.has(`${key}@${version}`)));
    }
    expect(watch.error, `the watch failed: ${String(watch.error)}`).toBeUndefined();
    const puts = watch.events.filter((event): event is Extract<WatchEvent, { type: 'put' }> => event.type === 'put');
    const delivered = new Map<string, number>();
    for (const event of puts) {
      const id = `${event.key}@${event.version}`;
      delivered.set(id, (delivered.get(id) ?? 0) + 1);
    }
    const deliveredLost = [...lost].filter((id) => delivered.has(id));
    expect(deliveredLost, 'lost writes delivered by a watch that went on without CursorExpired').toEqual([]);
    const duplicates = [...delivered].filter(([, count]) => count > 1).map(([id]) => id);
    expect(duplicates, 'delivered more than once').toEqual([]);
    const missing = acknowledged.map(({ key, version }) => `${key}@${version}`).filter((id) => !delivered.has(id));
    expect(missing, `acknowledged but never delivered; events: ${describeEvents(watch.events)}`).toEqual([]);
    for (let index = 1; index < watch.events.length; index++) {
      const previous = watch.events[index - 1] as WatchEvent;
      const current = watch.events[index] as WatchEvent;
      if (previous.type !== 'synced' && current.type !== 'synced') {
        expect(watcher.compareCursors(previous.cursor, current.cursor), 'cursor order').toBeLessThan(0);
      }
    }
    watch.stop();
  } finally {
    await watcher.close().catch(() => undefined);
    await writer.close().catch(() => undefined);
    for (const racer of racers) await racer.close().catch(() => undefined);
  }
}

/**
 * The acknowledged writes the server no longer holds (each key is written
 * once, so its version must still be current); a compare-and-swap naming
 * one must be refused.
 */
async function lostWrites(store: KvStore, acknowledged: readonly Acknowledged[]): Promise<Set<string>> {
  const lost = new Set<string>();
  const missing: Acknowledged[] = [];
  // Read back in groups, not one round trip after another: a long run acknowledges tens of thousands of writes.
  for (let index = 0; index < acknowledged.length; index += 64) {
    const group = acknowledged.slice(index, index + 64);
    const current = await Promise.all(group.map(({ key }) => store.get(key)));
    group.forEach((written, at) => {
      if (current[at]?.version !== written.version) missing.push(written);
    });
  }
  for (const { key, version } of missing) {
    lost.add(`${key}@${version}`);
    const refused = await store.update(key, bytes('over a lost write'), version).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(
      KvError.is(refused, KvErrorCode.RevisionMismatch),
      `a compare-and-swap naming the lost ${key}@${version}: ${String(refused)}`,
    ).toBe(true);
  }
  return lost;
}

/** Every key's history of the racing clients is linearizable; the verdict is printed with its seed. */
function checkHistory(suite: string, fault: KvFault, history: readonly Operation[], seed: number): void {
  if (history.length === 0) return;
  const unknown = history.filter((operation) => operation.outcome.kind === 'unknown').length;
  for (const [key, operations] of byKey(history)) {
    const verdict = checkKeyHistory(operations);
    if (verdict === 'not linearizable') {
      const shrunk = shrinkKeyHistory(operations);
      expect.fail(
        `${fault.name}: the history of ${key} is not linearizable (replay with WEFT_SEED=${seed}); ${shrunk.length} of its ${operations.length} operations:\n${formatHistory(shrunk)}` +
          (operations.length <= 80 ? `\nthe whole history of ${key}:\n${formatHistory(operations)}` : ''),
      );
    }
  }
  console.log(
    `[kv faults: ${suite}] ${fault.name}: ${history.length} operations of 2 racing clients (${unknown} of unknown outcome) linearizable, seed ${seed}`,
  );
}

/** Puts until the server acknowledges, through the errors a healing server gives; fails the check after `limitMs`. */
async function putUntilAcknowledged(store: KvStore, key: string, value: string, limitMs: number): Promise<Version> {
  const started = Date.now();
  for (;;) {
    try {
      return await store.put(key, bytes(value));
    } catch (error) {
      assertFaultError(error, `write of ${key} after healing`);
      if (Date.now() - started > limitMs) expect.fail(`the write of ${key} was not acknowledged within ${limitMs} ms: ${String(error)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function assertFaultError(error: unknown, what: string, required = false): void {
  if (error === undefined && !required) return;
  expect(KvError.is(error), `${what}: expected a typed KvError, got ${String(error)}`).toBe(true);
  expect(faultCodes.has((error as KvError).code), `${what}: unexpected code: ${String(error)}`).toBe(true);
}

interface Collected {
  readonly events: WatchEvent[];
  error: unknown;
  /** Waits until `condition` holds for the events so far, or the watch ended; fails after `limitMs`. */
  until(condition: (events: readonly WatchEvent[]) => boolean, limitMs: number, what: string): Promise<void>;
  stop(): void;
}

/** Runs a state-sync watch in the background, keeping its events and how it ended. */
function collect(store: KvStore): Collected {
  const controller = new AbortController();
  const events: WatchEvent[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  const collected: Collected = {
    events,
    error: undefined,
    async until(condition, limitMs, what) {
      const deadline = Date.now() + limitMs;
      while (!ended && !condition(events)) {
        const left = deadline - Date.now();
        if (left <= 0) expect.fail(`the watch went silent: no ${what} within ${limitMs} ms; events: ${describeEvents(events)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 1000));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    stop: () => controller.abort(),
  };
  void (async () => {
    try {
      for await (const event of store.watch({ signal: controller.signal })) {
        events.push(event);
        wake?.();
      }
    } catch (error) {
      collected.error = error;
    } finally {
      ended = true;
      wake?.();
    }
  })();
  return collected;
}

/** The lost writes by name: all of a few, the first and last ten of many. */
function namedLost(lost: readonly string[]): string {
  if (lost.length <= 24) return lost.join(', ');
  return `${lost.slice(0, 10).join(', ')}, ... ${lost.length - 20} more ..., ${lost.slice(-10).join(', ')}`;
}
