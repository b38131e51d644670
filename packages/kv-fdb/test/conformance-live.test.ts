// The conformance suite on a live FoundationDB cluster through the real
// `foundationdb` binding. It runs only when FDB_CLUSTER_FILE names a cluster
// file (and the binding plus libfdb_c are installed); see
// docs/guides/foundationdb.md.
import { openFdbKv } from '@weft/kv-fdb';
import { describeKvConformance } from '@weft/kv-testkit';
import { describe } from 'vitest';
import { forgetHistory } from './helpers.js';

const clusterFile = process.env.FDB_CLUSTER_FILE;
const namespace = `weft-test-${process.pid}`;

if (clusterFile === undefined || clusterFile === '') {
  const reason =
    'FDB_CLUSTER_FILE is not set: the live FoundationDB suite needs a cluster (the fdb-simulated suite ran the same checks on the simulation)';
  console.warn(`SKIPPING kv conformance: fdb (${reason})`);
  describe.skip(`kv conformance: fdb (${reason})`, () => undefined);
} else {
  describeKvConformance('fdb', {
    open: (bucket) => openFdbKv({ bucket, clusterFile, namespace, sweepIntervalMs: 100 }),
    openUnswept: (bucket) => openFdbKv({ bucket, clusterFile, namespace, sweepIntervalMs: 0 }),
    recreateBucket: async (bucket) => {
      const store = await openFdbKv({ bucket, clusterFile, namespace, sweepIntervalMs: 0, maintenanceIntervalMs: 0 });
      await store.destroyBucket();
      await store.close();
    },
    dropBucket: async (bucket) => {
      // Clear the bucket through a fresh handle's own database.
      const store = await openFdbKv({ bucket, clusterFile, namespace, sweepIntervalMs: 0, maintenanceIntervalMs: 0 });
      await store.destroyBucket();
      await store.close();
    },
    forgetHistory,
    expireDelayMs: 2000,
  });
}
