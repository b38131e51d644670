/**
 * The conformance suite must catch realistic bugs in the NATS backend
 * itself: each mutant below is one bug a backend author could write,
 * applied to a copy of this package's source and run against a real
 * nats-server until the first conformance check fails. Every mutant must be
 * caught; the catch rate and the check that caught each one are printed.
 */
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import type { NatsKvStore } from '@weft/kv-nats';
import { findFailingCheck, type KvConformanceHarness, kvConformanceChecks } from '@weft/kv-testkit';
import { type NatsServer, type SourceMutant, writeMutant } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consumerCount, dropBucket, natsMissing, natsServer } from './helpers.js';

const srcDir = fileURLToPath(new URL('../src', import.meta.url));

const mutants: SourceMutant[] = [
  {
    name: 'create takes any sequence mismatch for a live value (a concurrent delete of a tombstone makes it refuse)',
    file: 'nats-kv.ts',
    find: '      expectedSeq = current?.seq ?? 0;',
    replace: "      throw kvError(KvErrorCode.AlreadyExists, backend, 'a live value already exists', { key });",
  },
  {
    name: 'compare-and-swap accepts a tombstone version as the expected one',
    file: 'nats-kv.ts',
    find: "    if (parsed.op !== 'put') {",
    replace: '    if (false) {',
  },
  {
    name: 'tombstone versions carry no suffix (a CAS against a deleted key can match)',
    file: 'nats-kv.ts',
    find: '  return `$' + '{seq}-$' + "{op === 'delete' ? 'd' : 'p'}` as Version;",
    replace: '  return String(seq) as Version;',
  },
  {
    name: 'get shows a passed TTL until the sweeper replaced it',
    file: 'nats-kv.ts',
    find: "if (message === undefined || message.op === 'expire' || expired(message)) return undefined;",
    replace: "if (message === undefined || message.op === 'expire') return undefined;",
  },
  {
    name: 'the state-sync listing shows a passed TTL until the sweeper replaced it',
    file: 'nats-kv.ts',
    find: "!(inListing && (message.op !== 'put' || expired(message)))",
    replace: "!(inListing && message.op !== 'put')",
  },
  {
    name: 'keys and scan list a passed TTL until the sweeper replaced it',
    file: 'nats-kv.ts',
    find: "if (message.op === 'put' && !expired(message) && keyMatchesPrefix(message.key, prefix)) {",
    replace: "if (message.op === 'put' && keyMatchesPrefix(message.key, prefix)) {",
  },
  {
    name: 'keys and scan match prefixes as strings, not whole tokens',
    file: 'nats-kv.ts',
    find: "if (message.op === 'put' && !expired(message) && keyMatchesPrefix(message.key, prefix)) {",
    replace: "if (message.op === 'put' && !expired(message) && message.key.startsWith(prefix ?? '')) {",
  },
  {
    name: "purge writes its marker without the rollup that removes the key's history",
    file: 'nats-kv.ts',
    find: "      if (marker === 'PURGE') headers.set(rollupHeader, 'sub');\n",
    replace: '',
  },
  {
    name: 'a write over a passed, unswept TTL does not settle it first (the option is ignored)',
    file: 'nats-kv.ts',
    find: '    if (!this.capabilities.expireBeforeNextWrite) return;',
    replace: '    return;',
  },
  {
    name: 'every incarnation of a bucket gets the same epoch (cursors of a destroyed bucket resume on its successor)',
    file: 'nats-kv.ts',
    find: '    this.#epoch = Date.parse(parts.info.created).toString(36);',
    replace: "    this.#epoch = '0';",
  },
  {
    name: 'the compaction horizon is ignored on resume',
    file: 'nats-kv.ts',
    find: '    if (seq < horizon) {',
    replace: '    if (false) {',
  },
  {
    name: 'expire markers are written as plain delete markers',
    file: 'nats-kv.ts',
    find: "    headers.set(weftOpHeader, 'expire');\n",
    replace: '',
  },
  {
    name: 'the sweeper expires whatever is latest for the key, even a newer write without a TTL',
    file: 'nats-kv.ts',
    find: "if (current !== undefined && current.op === 'put' && current.expiresAt === entry.expiresAt) {",
    replace: "if (current !== undefined && current.op === 'put') {",
  },
];

describe.skipIf(natsMissing !== undefined)(`NATS backend mutants${natsMissing === undefined ? '' : ` (${natsMissing})`}`, () => {
  let server: NatsServer;
  let raw: NatsConnection;
  const caught: string[] = [];
  beforeAll(async () => {
    ({ server, raw } = await natsServer());
  });
  afterAll(async () => {
    console.log(`[nats mutants] caught ${caught.length} of ${mutants.length}:\n${caught.join('\n')}`);
    await raw?.close();
    await server?.stop();
  });

  for (const mutant of mutants) {
    it(`catches: ${mutant.name}`, async () => {
      const copy = writeMutant(srcDir, mutant);
      try {
        const { openNatsKv } = (await import(copy.entry)) as typeof import('@weft/kv-nats');
        const open = (bucket: string, sweepIntervalMs: number) =>
          openNatsKv({
            servers: server.url,
            bucket,
            create: { history: 10 },
            sweepIntervalMs,
            expireBeforeNextWrite: sweepIntervalMs === 0,
          });
        const harness: KvConformanceHarness = {
          open: (bucket) => open(bucket, 100),
          openUnswept: (bucket) => open(bucket, 0),
          dropBucket: (bucket) => dropBucket(raw, bucket),
          recreateBucket: (bucket) => dropBucket(raw, bucket),
          forgetHistory: async (_bucket, store) => void (await (store as NatsKvStore).compact({ olderThanMs: 0 })),
          watchResources: (bucket) => consumerCount(raw, bucket),
          expireDelayMs: 1500,
          watchDeadlineMs: 3000,
        };
        const failing = await findFailingCheck(kvConformanceChecks, harness, {
          propertyRuns: 50,
          seed: 42,
          linearizabilityHistories: 20,
          log: () => undefined,
        });
        expect(failing, `no conformance check failed on the mutant "${mutant.name}"`).toBeDefined();
        caught.push(`  ${mutant.name}: caught by "${failing?.check.group}: ${failing?.check.name}"`);
      } finally {
        copy.remove();
      }
    }, 300_000);
  }
});
