import type { createMemoryKvServer as CreateMemoryKvServer, ManualClock, openMemoryKv as OpenMemoryKv } from '@weft/kv';
import type { KvConformanceHarness } from '@weft/kv-testkit';

/**
 * The conformance harness on a fresh memory server of `module` (this
 * package, or a mutated copy of its source). Memory expires by its own
 * timers, not a sweeper: every handle is unswept.
 */
export function memoryHarness(
  module: { createMemoryKvServer: typeof CreateMemoryKvServer; openMemoryKv: typeof OpenMemoryKv },
  clock?: ManualClock,
): KvConformanceHarness {
  const server = module.createMemoryKvServer();
  const open = (bucket: string) => module.openMemoryKv({ server, bucket, ...(clock === undefined ? {} : { clock }) });
  return {
    open,
    openUnswept: open,
    dropBucket: async (bucket) => server.deleteBucket(bucket),
    recreateBucket: async (bucket) => server.deleteBucket(bucket),
    forgetHistory: async (bucket) => server.forgetHistory(bucket),
    watchResources: async (bucket) => server.activeWatches(bucket),
    ...(clock === undefined ? { expireDelayMs: 100 } : { clock }),
  };
}
