/**
 * Clauses of replicated buckets, as conformance checks on a 3-node cluster
 * of the current line (run by cluster-stale-cas.test.ts, and by the mutant
 * set on mutated copies of this package).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { KvError, KvErrorCode, type Version } from '@weft/kv';
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

/**
 * Retries `call` on retryable failures (a cluster electing a leader, or
 * placing no stream while it counts a node offline after a fault) and on
 * `Indeterminate` ones (only for writes that may land twice), for up to
 * 30 s.
 */
async function retrying<T>(call: () => Promise<T>): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      return await call();
    } catch (error) {
      const again = KvError.is(error) && (error.retryable || error.code === KvErrorCode.Indeterminate);
      if (!again || Date.now() - started > 30_000) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** What an operation gave: its result, or the code of the typed error it failed with. */
async function outcome<T>(call: () => Promise<T>): Promise<{ ok: T } | { code: string; retryable: boolean }> {
  try {
    return { ok: await call() };
  } catch (error) {
    if (!KvError.is(error)) throw error;
    return { code: error.code, retryable: error.retryable };
  }
}

/** The stream's leader, once it has one. */
export async function leaderOf(urls: readonly string[], stream: string): Promise<string> {
  const admin = await connect({ servers: [...urls] });
  try {
    const manager = await jetstreamManager(admin);
    for (const deadline = Date.now() + 30_000; ; ) {
      const leader = (await manager.streams.info(stream)).cluster?.leader;
      if (leader !== undefined && leader !== '') return leader;
      if (Date.now() > deadline) throw new Error(`${stream} has no leader after 30 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await admin.close();
  }
}

/**
 * A leader cut off from its replicas goes on answering the clients on its
 * node from its own, older state until it notices it lost its quorum
 * (10-20 s), while the other two elect a new leader after 4-9 s and take
 * writes. Its client must never be given that older state: a read gives
 * the current value or fails retryable, a compare-and-swap on the current
 * version is never refused `RevisionMismatch`, a create over the new
 * leader's delete never `AlreadyExists`. Healed, the client reads and
 * writes the current state. Needs a cluster started with `links`.
 */
export function cutOffLeaderCheck(open: typeof openNatsKv, cluster: () => Promise<NatsCluster>): ConformanceCheck {
  return {
    group: 'linearizability',
    name: 'on a replicated bucket, a leader cut off from its replicas gives its clients no read or refusal from its older state',
    run: async (context) => {
      const nodes = await cluster();
      // A round shows something only when the cut-off node still took itself for the leader as its client asked
      // (it does for 10-20 s, most of the time): up to three rounds, on a new bucket each, until one did.
      for (let round = 0; round < 3; round++) {
        if (await cutOffRound(nodes, `${context.bucket}cut${round}`, context)) return;
      }
    },
  };

  /** One cut of the leader; whether the cut-off node still took itself for the leader when its client asked. */
  async function cutOffRound(nodes: NatsCluster, bucket: string, context: { log: (message: string) => void }): Promise<boolean> {
    const openOn = (servers: string | string[]) =>
      open({ servers, bucket, create: { replicas: 3, history: 5 }, timeoutMs: 2000, sweepIntervalMs: 0 });
    const urls = [...nodes.urls];
    const writer = await retrying(() => openOn(urls));
    const stores = [writer];
    try {
      await retrying(() => writer.put('k', bytes('v1')));
      await retrying(() => writer.put('gone', bytes('x')));
      const leaderName = await leaderOf(urls, `KV_${bucket}`);
      const leader = nodes.nodes.findIndex((node) => node.name === leaderName);
      // One client on the leader's node only, one on the others.
      const onLeader = await openOn(nodes.nodes[leader]?.url as string);
      const others = await openOn(urls.filter((_, index) => index !== leader));
      stores.push(onLeader, others);
      // A version the cut-off leader will still hold as the current one.
      const before = (await onLeader.get('k'))?.version as Version;

      nodes.isolate(leader);
      const cutAt = Date.now();
      // The other two elect a leader of their own and take writes.
      const current = await retrying(() => others.put('k', bytes('v2')));
      await retrying(() => others.delete('gone'));
      const elected = Date.now() - cutAt;
      // Whether the cut-off node still takes itself for the leader when its client asks (it does for 10-20 s).
      const local = await connect({ servers: nodes.nodes[leader]?.url as string });
      const stillLeads = await jetstreamManager(local, { timeout: 1000, checkAPI: false })
        .then((manager) => manager.streams.info(`KV_${bucket}`))
        .then((info) => info.cluster?.leader === leaderName)
        .catch(() => false);
      await local.close();

      const read = await outcome(() => onLeader.get('k'));
      const update = await outcome(() => onLeader.update('k', bytes('v3'), current));
      const create = await outcome(() => onLeader.create('gone', bytes('again')));
      const outdated = await outcome(() => onLeader.update('k', bytes('v3'), before));
      context.log(
        `a new leader took writes ${elected} ms after the cut; the cut-off node ${stillLeads ? 'still took itself for the leader' : 'did not answer as the leader'} when its client asked: ` +
          `get ${JSON.stringify('ok' in read ? { value: text(read.ok?.value ?? bytes('(absent)')) } : read)}, update ${JSON.stringify(update)}, create ${JSON.stringify(create)}`,
      );
      if ('ok' in read) expect(text(read.ok?.value ?? bytes('(absent)')), 'a read on the cut-off node').toBe('v2');
      else expect(read.retryable, `a failed read on the cut-off node: ${read.code}`).toBe(true);
      expect('ok' in update, 'an update on the cut-off node').toBe(false);
      expect(update, 'an update of the current version on the cut-off node').not.toMatchObject({ code: 'RevisionMismatch' });
      expect('ok' in create, 'a create on the cut-off node').toBe(false);
      expect(create, "a create over the new leader's delete on the cut-off node").not.toMatchObject({ code: 'AlreadyExists' });
      expect('ok' in outdated, 'an update of an outdated version').toBe(false);

      nodes.rejoin();
      await nodes.settled();
      // Healed: the client on the old leader's node reads what the others wrote, and its writes apply.
      let healed = await outcome(() => onLeader.get('k'));
      for (const deadline = Date.now() + 30_000; !('ok' in healed) && Date.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        healed = await outcome(() => onLeader.get('k'));
      }
      expect('ok' in healed ? healed.ok?.version : healed, 'the version read on the healed node').toBe(current);
      await retrying(() => onLeader.update('k', bytes('v3'), current));
      expect(text((await writer.get('k'))?.value ?? bytes('(absent)'))).toBe('v3');
      return stillLeads;
    } finally {
      nodes.rejoin();
      await writer.destroy().catch(() => undefined);
      for (const store of stores) await store.close().catch(() => undefined);
    }
  }
}

/**
 * A watch's or a listing's consumer has one replica and may sit on a
 * follower that has not yet applied what the leader acknowledged: the
 * watch's `synced`, and the listing's end, still come after every write
 * acknowledged before they began. Round after round, on a new bucket, the
 * route traffic between the stream's leader and one follower is delayed
 * (that follower falls half a second behind), a writer on the leader's
 * node writes three keys, and three watches and three listings start at
 * once through the other follower's node; a consumer placed on the delayed
 * follower is made there before the writes reach it. Needs a cluster
 * started with `links`.
 */
export function laggingReplicaCheck(open: typeof openNatsKv, cluster: () => Promise<NatsCluster>, rounds: number): ConformanceCheck {
  return {
    group: 'watch',
    name: "on a replicated bucket, a watch's synced and a listing's end come after every write acknowledged before they began, wherever their consumer sits",
    run: async (context) => {
      const nats = await cluster();
      const { nodes, urls } = nats;
      const admin = await connect({ servers: [...urls] });
      try {
        for (let round = 0; round < rounds; round++) {
          const bucket = `${context.bucket}sync${round}`;
          const openOn = (servers: string | string[]) =>
            open({ servers, bucket, create: { replicas: 3, history: 5 }, timeoutMs: 2000, sweepIntervalMs: 0 });
          const setup = await retrying(() => openOn([...urls]));
          const info = await (await jetstreamManager(admin)).streams.info(`KV_${bucket}`);
          const leader = nodes.findIndex((node) => node.name === info.cluster?.leader);
          const behind = nodes.findIndex((node) => node.name === info.cluster?.replicas?.[0]?.name);
          const other = [0, 1, 2].find((index) => index !== leader && index !== behind) as number;
          const writer = await openOn(nodes[leader]?.url as string);
          const reader = await openOn(nodes[other]?.url as string);
          nats.delay(leader, behind, 500);
          try {
            const written: Record<string, string> = {};
            await Promise.all(
              [0, 1, 2].map(async (index) => {
                await retrying(() => writer.put(`k.${index}`, bytes(`v${round}.${index}`)));
                written[`k.${index}`] = `v${round}.${index}`;
              }),
            );
            const watches = [0, 1, 2].map(async () => {
              const watched: Record<string, string> = {};
              for await (const event of reader.watch()) {
                if (event.type === 'put') watched[event.key] = text(event.value);
                if (event.type === 'synced') break;
              }
              return watched;
            });
            const listings = [0, 1, 2].map(async () => {
              const listed: Record<string, string> = {};
              for await (const entry of reader.scan()) listed[entry.key] = text(entry.value);
              return listed;
            });
            const [watched, listed] = await Promise.all([Promise.all(watches), Promise.all(listings)]);
            for (const state of watched) expect(state, `round ${round}: a watch's state at synced`).toEqual(written);
            for (const state of listed) expect(state, `round ${round}: a listing`).toEqual(written);
          } finally {
            nats.delay(leader, behind, 0);
            await reader.close();
            await writer.close();
            await setup.destroy().catch(() => setup.close());
          }
        }
      } finally {
        await admin.close();
      }
    },
  };
}
