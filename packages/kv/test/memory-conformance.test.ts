import { createMemoryKvServer, ManualClock, openMemoryKv } from '@weft/kv';
import { describeKvConformance } from '@weft/kv-testkit';

const server = createMemoryKvServer();
describeKvConformance('memory', {
  open: (bucket) => openMemoryKv({ server, bucket }),
  // Memory expires by its own timers, not a sweeper: every handle is unswept.
  openUnswept: (bucket) => openMemoryKv({ server, bucket }),
  dropBucket: async (bucket) => server.deleteBucket(bucket),
  recreateBucket: async (bucket) => server.deleteBucket(bucket),
  forgetHistory: async (bucket) => server.forgetHistory(bucket),
  watchResources: async (bucket) => server.activeWatches(bucket),
  expireDelayMs: 100,
});

const clock = new ManualClock(Date.UTC(2026, 0, 1));
const manualServer = createMemoryKvServer();
describeKvConformance('memory (manual clock)', {
  open: (bucket) => openMemoryKv({ server: manualServer, bucket, clock }),
  openUnswept: (bucket) => openMemoryKv({ server: manualServer, bucket, clock }),
  dropBucket: async (bucket) => manualServer.deleteBucket(bucket),
  recreateBucket: async (bucket) => manualServer.deleteBucket(bucket),
  forgetHistory: async (bucket) => manualServer.forgetHistory(bucket),
  watchResources: async (bucket) => manualServer.activeWatches(bucket),
  clock,
});
