/**
 * A wake-up primitive for watch loops: waiters park on {@link Notifier.wait}
 * and every {@link Notifier.notify} releases all of them. The memory KV
 * backend's watches and the event log's subscriptions sleep on it.
 */
export class Notifier {
  #waiters = new Set<() => void>();

  /** Wakes every current waiter. */
  notify(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /** Resolves on the next {@link notify}, or when `signal` aborts (never rejects). */
  wait(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        signal?.removeEventListener('abort', done);
        this.#waiters.delete(done);
        resolve();
      };
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** How many callers are waiting. */
  get waiting(): number {
    return this.#waiters.size;
  }
}
