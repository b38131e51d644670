/**
 * Compare-and-swap and commit on a replicated bucket (3-node cluster, current line)
 * while refused writes are in flight: stale conditional writes from clients
 * on every node race one valid update, round after round, and the valid one
 * must win every time (a refused write changes nothing, so nothing else can
 * have replaced the version it expects).
 */

import { KvError, type Version } from '@weft/kv';
import { bytes, kvConformanceChecks } from '@weft/kv-testkit';
import { type NatsCluster, natsUnavailable, startNatsCluster } from '@weft/test-servers';
import { afterAll, describe, expect, it } from 'vitest';
import { undecidedCasCheck } from './cluster-clauses.js';
import { passesOnCluster } from './helpers.js';

type NatsModule = typeof import('@weft/kv-nats');

const missing = natsUnavailable('current');
const rounds = process.env.WEFT_LONG === '1' ? 1000 : 200;

let cluster: Promise<NatsCluster> | undefined;
const started = () => {
  cluster ??= startNatsCluster({ nodes: 3, line: 'current' });
  return cluster;
};
afterAll(async () => (await cluster)?.stop(), 60_000);

let buckets = 0;

/** One valid update races stale ones from clients on every node: the valid one must win, every round. */
async function validUpdateWins({ openNatsKv }: NatsModule): Promise<void> {
  const nodes = (await started()).nodes;
  const bucket = `race${++buckets}${process.pid}`;
  // The bucket is made once (the cluster may still be electing its meta leader: a retryable failure is tried
  // again), then a client on every node opens it.
  type Store = Awaited<ReturnType<NatsModule['openNatsKv']>>;
  const open = (url: string) => openNatsKv({ servers: url, bucket, create: { history: 5, replicas: 3 }, sweepIntervalMs: 0 });
  let first: Store | undefined;
  for (let attempt = 0; first === undefined; attempt++) {
    try {
      first = await open(nodes[0]?.url as string);
    } catch (error) {
      if (!(KvError.is(error) && error.retryable) || attempt > 30) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  const stores: Store[] = [first];
  for (const node of nodes) for (const _ of [0, 1]) stores.push(await open(node.url));
  try {
    const [writer, ...others] = stores as [
      Awaited<ReturnType<NatsModule['openNatsKv']>>,
      ...Awaited<ReturnType<NatsModule['openNatsKv']>>[],
    ];
    // Stale: a version the key had before and never has again.
    const stale = await writer.put('k', bytes('old'));
    let version: Version = await writer.put('k', bytes('0'));
    for (let round = 1; round <= rounds; round++) {
      // Conditional writes that must fail, in flight through every node when the valid one arrives.
      const staleWrites = others.map((store) => store.update('k', bytes('stale'), stale).catch(() => undefined));
      const outcome = await writer.update('k', bytes(String(round)), version).then(
        (next) => ({ ok: true as const, next }),
        (error: unknown) => ({ ok: false as const, error }),
      );
      await Promise.all(staleWrites);
      if (!outcome.ok) {
        // Nothing else could have replaced the version: a refusal here is the bug.
        const current = await writer.get('k');
        expect.soft(KvError.is(outcome.error, 'RevisionMismatch')).toBe(false);
        throw new Error(
          `round ${round}: the valid update failed (${String(outcome.error)}) though the key still holds ${current?.version}`,
        );
      }
      version = outcome.next;
    }
  } finally {
    for (const store of stores) await store.destroy().catch(() => store.close().catch(() => undefined));
  }
}

describe.skipIf(missing !== undefined)(
  `nats 3-node cluster (current line): a valid compare-and-swap wins over stale ones in flight`,
  () => {
    it(`the valid update of each of ${rounds} rounds succeeds`, async () => {
      await validUpdateWins(await import('@weft/kv-nats'));
    }, 300_000);
  },
);

describe.skipIf(missing !== undefined)('nats 3-node cluster (current line): an undecided compare-and-swap', () => {
  it('waits for the leader to decide, and its refusal names the version that won', async () => {
    await passesOnCluster(started, ({ openNatsKv }) => undecidedCasCheck(openNatsKv, started));
  }, 120_000);
});

describe.skipIf(missing !== undefined)('nats 3-node cluster (current line): commit on a replicated bucket', () => {
  for (const check of kvConformanceChecks.filter((candidate) => candidate.group === 'commit')) {
    it(check.name, async () => {
      await passesOnCluster(started, check, { history: 1, replicas: 3 });
    }, 120_000);
  }
});
