/**
 * What a replicated bucket's clients are told while part of the cluster is
 * behind (3-node cluster, current line, every route through a link of its
 * own): a leader cut off from its replicas, and a watch's or a listing's
 * consumer on a follower that has not applied every acknowledged write
 * (cluster-clauses.ts; the mutant set runs the same checks on mutated
 * copies of this package).
 */

import { type NatsCluster, natsUnavailable, startNatsCluster } from '@weft/test-servers';
import { afterAll, describe, it } from 'vitest';
import { cutOffLeaderCheck, laggingReplicaCheck } from './cluster-clauses.js';
import { passesOnCluster } from './helpers.js';

const missing = natsUnavailable('current');
const rounds = process.env.WEFT_LONG === '1' ? 40 : 6;

let cluster: Promise<NatsCluster> | undefined;
const started = () => {
  cluster ??= startNatsCluster({ nodes: 3, line: 'current', links: true });
  return cluster;
};
afterAll(async () => (await cluster)?.stop(), 60_000);

describe.skipIf(missing !== undefined)('nats 3-node cluster (current line): answers from nodes that are behind', () => {
  it('a leader cut off from its replicas gives its clients no read or refusal from its older state', async () => {
    await passesOnCluster(started, ({ openNatsKv }) => cutOffLeaderCheck(openNatsKv, started), { log: true });
  }, 120_000);

  it(`a watch's synced and a listing's end come after every acknowledged write, wherever their consumer sits (${rounds} rounds)`, async () => {
    await passesOnCluster(started, ({ openNatsKv }) => laggingReplicaCheck(openNatsKv, started, rounds), { log: true });
  }, 300_000);
});
