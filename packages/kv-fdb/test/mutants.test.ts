/**
 * The conformance suite must catch realistic bugs in the FoundationDB
 * backend's logic: each mutant below is one bug a backend author could
 * write, applied to a copy of this package's source and run on the
 * in-process simulation of FoundationDB's transaction interface (not a live
 * cluster) until the first conformance check fails. Every mutant must be
 * caught; the catch rate and the check that caught each one are printed.
 */
import { fileURLToPath } from 'node:url';
import type { WatchCursor } from '@weft/kv';
import { FdbSimulation } from '@weft/kv-fdb';
import { describeKvMutants, type SourceMutant } from '@weft/kv-testkit';
import { bucketPrefix, dropBucket } from './helpers.js';

const srcDir = fileURLToPath(new URL('../src', import.meta.url));

const mutants: SourceMutant[] = [
  {
    name: 'a tombstone counts as a live value (create refuses over it, CAS matches its version)',
    file: 'driver.ts',
    find: "const live = record !== undefined && record.op === 'put' && !this.expired(record);",
    replace: 'const live = record !== undefined && !this.expired(record);',
  },
  {
    name: 'get shows a passed TTL until the sweeper removed it',
    file: 'driver.ts',
    find: "if (found === undefined || found.record.op !== 'put' || this.expired(found.record)) return undefined;",
    replace: "if (found === undefined || found.record.op !== 'put') return undefined;",
  },
  {
    name: 'listings show a passed TTL until the sweeper removed it',
    file: 'driver.ts',
    find: "if (record.op !== 'put' || this.expired(record)) continue;",
    replace: "if (record.op !== 'put') continue;",
  },
  {
    name: 'the change log is read from the cursor entry itself (off by one on resume)',
    file: 'layout.ts',
    find: 'return Buffer.concat([this.log, version, zero]);',
    replace: 'return Buffer.concat([this.log, version]);',
  },
  {
    name: 'the change feed does not report the retention horizon (a cursor below it resumes anyway)',
    file: 'change-log.ts',
    find: 'head: batch.bounds.head, horizon: batch.bounds.horizon };',
    replace: 'head: batch.bounds.head, horizon: undefined };',
  },
  {
    name: 'a write over a passed, unswept TTL logs no expire before itself',
    file: 'driver.ts',
    find: "    if (found.lapsed) tn.setVersionstampedKey(layout.log, order(expireAt), encodeLogEntry('expire', key));\n",
    replace: '',
  },
  {
    name: 'a TTL put lives a second longer than asked',
    file: 'driver.ts',
    find: 'const expiresAt = ttlMs === undefined ? 0 : this.clock.now() + ttlMs;',
    replace: 'const expiresAt = ttlMs === undefined ? 0 : this.clock.now() + ttlMs + 1000;',
  },
  {
    name: "a commit runs one transaction per operation (not all or nothing; another commit's writes interleave)",
    file: 'driver.ts',
    find: "    return runWrite(this, 'commit',",
    replace:
      "    if (count > 0) return Promise.all(mutations.map((mutation) => this.mutate(mutation)));\n    return runWrite(this, 'commit',",
  },
];

describeKvMutants<typeof import('@weft/kv-fdb')>('fdb-simulated', mutants, {
  srcDir,
  harness: ({ openFdbKv }) => {
    const simulation = new FdbSimulation();
    return {
      open: (bucket) => openFdbKv({ database: simulation, bucket, sweepIntervalMs: 50 }),
      openUnswept: (bucket) => openFdbKv({ database: simulation, bucket, sweepIntervalMs: 0 }),
      dropBucket: (bucket) => dropBucket(simulation, bucket),
      recreateBucket: (bucket) => dropBucket(simulation, bucket),
      // The mutant's own class: trim through the store it opened.
      forgetHistory: async (_bucket, store) =>
        void (await (store as unknown as { trimHistory(options: { through: WatchCursor }): Promise<unknown> }).trimHistory({
          through: 'f'.repeat(24) as WatchCursor,
        })),
      watchResources: async (bucket) => simulation.activeWatches(bucketPrefix(bucket)),
      expireDelayMs: 1000,
    };
  },
});
