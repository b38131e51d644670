/** Small helpers of sync: an abortable sleep and hex of bytes. */

/** Waits `ms`, or less when `signal` aborts; never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    if (signal?.aborted) return done();
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Lowercase hex of bytes. */
export const hexOf = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
