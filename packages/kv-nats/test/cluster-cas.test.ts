/**
 * Compare-and-swap on a 3-node JetStream cluster with replicas 3, on both
 * server lines. Where the server serialises conditional publishes (2.9.21
 * and newer) the conformance suite's linearizability check runs, with the
 * eight clients connected to the nodes in turn so that reads and writes
 * arrive through every node. Older servers could accept two writes that
 * expect one version (nats-server#4319): there the backend must refuse
 * compare-and-swap and TTLs up front, and this is what is checked.
 */
import { KvErrorCode } from '@weft/kv';
import { conditionalWritesUnsupported, openNatsKv, parseServerVersion } from '@weft/kv-nats';
import { bytes, expectKvError, linearizabilityChecks, runConformanceCheck } from '@weft/kv-testkit';
import { type NatsCluster, type NatsLine, natsUnavailable, startNatsCluster } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const histories = Number(process.env.WEFT_LINEARIZABILITY_HISTORIES ?? (process.env.WEFT_LONG === '1' ? 1000 : 30));

for (const line of ['system', 'current'] satisfies NatsLine[]) {
  const missing = natsUnavailable(line);
  describe.skipIf(missing !== undefined)(
    `kv compare-and-swap: nats 3-node cluster, ${line} line${missing === undefined ? '' : ` (${missing})`}`,
    () => {
      let cluster: NatsCluster;
      let refusal: string | undefined;
      beforeAll(async () => {
        cluster = await startNatsCluster({ nodes: 3, line });
        refusal = conditionalWritesUnsupported(parseServerVersion(cluster.nodes[0]?.version ?? '0.0.0'), 3);
      }, 120_000);
      afterAll(async () => cluster?.stop(), 60_000);

      it('refuses compare-and-swap and TTLs up front where the server cannot serialise them, and only there', async () => {
        const store = await openNatsKv({ servers: [...cluster.urls], bucket: `gate-${line}`, create: { replicas: 3 }, timeoutMs: 20_000 });
        try {
          expect(store.capabilities.ttl).toBe(refusal === undefined);
          const version = await store.put('k', bytes('1'));
          if (refusal === undefined) {
            await expect(store.update('k', bytes('2'), version)).resolves.toBeDefined();
            return;
          }
          for (const attempt of [
            () => store.create('k', bytes('x')),
            () => store.update('k', bytes('x'), version),
            () => store.deleteWithVersion('k', version),
            () => store.putWithTtl('k', bytes('x'), 60_000),
          ]) {
            const error = await expectKvError(attempt, KvErrorCode.Unsupported);
            expect(error.message).toContain('2.9.21');
          }
          // Nothing was written by the refused calls; plain writes still work.
          expect((await store.get('k'))?.version).toBe(version);
          await store.delete('k');
          expect(await store.get('k')).toBeUndefined();
        } finally {
          await store.close();
        }
      });

      for (const check of linearizabilityChecks) {
        it(check.name, async (context) => {
          if (refusal !== undefined) {
            const reason = `nats-server ${cluster.nodes[0]?.version}: ${refusal}`;
            console.log(`[kv linearizability: nats cluster, ${line} line] skipped: ${reason}`);
            context.skip(reason);
          }
          let opened = 0;
          const outcome = await runConformanceCheck(
            check,
            {
              open: (bucket) =>
                openNatsKv({
                  servers: cluster.urls[opened++ % cluster.urls.length] as string,
                  bucket,
                  create: { replicas: 3, history: 10 },
                }),
            },
            {
              propertyRuns: 0,
              seed: process.env.WEFT_SEED === undefined ? undefined : Number(process.env.WEFT_SEED),
              linearizabilityHistories: histories,
              log: (message) => console.log(`[kv linearizability: nats cluster, ${line} line] ${message}`),
            },
          );
          expect(outcome.status).toBe('passed');
        }, 600_000);
      }
    },
  );
}
