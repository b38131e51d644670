// Where a weft NATS get stands between the two raw reads JetStream offers:
// the JetStream API's message get (STREAM.MSG.GET, answered by the stream
// leader as JSON with a base64 body; what weft uses, for read-your-writes)
// and the direct get (DIRECT.GET, raw bytes; what @nats-io/kv's get uses).
// Usage: node benchmarks/profiles/nats-get.mjs nats://127.0.0.1:4222
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { openNatsKv } from '@weft/kv-nats';

const servers = process.argv[2] ?? 'nats://127.0.0.1:4222';
const bucket = `profile_get_${Date.now().toString(36)}`;
const kv = await openNatsKv({ servers, bucket, create: true });
const nc = await connect({ servers });
const raw = await new Kvm(nc).open(bucket);
const manager = await jetstreamManager(nc);
const value = new Uint8Array(256).fill(7);
for (let index = 0; index < 100; index++) await kv.put(`k.${index}`, value);
const reads = {
  'weft get': (key) => kv.get(key),
  'raw STREAM.MSG.GET': (key) => manager.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${key}` }),
  'raw @nats-io/kv get (DIRECT.GET)': (key) => raw.get(key),
};
const rates = Object.fromEntries(Object.keys(reads).map((name) => [name, []]));
for (let round = 0; round < 7; round++) {
  for (const [name, read] of Object.entries(reads)) {
    const started = performance.now();
    for (let index = 0; index < 1500; index++) await read(`k.${index % 100}`);
    rates[name].push(1500 / ((performance.now() - started) / 1000));
  }
}
for (const [name, values] of Object.entries(rates)) {
  values.sort((a, b) => a - b);
  console.log(`${name}: ${Math.round(values[3])} reads/s (median of 7 rounds)`);
}
await manager.streams.delete(`KV_${bucket}`);
await kv.close();
await nc.close();
