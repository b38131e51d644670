import { KvError, type KvErrorCode, type KvStore, type WatchEvent, type WatchOptions } from '@weft/kv';
import { expect } from 'vitest';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** UTF-8 bytes of `text`. */
export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

/** `bytes` read back as UTF-8. */
export function text(value: Uint8Array): string {
  return decoder.decode(value);
}

/** Asserts that `action` rejects with a `KvError` of `code`, and returns it. */
export async function expectKvError(
  action: Promise<unknown> | (() => Promise<unknown> | unknown),
  code: KvErrorCode,
  what = 'the call',
): Promise<KvError> {
  let outcome: unknown;
  try {
    await (typeof action === 'function' ? action() : action);
  } catch (error) {
    outcome = error;
  }
  if (outcome === undefined) expect.fail(`expected a KvError with code ${code}, but ${what} succeeded`);
  if (!(outcome instanceof KvError)) {
    expect.fail(
      `${what}: expected a KvError with code ${code}, got ${String(outcome instanceof Error ? `${outcome.name}: ${outcome.message}` : outcome)}`,
    );
  }
  expect(outcome.code, `${what}: ${outcome.message}`).toBe(code);
  expect(typeof outcome.backend).toBe('string');
  return outcome;
}

/** Consumes an iterable into an array. */
export async function drain<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

let watchDeadlineMs = 20_000;

/**
 * Sets how long a watch may take to deliver an awaited event before the check
 * fails instead of hanging (the runner sets it from the harness before each check).
 */
export function setWatchDeadline(ms: number): void {
  watchDeadlineMs = ms;
}

/**
 * An open watch read one event at a time, with a deadline on every wait so a
 * missing event fails the check instead of hanging it.
 */
export class WatchReader {
  readonly events: WatchEvent[] = [];
  readonly #iterator: AsyncIterator<WatchEvent>;
  #pending: Promise<IteratorResult<WatchEvent>> | undefined;
  #ended = false;

  constructor(store: KvStore, options: WatchOptions = {}) {
    this.#iterator = store.watch(options)[Symbol.asyncIterator]();
  }

  /** The next event, or `undefined` when the watch ended. */
  async next(deadlineMs?: number): Promise<WatchEvent | undefined> {
    if (this.#ended) return undefined;
    deadlineMs ??= watchDeadlineMs;
    if (this.#pending === undefined) {
      this.#pending = this.#iterator.next();
      // Observed by the race below; if a failing check leaves it pending, closing the handle rejects it unobserved.
      this.#pending.catch(() => undefined);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), deadlineMs);
    });
    try {
      const result = await Promise.race([this.#pending, timeout]);
      if (result === 'timeout') {
        expect.fail(`no watch event within ${deadlineMs} ms; events so far: ${describeEvents(this.events)}`);
      }
      this.#pending = undefined;
      if (result.done) {
        this.#ended = true;
        return undefined;
      }
      this.events.push(result.value);
      return result.value;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads events until `predicate` holds for one; returns the events read by this call, that one included. */
  async until(predicate: (event: WatchEvent) => boolean, deadlineMs?: number): Promise<WatchEvent[]> {
    const read: WatchEvent[] = [];
    for (;;) {
      const event = await this.next(deadlineMs);
      if (event === undefined) expect.fail(`the watch ended before the awaited event; events: ${describeEvents(this.events)}`);
      read.push(event);
      if (predicate(event)) return read;
    }
  }

  /** Reads events until the watch fails, and returns its error; fails the check if the watch ends without one. */
  async failure(deadlineMs?: number): Promise<unknown> {
    for (;;) {
      try {
        if ((await this.next(deadlineMs)) === undefined)
          expect.fail(`the watch ended without an error; events: ${describeEvents(this.events)}`);
      } catch (error) {
        if (error instanceof Error && error.name === 'AssertionError') throw error;
        this.#ended = true;
        return error;
      }
    }
  }

  /** Reads events up to and including the `synced` marker. */
  untilSynced(): Promise<WatchEvent[]> {
    return this.until((event) => event.type === 'synced');
  }

  /** Ends the watch the way `break` in a for-await loop does. */
  async stop(): Promise<void> {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#pending !== undefined) {
      // return() queues behind a pending next(); do not wait for it (closing the handle ends both).
      void this.#pending.catch(() => undefined);
      void this.#iterator.return?.()?.catch(() => undefined);
      return;
    }
    await this.#iterator.return?.();
  }
}

/** A compact description of events for failure messages. */
export function describeEvents(events: readonly WatchEvent[]): string {
  const shown = events
    .slice(-20)
    .map((event) => (event.type === 'synced' ? `synced@${event.cursor}` : `${event.type}:${event.key}@${event.cursor}`));
  return `${events.length > 20 ? '... ' : ''}[${shown.join(', ')}]`;
}

/** Polls `condition` until it holds, failing after `deadlineMs`. */
export async function eventually(condition: () => Promise<boolean>, what: string, deadlineMs?: number): Promise<void> {
  const wait = deadlineMs ?? watchDeadlineMs;
  const deadline = Date.now() + wait;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) expect.fail(`timed out after ${wait} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Waits `ms` milliseconds of real time. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The live state a watch's events describe: key to value text, applied in order. */
export function applyEvents(events: readonly WatchEvent[], view = new Map<string, string>()): Map<string, string> {
  for (const event of events) {
    if (event.type === 'put') view.set(event.key, text(event.value));
    else if (event.type !== 'synced') view.delete(event.key);
  }
  return view;
}

/** The live state read through `scan`, as key to value text. */
export async function readState(store: KvStore, prefix?: string): Promise<Map<string, string>> {
  const state = new Map<string, string>();
  for await (const entry of store.scan(prefix)) state.set(entry.key, text(entry.value));
  return state;
}

/** Sorted entries of a map, for comparisons with readable diffs. */
export function sortedEntries(map: ReadonlyMap<string, string>): Array<[string, string]> {
  return [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Asserts cursors never go backwards, and change events never share or repeat a cursor. */
export function expectCursorOrder(store: KvStore, events: readonly WatchEvent[]): void {
  for (let index = 1; index < events.length; index++) {
    const previous = events[index - 1] as WatchEvent;
    const current = events[index] as WatchEvent;
    const order = store.compareCursors(previous.cursor, current.cursor);
    const strict = current.type !== 'synced';
    if (strict ? order >= 0 : order > 0) {
      expect.fail(`cursor order broken at event ${index}: ${describeEvents(events.slice(Math.max(0, index - 3), index + 1))}`);
    }
  }
}
