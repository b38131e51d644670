import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { metaStreamName, type NatsKvStore, type openNatsKv } from '@weft/kv-nats';
import { type ConformanceCheck, type KvConformanceHarness, runConformanceCheck } from '@weft/kv-testkit';
import { type NatsCluster, type NatsLine, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';
import { expect } from 'vitest';

export const natsMissing = natsUnavailable();
if (natsMissing !== undefined) console.warn(`SKIPPING NATS backend tests: ${natsMissing}`);

/** A spawned server plus a raw connection for inspecting what the backend stored. */
export async function natsServer(line: NatsLine = 'system', websocket = false): Promise<{ server: NatsServer; raw: NatsConnection }> {
  const server = await startNatsServer({ line, websocket });
  return { server, raw: await connect({ servers: server.url }) };
}

/** Deletes a bucket's stream and weft's companion stream. */
export async function dropBucket(raw: NatsConnection, bucket: string): Promise<void> {
  const manager = await jetstreamManager(raw);
  for (const stream of [`KV_${bucket}`, metaStreamName(bucket)]) await manager.streams.delete(stream).catch(() => undefined);
}

/** Consumers on a bucket's stream: what running watches hold on the server. */
export async function consumerCount(raw: NatsConnection, bucket: string): Promise<number> {
  const manager = await jetstreamManager(raw);
  return (await manager.streams.info(`KV_${bucket}`)).state.consumer_count;
}

/** A server and a raw connection started by a suite's setup, for harness hooks that run later. */
export interface NatsFixture {
  server: NatsServer;
  raw: NatsConnection;
}

/**
 * The conformance harness on a spawned server, for `open` (this package's
 * `openNatsKv`, or a mutated copy's): regular handles sweep every 100 ms,
 * unswept ones sweep nothing and settle a passed TTL before writing over it.
 * Buckets keep `history` versions per key; with 1, a 2.11+ server's buckets
 * have native TTLs.
 */
export function natsHarness(open: typeof openNatsKv, fixture: NatsFixture, history = 10, replicas = 1): KvConformanceHarness {
  const handle = (bucket: string, sweepIntervalMs: number) =>
    open({
      servers: fixture.server.url,
      bucket,
      create: { history, replicas },
      sweepIntervalMs,
      expireBeforeNextWrite: sweepIntervalMs === 0,
    });
  return {
    open: (bucket) => handle(bucket, 100),
    openUnswept: (bucket) => handle(bucket, 0),
    dropBucket: (bucket) => dropBucket(fixture.raw, bucket),
    // The next open creates it again (with create).
    recreateBucket: (bucket) => dropBucket(fixture.raw, bucket),
    // weft's own tombstone compaction, the way history becomes unprovable on NATS.
    forgetHistory: async (_bucket, store) => void (await (store as NatsKvStore).compact({ olderThanMs: 0 })),
    // A server of its own: stopped cleanly so its store holds every acknowledged write, copied, and put back later.
    ...(replicas === 1
      ? {
          rewind: async () => {
            await fixture.server.restart();
            const copy = await fixture.server.saveData();
            return () => fixture.server.restartFrom(copy);
          },
        }
      : {}),
    watchResources: (bucket) => consumerCount(fixture.raw, bucket),
    ttlHeld: (bucket, key) => serverTtlOf(fixture.raw, bucket, key),
    expireDelayMs: 1500,
  };
}

/** The TTL (ms) in the Nats-TTL header of a key's last message, or undefined when it has none (an emulated TTL). */
export async function serverTtlOf(raw: NatsConnection, bucket: string, key: string): Promise<number | undefined> {
  const manager = await jetstreamManager(raw);
  const message = await manager.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${key}` });
  const header = message?.header.get('Nats-TTL');
  if (header === undefined || header === '') return undefined;
  const seconds = /^(\d+)s?$/.exec(header);
  if (seconds === null) throw new Error(`unexpected Nats-TTL ${header}`);
  return Number(seconds[1]) * 1000;
}

/**
 * Runs `check` (or the check made from this package's module) with a
 * harness on the first node of `cluster`, keeping `history` versions and
 * `replicas` copies; it must pass. Its log lines are printed when `log`.
 */
export async function passesOnCluster(
  cluster: () => Promise<NatsCluster>,
  check: ConformanceCheck | ((module: typeof import('@weft/kv-nats')) => ConformanceCheck),
  { history = 10, replicas = 1, log = false }: { history?: number; replicas?: number; log?: boolean } = {},
): Promise<void> {
  const module = await import('@weft/kv-nats');
  const server = (await cluster()).nodes[0] as NatsServer;
  const raw = await connect({ servers: server.url });
  try {
    const outcome = await runConformanceCheck(
      typeof check === 'function' ? check(module) : check,
      natsHarness(module.openNatsKv, { server, raw }, history, replicas),
      { propertyRuns: 1, seed: 1, log: log ? (line) => console.log(line) : () => undefined },
    );
    expect(outcome.status).toBe('passed');
  } finally {
    await raw.close();
  }
}
