/**
 * Which accepted batches are durable, without keeping anything per batch:
 * batches get increasing serial numbers as they are queued and are written
 * in that order, so "durable" is one number, the last durable serial. Only
 * a receipt whose durability someone awaits gets a waiter. Serials are never
 * reused, so a batch rolled back after a failed write (whose positions a
 * later batch takes) is still answered with its own failure.
 */
import type { EventLogError } from './errors.js';

interface Waiter {
  readonly serial: number;
  resolve(): void;
  reject(error: unknown): void;
}

export class DurabilityTracker {
  #lastSerial = 0;
  #durableSerial = 0;
  #waiters: Waiter[] = [];
  /** Batches rolled back, with why (rare: only after a failed write). */
  readonly #rolledBack = new Map<number, EventLogError>();
  /** Once set (a failed fsync, or close), nothing not yet durable ever will be. */
  #final: EventLogError | undefined;

  /** The serial of a newly queued batch. */
  next(): number {
    return ++this.#lastSerial;
  }

  /** The serial of the newest batch queued so far. */
  get lastSerial(): number {
    return this.#lastSerial;
  }

  /** Resolves once the batch with this serial is durable; rejects if it never will be. */
  whenDurable(serial: number): Promise<void> {
    const failure = this.#rolledBack.get(serial);
    if (failure !== undefined) return rejected(failure);
    if (serial <= this.#durableSerial) return Promise.resolve();
    if (this.#final !== undefined) return rejected(this.#final);
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ serial, resolve, reject });
    });
  }

  /** Every batch up to this serial is durable. */
  markDurable(serial: number): void {
    if (serial <= this.#durableSerial) return;
    this.#durableSerial = serial;
    if (this.#waiters.length === 0) return;
    const waiting: Waiter[] = [];
    for (const waiter of this.#waiters) {
      if (this.#rolledBack.has(waiter.serial)) continue;
      if (waiter.serial <= serial) waiter.resolve();
      else waiting.push(waiter);
    }
    this.#waiters = waiting;
  }

  /** A batch that will never be written. */
  rolledBack(serial: number, error: EventLogError): void {
    this.#rolledBack.set(serial, error);
    const waiting: Waiter[] = [];
    for (const waiter of this.#waiters) {
      if (waiter.serial === serial) waiter.reject(error);
      else waiting.push(waiter);
    }
    this.#waiters = waiting;
  }

  /** Nothing not durable yet will become durable (a failed fsync, or close). */
  end(error: EventLogError): void {
    this.#final ??= error;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(this.#final);
  }
}

function rejected(error: EventLogError): Promise<void> {
  const promise = Promise.reject(error);
  // A rejection nobody awaits must not crash the process; whoever awaits the promise sees it.
  promise.catch(() => undefined);
  return promise;
}
