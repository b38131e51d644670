import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { metaStreamName } from '@weft/kv-nats';
import { type NatsLine, type NatsServer, natsUnavailable, startNatsServer } from '@weft/test-servers';

export const natsMissing = natsUnavailable();
if (natsMissing !== undefined) console.warn(`SKIPPING NATS backend tests: ${natsMissing}`);

/** A spawned server plus a raw connection for inspecting what the backend stored. */
export async function natsServer(line: NatsLine = 'system'): Promise<{ server: NatsServer; raw: NatsConnection }> {
  const server = await startNatsServer({ line });
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
