/**
 * Why a target was missed, keyed by figure id (or the id without its
 * trailing concurrency). Each entry says what it rests on: a figure measured
 * in the same run, or a profile whose driver is in `benchmarks/profiles/`.
 * REPORT.md quotes it next to the miss.
 */
export const explanations: Readonly<Record<string, string>> = {
  'redis.get':
    "measured: a weft get is one `HMGET` of the record hash (fields o, v, n), and against that very command (sequential and 100 in flight) it runs at the ratios shown by 'redis get vs the same HMGET' in the Redis section. The rest of the gap to `GET` is the hash layout that versions and tombstones need (Redis answers `HMGET` of three fields more slowly than `GET` of one string), not the layer. A packed string record (version and op in a header before the value) would read with `GET`; not done yet.",
  'redis.put':
    "profiled (benchmarks/profiles/redis-update.mjs): with 100 writes in flight the client's CPU is the limit, and 56% of it is the socket write of each command, the same for the raw client. weft's own work per call (key and value checks, argument building, one promise step for the reply) is what remains; mutations call `EVALSHA` directly and avoid extra async hops, which brought this figure from 0.89x to the ratio shown.",
  'redis.update':
    "profiled (benchmarks/profiles/redis-update.mjs): with 100 updates in flight the client's CPU is the limit, and 56% of it is the socket write of each command, the same for the raw client. What remains is weft's own work per call: checking the key, the value and the expected version (a parse of the stream id), building the script's arguments and mapping its reply, about a microsecond against a budget of about ten per call at this rate. Mutations now call `EVALSHA` directly (not through ioredis' `defineCommand` wrapper) with one promise step per call, which moved this figure from 0.86x; alternating rounds outside the suite measure 0.94-0.98x.",
  'redis.watch-latency':
    "structural: a weft watch waits in `XREAD BLOCK` on a connection of its own, which only wakes it; the change is then read by a script on the main connection that attaches each key's current value (the stream holds no values, by design: history 1, no value copies). That is a second round trip the raw baseline, which reads the entry from the `XREAD` reply, does not make. Reading keys and types from the `XREAD` reply and fetching only values would save the script's work but not the round trip.",
  'eventlog.append.always':
    "profiled (benchmarks/profiles/durable-calls.mjs times every write and fsync): per durable append, the frame write takes about 43 µs, the checkpoint write after the fsync about 78 µs and the fsync about 306 µs, against 29 µs and 234 µs for the raw write + fsync. The checkpoint (the durable length in the segment header, which lets recovery tell a torn tail from damage) is the gap: its own write on the append's path, and the second dirty page it leaves for the next fsync. Not awaiting it was tried and made both writes slower (they contend for the file), so it was not kept; the open route is a layout that keeps the checkpoint without a second page, for example a checkpoint record appended with the frames.",
  'eventlog.append.none':
    'profiled (benchmarks/profiles/append.mjs none): a third of each append was one `randomFillSync` per event id; ids and nonces now come from a 4 KiB pool, entity names are encoded once, and UUIDs are parsed without strings, which took a process appending 200,000 events from 60,000 to about 110,000 appends/s. What remains is the garbage collector (27-33% of the time: the in-memory index of id to position and per-entity positions grows with every event) and the header and frame encoding (about 30%). In the suite each log grows to 350,000 events and rounds hit by a major collection run at under half the rate of the others, which the median shows.',
  'eventlog.group':
    "measured in the same run: a raw fsync here sustains about 4,400/s, so 64 appenders sharing each fsync could go far beyond the target; the limit is the per-append CPU cost profiled for the 'none' figure (index, encoding, garbage collection), on two cores.",
  'eventlog.encrypted':
    "profiled (benchmarks/profiles/append.mjs encrypted): sealing is 43% of an encrypted 1 KiB append: the ChaCha20-Poly1305 work itself 13%, creating a `node:crypto` cipher per event (there is no one-shot AEAD call) 8%, the HChaCha20 subkey 2.5%, the associated data 6%; one `randomBytes` per nonce was another 17% and now comes from the pool. Plaintext appends got faster by more, so the ratio fell. Reaching 0.7x needs the seal off the append's critical path (sealing a batch in the writer, or in a worker thread).",
  'eventlog.replay':
    'profiled (benchmarks/profiles/replay.mjs): per event, the CRC32C check is about 10% of the time, decoding the header into an event object (ids formatted as strings, names decoded, payload and hash copied) about 28%, and the garbage those objects make 33%. A lazy event view over the segment buffer, decoding fields on access, would avoid most of it; not done yet.',
};
