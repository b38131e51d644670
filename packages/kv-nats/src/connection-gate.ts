import type { NatsConnection } from '@nats-io/nats-core';
import { KvErrorCode, kvError } from '@weft/kv/backend';
import { backend } from './errors.js';

/**
 * Holds requests while the connection is down. nats.js drops what was
 * queued on a connection while it was down when it reconnects (its pending
 * buffer is reset: nats-io/nats.js#213), so a request sent then is never
 * answered and a write fails only at its deadline, `Indeterminate`. The
 * gate waits for the connection to come back, within the deadline, and
 * fails with `NotConnected` (retryable, nothing was sent) when it does not.
 */
export class ConnectionGate {
  readonly #connection: NatsConnection;
  #back: Promise<void> | undefined;
  #release: () => void = () => undefined;
  #generation = 0;
  readonly #interruptions = new Set<() => void>();

  constructor(connection: NatsConnection) {
    this.#connection = connection;
    void this.#follow();
  }

  /**
   * Counts the connection's interruptions: what a server told this
   * connection within one generation was said by a server that has not
   * restarted since (a restart closes every connection to it).
   */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Calls `listener` at the connection's next interruption (a disconnect or
   * a reconnect), once; the returned function forgets it.
   */
  onInterruption(listener: () => void): () => void {
    const once = () => {
      this.#interruptions.delete(once);
      listener();
    };
    this.#interruptions.add(once);
    return () => this.#interruptions.delete(once);
  }

  /** Whether a request sent now goes out on a live connection (as far as the client knows). */
  get up(): boolean {
    return this.#back === undefined;
  }

  /** Resolves at once while the connection is up, else once it is back; throws `NotConnected` after `timeoutMs`. */
  async ready(timeoutMs: number, key?: string): Promise<void> {
    const back = this.#back;
    if (back === undefined) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), timeoutMs);
    });
    try {
      if ((await Promise.race([back, late])) === 'late') {
        throw kvError(KvErrorCode.NotConnected, backend, `the connection to NATS has been down for ${timeoutMs} ms; nothing was sent`, {
          key,
          retryable: true,
        });
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async #follow(): Promise<void> {
    for await (const status of this.#connection.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect') {
        this.#generation++;
        for (const listener of [...this.#interruptions]) listener();
      }
      if (status.type === 'disconnect' && this.#back === undefined) {
        this.#back = new Promise((resolve) => {
          this.#release = resolve;
        });
      } else if (status.type === 'reconnect' || status.type === 'close') {
        this.#back = undefined;
        this.#release();
      }
    }
  }
}
