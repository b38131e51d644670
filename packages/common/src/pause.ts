import { setTimeout as delay } from 'node:timers/promises';

/**
 * Waits `ms` milliseconds, or less when `signal` aborts; never rejects, so
 * retry loops can wait without a try around it (they check their signal).
 */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  try {
    await delay(ms, undefined, signal === undefined ? undefined : { signal });
  } catch {
    // Aborted.
  }
}
