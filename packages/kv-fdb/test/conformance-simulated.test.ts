// The conformance suite on the FoundationDB backend's logic over the in-process
// simulation of FoundationDB's transaction interface (not a live cluster: see
// conformance-live.test.ts for that).
import { FdbSimulation, openFdbKv } from '@weft/kv-fdb';
import { describeKvConformance } from '@weft/kv-testkit';
import { bucketPrefix, dropBucket, forgetHistory } from './helpers.js';

const simulation = new FdbSimulation();

describeKvConformance('fdb-simulated', {
  open: (bucket) => openFdbKv({ database: simulation, bucket, sweepIntervalMs: 50 }),
  openUnswept: (bucket) => openFdbKv({ database: simulation, bucket, sweepIntervalMs: 0 }),
  dropBucket: (bucket) => dropBucket(simulation, bucket),
  recreateBucket: (bucket) => dropBucket(simulation, bucket),
  forgetHistory,
  watchResources: async (bucket) => simulation.activeWatches(bucketPrefix(bucket)),
  expireDelayMs: 1000,
});
