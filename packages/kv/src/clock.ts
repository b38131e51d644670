/**
 * Time as the backends see it. The memory backend takes a {@link Clock} so
 * tests can move time by hand with {@link ManualClock} instead of sleeping.
 */

import { unrefTimer } from '@weft/common';

/** A source of time plus one-shot timers on the same timeline. */
export interface Clock {
  /** Milliseconds since the epoch on this clock's timeline. */
  now(): number;
  /** Runs `callback` once `delayMs` has passed on this clock; returns a function that cancels it. */
  setTimer(delayMs: number, callback: () => void): () => void;
}

/** Wall-clock time and the runtime's timers; on Node.js, timers do not keep the process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(delayMs, callback) {
    const timer = setTimeout(callback, Math.max(0, delayMs));
    unrefTimer(timer);
    return () => clearTimeout(timer);
  },
};

interface PendingTimer {
  readonly at: number;
  readonly order: number;
  readonly callback: () => void;
}

/** A clock that only moves when told to; due timers run synchronously inside {@link ManualClock.advance}. */
export class ManualClock implements Clock {
  #now: number;
  #order = 0;
  #timers = new Set<PendingTimer>();

  /** @param start the initial time in epoch milliseconds. @default 0 */
  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(delayMs: number, callback: () => void): () => void {
    const timer: PendingTimer = { at: this.#now + Math.max(0, delayMs), order: this.#order++, callback };
    this.#timers.add(timer);
    return () => this.#timers.delete(timer);
  }

  /** Moves time forward by `ms`, running every timer that falls due, in time order. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      let next: PendingTimer | undefined;
      for (const timer of this.#timers) {
        if (timer.at <= target && (next === undefined || timer.at < next.at || (timer.at === next.at && timer.order < next.order))) {
          next = timer;
        }
      }
      if (next === undefined) break;
      this.#timers.delete(next);
      this.#now = Math.max(this.#now, next.at);
      next.callback();
    }
    this.#now = target;
  }
}
