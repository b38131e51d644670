import { type KvError, KvErrorCode, kvError } from '../errors.js';

interface Pending {
  readonly expiresAt: number;
  readonly expired: () => KvError;
  readonly reject: (error: KvError) => void;
  previous: Pending | undefined;
  next: Pending | undefined;
}

/**
 * The deadlines of one bucket handle: every operation, listing page and
 * watch step a backend sends to its server settles within `timeoutMs`,
 * whatever the server does (a pause, a dropped reply, a connection that
 * never comes back). The work itself is not cancelled: a write whose
 * deadline passed may still apply, which is why writes time out as
 * `Indeterminate` and reads as `Timeout`.
 *
 * One timer serves every pending deadline: all of them have the same
 * length, so they expire in the order they were set and the queue stays
 * sorted by itself. Setting one costs an object and a promise, never a
 * timer of its own.
 */
export class Deadlines {
  /** How long a step may take before it is given up, in milliseconds. */
  readonly timeoutMs: number;
  /** The oldest pending step: the next to expire. */
  #first: Pending | undefined;
  #last: Pending | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #tickMs: number;

  constructor(timeoutMs: number) {
    this.timeoutMs = timeoutMs;
    // A deadline fires at most a tenth of its length late.
    this.#tickMs = Math.max(5, Math.floor(timeoutMs / 10));
  }

  /**
   * Settles as `work` does, or rejects with `expired()` once `timeoutMs`
   * has passed and `work` has not settled.
   */
  within<T>(work: Promise<T>, expired: () => KvError): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { expiresAt: performance.now() + this.timeoutMs, expired, reject, previous: this.#last, next: undefined };
      if (this.#last === undefined) this.#first = pending;
      else this.#last.next = pending;
      this.#last = pending;
      if (this.#timer === undefined) this.#arm(this.timeoutMs);
      work.then(
        (value) => {
          this.#remove(pending);
          resolve(value);
        },
        (error: unknown) => {
          this.#remove(pending);
          reject(error);
        },
      );
    });
  }

  /** How many steps are waiting for their work or their deadline. */
  get pending(): number {
    let count = 0;
    for (let pending = this.#first; pending !== undefined; pending = pending.next) count++;
    return count;
  }

  /** Stops the timer; a deadline set afterwards starts it again. Pending work keeps its promise. */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #remove(pending: Pending): void {
    const { previous, next } = pending;
    if (previous === undefined) {
      if (this.#first !== pending) return; // already expired
      this.#first = next;
    } else previous.next = next;
    if (next === undefined) this.#last = previous;
    else next.previous = previous;
    pending.previous = undefined;
    pending.next = undefined;
  }

  #arm(delayMs: number): void {
    this.#timer = setTimeout(() => this.#expire(), Math.max(this.#tickMs, delayMs));
    // A pending step keeps its process alive through its socket, not through this timer.
    this.#timer.unref?.();
  }

  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    for (let pending = this.#first; pending !== undefined && pending.expiresAt <= now; pending = this.#first) {
      this.#remove(pending);
      pending.reject(pending.expired());
    }
    if (this.#first !== undefined) this.#arm(this.#first.expiresAt - now);
  }
}

/** The error of a read (or a listing or watch step) that outlived its deadline: `Timeout`, retryable. */
export function readTimeout(backend: string, operation: string, timeoutMs: number, key?: string): KvError {
  return kvError(KvErrorCode.Timeout, backend, `${operation}: no answer from ${backend} within ${timeoutMs} ms`, { key });
}

/** The error of a write that outlived its deadline: `Indeterminate`, since the server may still apply it. */
export function writeTimeout(backend: string, operation: string, timeoutMs: number, key?: string): KvError {
  return kvError(
    KvErrorCode.Indeterminate,
    backend,
    `${operation}: no answer from ${backend} within ${timeoutMs} ms; the write may or may not have been applied`,
    { key },
  );
}
