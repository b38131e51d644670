/**
 * Why a target was missed, keyed by figure id (or the id without its
 * trailing concurrency). Each entry says what it rests on: a figure measured
 * in the same run, or an analysis of the code path that still needs a
 * profile to confirm it. REPORT.md quotes it next to the miss.
 */
export const explanations: Readonly<Record<string, string>> = {
  'redis.get':
    "measured: a weft get is one `HMGET` of the record hash (fields o, v, n), and against that very command it runs at the ratio shown by 'redis get vs the same HMGET' in the Redis section. The rest of the gap to `GET` is the hash layout that versions and tombstones need, not the layer. A packed string record (version and op in a header before the value) would read with `GET`; not done yet.",
  'redis.update':
    'analysis, not yet profiled: with 100 in flight the per-call work on the client (key validation, version parsing, reply decoding and error mapping) is no longer hidden behind the round trip; sequential updates are within target.',
  'redis.watch-latency':
    "structural: a weft watch waits in `XREAD BLOCK` on a connection of its own, which only wakes it; the change is then read by a script on the main connection that attaches each key's current value (the stream holds no values, by design: history 1, no value copies). That is a second round trip the raw baseline, which reads the entry from the `XREAD` reply, does not make. Reading keys and types from the `XREAD` reply and fetching only values would save the script's work but not the round trip.",
  'eventlog.append.always':
    "analysis of the write path, not yet profiled: after each fsync the writer rewrites the segment header's checkpoint (`#syncActiveSegment` in log.ts), so the header page is dirty again at the next fsync and every durable append flushes two pages where the raw baseline flushes one. The checkpoint is what lets recovery tell a torn tail from damage inside durable data (which must refuse to open, not be truncated), so writing it less often would trade that guarantee for speed; the open question is a layout that keeps it without a second dirty page (for example a checkpoint record appended with the frames).",
  'eventlog.append.none':
    "analysis, not yet profiled: sequential appends awaited one by one cost about 16 µs each here (UUIDv7 and hybrid clock, frame encoding with CRC32C, the entity's blake3 chain hash, the hand-off to the writer's pump); the writes themselves are batched, which is why weft is faster than one raw write per event. 150,000 appends/s needs that per-append path roughly halved.",
  'eventlog.group':
    "measured in the same run: a raw fsync here sustains about 4,400/s, so 64 appenders sharing each fsync could reach far beyond the target; the limit is the per-append CPU cost of the 'none' figure (about 16 µs) on two cores, not the disk.",
  'eventlog.encrypted':
    "measured in the same run: sealing 1 KiB with XChaCha20-Poly1305 (node:crypto path) costs about 12 µs, close to a whole plaintext append, so encrypted appends run at about half the plaintext rate. Reaching 0.7x needs the seal moved off the append's critical path (sealing batches in the writer, or in a worker thread).",
  'eventlog.replay':
    'analysis, not yet profiled: `read()` verifies the CRC32C of every frame and builds a full event object per frame (UUIDs formatted to strings, entity and scope decoded, payload copied); a lazy event view over the segment buffer would avoid most of that.',
};
