/**
 * What a replicated bucket's clients are told while part of the cluster is
 * behind (3-node cluster, current line, every route through a link of its
 * own): a leader cut off from its replicas, and a watch's or a listing's
 * consumer on a follower that has not applied every acknowledged write
 * (cluster-clauses.ts; the mutant set runs the same checks on mutated
 * copies of this package).
 */

import { connect } from '@nats-io/transport-node';
import { type ConformanceCheck, runConformanceCheck } from '@weft/kv-testkit';
import { type NatsCluster, type NatsServer, natsUnavailable, startNatsCluster } from '@weft/test-servers';
import { afterAll, describe, expect, it } from 'vitest';
import { cutOffLeaderCheck, laggingReplicaCheck } from './cluster-clauses.js';
import { natsHarness } from './helpers.js';

type NatsModule = typeof import('@weft/kv-nats');

const missing = natsUnavailable('current');
const rounds = process.env.WEFT_LONG === '1' ? 40 : 6;

let cluster: Promise<NatsCluster> | undefined;
const started = () => {
  cluster ??= startNatsCluster({ nodes: 3, line: 'current', links: true });
  return cluster;
};
afterAll(async () => (await cluster)?.stop(), 60_000);

/** Runs `check` with a harness on the cluster's first node; it must pass. */
async function passes(check: (module: NatsModule) => ConformanceCheck): Promise<void> {
  const module = await import('@weft/kv-nats');
  const server = (await started()).nodes[0] as NatsServer;
  const raw = await connect({ servers: server.url });
  try {
    const outcome = await runConformanceCheck(check(module), natsHarness(module.openNatsKv, { server, raw }), {
      propertyRuns: 1,
      seed: 1,
      log: (line) => console.log(line),
    });
    expect(outcome.status).toBe('passed');
  } finally {
    await raw.close();
  }
}

describe.skipIf(missing !== undefined)('nats 3-node cluster (current line): answers from nodes that are behind', () => {
  it('a leader cut off from its replicas gives its clients no read or refusal from its older state', async () => {
    await passes(({ openNatsKv }) => cutOffLeaderCheck(openNatsKv, started));
  }, 120_000);

  it(`a watch's synced and a listing's end come after every acknowledged write, wherever their consumer sits (${rounds} rounds)`, async () => {
    await passes(({ openNatsKv }) => laggingReplicaCheck(openNatsKv, started, rounds));
  }, 300_000);
});
