/** Put-to-watch-event latency of a weft watch, against a baseline sampled alternately. */
import type { KvStore, WatchEvent } from '@weft/kv';
import type { Bench, Figure, Target } from '../harness.js';

export async function watchLatency(
  bench: Bench,
  options: {
    id: string;
    label: string;
    kv: KvStore;
    samples: number;
    baseline: { name: string; sample: () => Promise<number> };
    /** The target ratio; `null` for a figure without one. @default at most 1.2x */
    target?: Target | null;
  },
): Promise<Figure> {
  const controller = new AbortController();
  const events = options.kv.watch({ prefixes: ['latency'], signal: controller.signal })[Symbol.asyncIterator]();
  // Drain the state-sync phase first.
  for (;;) {
    const next = await events.next();
    if (next.done || (next.value as WatchEvent).type === 'synced') break;
  }
  const value = new Uint8Array(64).fill(1);
  let counter = 0;
  const figure = await bench.compareLatency({
    id: options.id,
    label: options.label,
    samples: options.samples,
    ...(options.target === null ? {} : { target: options.target ?? { kind: 'ratio-at-most', value: 1.2 } }),
    weft: async () => {
      const key = `latency.${counter++ % 16}`;
      const started = performance.now();
      const arrival = events.next();
      await options.kv.put(key, value);
      for (let next = await arrival; !next.done; next = await events.next()) {
        const event = next.value as WatchEvent;
        if (event.type === 'put' && event.key === key) break;
      }
      return performance.now() - started;
    },
    baseline: options.baseline,
  });
  controller.abort();
  await events.return?.(undefined);
  return figure;
}
