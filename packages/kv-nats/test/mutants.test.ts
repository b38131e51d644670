/**
 * The conformance suite must catch realistic bugs in the NATS backend
 * itself: each mutant below is one bug a backend author could write,
 * applied to a copy of this package's source and run against a real
 * nats-server until the first conformance check fails. Every mutant must be
 * caught; the catch rate and the check that caught each one are printed.
 */
import { fileURLToPath } from 'node:url';
import { describeKvMutants, type SourceMutant } from '@weft/kv-testkit';
import { type NatsCluster, natsUnavailable, startNatsCluster } from '@weft/test-servers';
import { afterAll } from 'vitest';
import { commitTombstoneRace, natsClauseChecks } from './clauses.js';
import { cutOffLeaderCheck, laggingReplicaCheck, undecidedCasCheck } from './cluster-clauses.js';
import { type NatsFixture, natsHarness, natsMissing, natsServer } from './helpers.js';

const srcDir = fileURLToPath(new URL('../src', import.meta.url));

const mutants: SourceMutant[] = [
  {
    name: 'create takes any sequence mismatch for a live value (a concurrent delete of a tombstone makes it refuse)',
    file: 'driver.ts',
    find: '      expectedSeq = current?.seq ?? 0;',
    replace: "      throw kvError(KvErrorCode.AlreadyExists, backend, 'a live value already exists', { key });",
  },
  {
    name: 'compare-and-swap accepts a tombstone version as the expected one',
    file: 'driver.ts',
    find: "    if (parsed.op !== 'put' || (parsed.expiresAt > 0 && parsed.expiresAt <= Date.now())) {",
    replace: '    if (parsed.expiresAt > 0 && parsed.expiresAt <= Date.now()) {',
  },
  {
    name: 'tombstone versions carry no suffix (a CAS against a deleted key can match)',
    file: 'codec.ts',
    find: "  if (op !== 'put') return `$" + '{seq}-$' + "{op === 'delete' ? 'd' : 'p'}` as Version;",
    replace: "  if (op !== 'put') return String(seq) as Version;",
  },
  {
    name: 'get shows a passed TTL until the sweeper replaced it',
    file: 'driver.ts',
    find: "if (message === undefined || message.op === 'expire' || expired(message)) return undefined;",
    replace: "if (message === undefined || message.op === 'expire') return undefined;",
  },
  {
    name: 'the state-sync listing shows a passed TTL until the sweeper replaced it (the feed drops the expiry)',
    firstCheck: 'reads as absent to get, entry, keys, scan, state-sync',
    file: 'change-feed.ts',
    find: '      expiresAt: message.expiresAt,\n',
    replace: '',
  },
  {
    name: 'keys and scan list a passed TTL until the sweeper replaced it',
    file: 'driver.ts',
    find: "if (message.op === 'put' && !expired(message) && keyMatchesPrefix(message.key, prefix)) {",
    replace: "if (message.op === 'put' && keyMatchesPrefix(message.key, prefix)) {",
  },
  {
    name: 'keys and scan match prefixes as strings, not whole tokens',
    file: 'driver.ts',
    find: "if (message.op === 'put' && !expired(message) && keyMatchesPrefix(message.key, prefix)) {",
    replace: "if (message.op === 'put' && !expired(message) && message.key.startsWith(prefix ?? '')) {",
  },
  {
    name: "purge writes its marker without the rollup that removes the key's history",
    firstCheck: 'purge reclaims history',
    file: 'driver.ts',
    find: "      if (marker === 'PURGE') headers.set(rollupHeader, 'sub');\n",
    replace: '',
  },
  {
    name: 'a write over a passed, unswept TTL does not settle it first (the option is ignored)',
    firstCheck: "comes after that key's expire event, live and on resume",
    file: 'ttl-index.ts',
    find: '  if (!driver.capabilities.expireBeforeNextWrite) return;',
    replace: '  return;',
  },
  {
    name: 'every incarnation of a bucket gets the same epoch (cursors of a destroyed bucket resume on its successor)',
    firstCheck: 'a cursor from an earlier incarnation of the bucket',
    file: 'codec.ts',
    find: '  return Date.parse(created).toString(36);',
    replace: "  return '0';",
  },
  {
    name: 'the compaction horizon is ignored on resume',
    firstCheck: 'a cursor whose history is gone fails with CursorExpired',
    file: 'change-feed.ts',
    find: '    horizon: { seq: Math.max(horizon, limitsHorizon(info)), stamp: 0 },',
    replace: '    horizon: { seq: limitsHorizon(info), stamp: 0 },',
  },
  {
    name: 'the limits horizon ignores max_bytes (a bucket that dropped old messages to its size resumes across the gap)',
    firstCheck: 'max_bytes',
    file: 'change-feed.ts',
    find: '  const lossy = config.max_age > 0 || config.max_msgs > 0 || config.max_bytes > 0;',
    replace: '  const lossy = config.max_age > 0 || config.max_msgs > 0;',
  },
  {
    name: 'the compaction horizon is taken from the oldest removed tombstone, not the newest',
    firstCheck: "compaction's horizon is the newest tombstone",
    file: 'horizon.ts',
    find: '  const horizon = Math.max(previous, ...doomed.map((message) => message.seq));',
    replace: '  const horizon = Math.max(previous, Math.min(...doomed.map((message) => message.seq)));',
  },
  {
    name: 'expire markers are written as plain delete markers',
    firstCheck: 'an entry with a TTL is visible until the TTL passes',
    file: 'ttl-index.ts',
    find: "  headers.set(weftOpHeader, 'expire');\n",
    replace: '',
  },
  {
    name: 'the sweeper expires whatever is latest for the key, even a newer write without a TTL',
    file: 'ttl-index.ts',
    find: "if (current !== undefined && current.op === 'put' && current.expiresAt === entry.expiresAt) {",
    replace: "if (current !== undefined && current.op === 'put') {",
  },
  {
    name: "the sweeper's expire marker is written unconditionally (a write landing after the sweeper's read is deleted)",
    firstCheck: 'expire marker is conditional',
    file: 'ttl-index.ts',
    find: 'await driver.publish(key, new Uint8Array(0), operation, { lastSubjectSequence: seq }, undefined, headers);',
    replace: 'await driver.publish(key, new Uint8Array(0), operation, undefined, undefined, headers);',
  },
  {
    name: 'a compare-and-swap sent again takes the refusal its own earlier attempt caused for a mismatch',
    firstCheck: 'whose answer was lost',
    file: 'driver.ts',
    find: '      if (current !== undefined && current.writeId === writeId) return current.seq;\n',
    replace: '',
  },
  {
    name: 'compare-and-swap trusts the sequence alone (a server that forgot a write applies its version to the next write at that sequence)',
    firstCheck: 'forgets acknowledged writes',
    file: 'driver.ts',
    find: '    if (parsed.writeId !== undefined && !this.#vouched.has(key, expected)) {',
    replace: "    if (parsed.writeId === 'never') {",
  },
  {
    name: 'a version this handle wrote stays vouched for across an interrupted connection (its compare-and-swap skips the read)',
    firstCheck: 'forgets acknowledged writes',
    file: 'vouched.ts',
    find: '    if (this.#generation !== this.#gate.generation || this.#versions.get(key) !== version) return false;',
    replace: '    if (this.#versions.get(key) !== version) return false;',
  },
  {
    name: 'a watch resumes after a sequence whose message the server forgot once a later write took that sequence',
    firstCheck: 'forgets acknowledged writes',
    file: 'consumer.ts',
    find: '  return stored !== undefined && !sameStamp(stored.timeMs, reading.stamp);',
    replace: '  return false;',
  },
];

/**
 * Bugs in the native TTL and the batch reads of 2.11+, run on the current line, where buckets weft creates are native,
 * and in what replicated buckets trust of nodes that are behind.
 */
const nativeMutants: SourceMutant[] = [
  {
    name: "a replicated bucket's reads and refusals trust a leader that has not heard from its replicas (a cut-off leader answers from its older state)",
    firstCheck: 'a leader cut off from its replicas',
    file: 'leader.ts',
    find: '    if (silence !== undefined && silence < leaderContactMs) return;',
    replace: '    return;',
  },
  {
    name: 'a watch or a listing on a replicated bucket counts as caught up once the follower its consumer sits on has nothing pending',
    firstCheck: "a watch's synced and a listing's end",
    file: 'consumer.ts',
    find: '          if (reachedTarget || position >= target) return true;',
    replace: '          return true;',
  },
  {
    name: "getMany takes a key's tombstone or passed TTL for its value (batch reads, and the leader's reads on replicated buckets)",
    file: 'driver.ts',
    find: "if (message === undefined || message.op !== 'put' || expired(message)) return undefined;",
    replace: 'if (message === undefined) return undefined;',
  },
  {
    name: 'the TTL handed to the server is rounded down to whole seconds (a value disappears early)',
    file: 'codec.ts',
    find: '  return `$' + '{Math.max(1, Math.ceil(ttlMs / 1000))}s`;',
    replace: '  return `$' + '{Math.max(1, Math.floor(ttlMs / 1000))}s`;',
  },
  {
    name: 'a native putWithTtl does not hand the server its TTL (the value never expires)',
    firstCheck: 'an expiry shows up in watches as an expire event',
    file: 'driver.ts',
    find: '        if (this.nativeTtl) headers.set(ttlHeader, serverTtl(mutation.ttlMs));\n',
    replace: '',
  },
  {
    name: "the server's expiry marker is read as a put of an empty value",
    file: 'codec.ts',
    find: "  if (reason === 'MaxAge') return 'expire';\n",
    replace: '',
  },
  {
    name: "the server's expiry marker is reported as a delete, not an expire",
    file: 'codec.ts',
    find: "  if (reason === 'MaxAge') return 'expire';",
    replace: "  if (reason === 'MaxAge') return 'delete';",
  },
  {
    name: "a replicated stream leader's undecided answer (10164) is reported as a mismatch",
    firstCheck: 'the leader cannot decide yet',
    file: 'driver.ts',
    find: '  if (undecided >= maxUndecidedRetries) throw unsettled();',
    replace: "  throw kvError(KvErrorCode.RevisionMismatch, backend, 'expected version is not the current one');",
  },
  {
    name: "a replicated stream leader's undecided answer (10164) is given up on at once",
    firstCheck: 'the leader cannot decide yet',
    file: 'driver.ts',
    find: '  if (undecided >= maxUndecidedRetries) throw unsettled();',
    replace: '  throw unsettled();',
  },
  {
    name: "a commit's batch carries only its first operation's precondition (a later one is never checked)",
    firstCheck: 'a commit whose precondition fails writes nothing',
    file: 'driver.ts',
    find: "      if (seq !== undefined) headers.set('Nats-Expected-Last-Subject-Sequence', String(seq));",
    replace: "      if (seq !== undefined && index === 0) headers.set('Nats-Expected-Last-Subject-Sequence', String(seq));",
  },
  {
    name: 'a commit is published message by message, not as one atomic batch',
    firstCheck: 'a commit whose precondition fails writes nothing',
    file: 'driver.ts',
    find: '        ack = await this.#sendBatch(messages);',
    replace:
      '        let reply = {};\n        for (const m of messages) reply = (await this.parts.connection.request(m.subject, m.value, { headers: m.headers, timeout: this.parts.timeoutMs })).json();\n        ack = { ...reply, count: messages.length };',
  },
  {
    name: 'a commit refused because a delete wrote a new tombstone under its create is reported refused, not sent again',
    firstCheck: 'a tombstone that a delete replaced',
    file: 'driver.ts',
    find: '    // Every precondition holds on a fresh read (a tombstone was written under a create): no refusal.\n    return undefined;',
    replace: "    return kvError(KvErrorCode.RevisionMismatch, backend, 'the server refused the commit', { key: mutations[0]?.key });",
  },
];

const fixture = {} as NatsFixture;
const currentFixture = {} as NatsFixture;
const currentMissing = natsUnavailable('current');
// A 3-node cluster for the replicated-bucket clause, started the first time a check needs it.
let cluster: Promise<NatsCluster> | undefined;
const replicated = () => {
  cluster ??= startNatsCluster({ nodes: 3, line: 'current' });
  return cluster;
};
afterAll(async () => (await cluster)?.stop(), 60_000);
// A 3-node cluster with every route through a link, for the checks that cut a node off.
let linkedCluster: Promise<NatsCluster> | undefined;
const linked = () => {
  linkedCluster ??= startNatsCluster({ nodes: 3, line: 'current', links: true });
  return linkedCluster;
};
afterAll(async () => (await linkedCluster)?.stop(), 60_000);

describeKvMutants<typeof import('@weft/kv-nats')>('nats', mutants, {
  srcDir,
  skip: natsMissing,
  setup: async () => {
    Object.assign(fixture, await natsServer());
  },
  teardown: async () => {
    await fixture.raw?.close();
    await fixture.server?.stop();
  },
  harness: ({ openNatsKv }) => natsHarness(openNatsKv, fixture),
  extraChecks: ({ openNatsKv }) => natsClauseChecks(openNatsKv, fixture, { emulatedTtl: true }),
});

describeKvMutants<typeof import('@weft/kv-nats')>('nats (current line)', nativeMutants, {
  srcDir,
  skip: currentMissing,
  setup: async () => {
    Object.assign(currentFixture, await natsServer('current'));
  },
  teardown: async () => {
    await currentFixture.raw?.close();
    await currentFixture.server?.stop();
  },
  harness: ({ openNatsKv }) => natsHarness(openNatsKv, currentFixture, 1),
  extraChecks: ({ openNatsKv }) => [
    commitTombstoneRace(openNatsKv, currentFixture),
    undecidedCasCheck(openNatsKv, replicated),
    cutOffLeaderCheck(openNatsKv, linked),
    laggingReplicaCheck(openNatsKv, linked, 10),
  ],
});
