/**
 * Clauses of replicated buckets, as conformance checks on a 3-node cluster
 * of the current line (run by cluster-stale-cas.test.ts, and by the mutant
 * set on mutated copies of this package).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { KvError, KvErrorCode } from '@weft/kv';
import type { openNatsKv } from '@weft/kv-nats';
import { bytes, type ConformanceCheck, text } from '@weft/kv-testkit';
import type { NatsCluster } from '@weft/test-servers';
import { expect } from 'vitest';

/** JetStream's "wrong last sequence" without a number: the leader cannot decide the expectation yet. */
const undecided = 10164;

/** Opens `bucket` (3 replicas) on `url`, trying again while the cluster elects its meta leader. */
async function openReplicated(open: typeof openNatsKv, url: string, bucket: string) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await open({ servers: url, bucket, create: { history: 5, replicas: 3 }, sweepIntervalMs: 0 });
    } catch (error) {
      if (!(KvError.is(error) && error.retryable) || attempt > 30) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/** The stream's leader and followers once every replica is current. */
async function placement(connection: NatsConnection, stream: string, cluster: NatsCluster) {
  const manager = await jetstreamManager(connection);
  for (;;) {
    const info = await manager.streams.info(stream);
    const replicas = info.cluster?.replicas ?? [];
    const leader = cluster.nodes.find((node) => node.name === info.cluster?.leader);
    if (leader !== undefined && replicas.length === 2 && replicas.every((replica) => replica.current)) {
      return { leader, followers: cluster.nodes.filter((node) => node !== leader) };
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Two compare-and-swap writes expect the same version of a key. The first
 * reaches the stream leader while both followers are stopped, so it stays
 * uncommitted, and the leader answers the second "wrong last sequence"
 * without a number (it cannot decide yet). The followers go on only when
 * the second is sent again (or has settled), every run. The second write
 * must wait for the decision: refused only once the first is committed,
 * naming the first's version as the one found; an undecided answer taken
 * for a refusal names the very version it expected (the first is not
 * visible yet), and giving up on it is a `Timeout`.
 */
export function undecidedCasCheck(open: typeof openNatsKv, cluster: () => Promise<NatsCluster>): ConformanceCheck {
  return {
    group: 'cas',
    name: 'on a replicated bucket, a compare-and-swap the leader cannot decide yet (another write to the key uncommitted) waits for the decision, and its refusal names the version that won',
    run: async (context) => {
      const nodes = await cluster();
      const bucket = `${context.bucket}undecided`;
      const setup = await openReplicated(open, nodes.urls[0] as string, bucket);
      const raw = await connect({ servers: nodes.urls[0] as string });
      const { leader, followers } = await placement(raw, `KV_${bucket}`, nodes);
      const connection = await connect({ servers: leader.url });
      const store = await open({ connection, bucket, sweepIntervalMs: 0 });
      let paused = false;
      const goOn = async () => {
        if (!paused) return;
        paused = false;
        await Promise.all(followers.map((node) => node.resume()));
      };
      let undecidedAnswers = 0;
      // The first write's publish reaches the leader before the second write starts (each reads the key first).
      let firstSent: () => void = () => undefined;
      const firstOut = new Promise<void>((resolve) => {
        firstSent = resolve;
      });
      const request = connection.request.bind(connection);
      Object.assign(connection, {
        request: async (subject: string, payload?: Uint8Array, options?: object) => {
          const key = subject === `$KV.${bucket}.k`;
          if (key && paused) firstSent();
          // Asked again after an undecided answer: the followers go on, and the leader can now decide.
          if (key && undecidedAnswers > 0) await goOn();
          const reply: Msg = await request(subject, payload, options as never);
          if (key && reply.string().includes(`"err_code":${undecided}`)) undecidedAnswers++;
          return reply;
        },
      });
      try {
        const before = await store.put('k', bytes('before'));
        await Promise.all(followers.map((node) => node.pause()));
        paused = true;
        const first = store.update('k', bytes('first'), before);
        first.catch(() => undefined);
        await firstOut;
        const second = await store.update('k', bytes('second'), before).then(
          () => undefined,
          (error: unknown) => error,
        );
        await goOn();
        const winner = await first;
        expect(undecidedAnswers, 'undecided answers of the leader to the second write').toBeGreaterThan(0);
        expect(KvError.is(second, KvErrorCode.RevisionMismatch), `the second write's outcome: ${String(second)}`).toBe(true);
        expect((second as KvError).message).toContain(`found version ${winner}`);
        expect(text((await store.get('k'))?.value ?? bytes('(absent)'))).toBe('first');
      } finally {
        await goOn();
        await store.close();
        await connection.close();
        await raw.close();
        await setup.destroy().catch(() => setup.close().catch(() => undefined));
      }
    },
  };
}
