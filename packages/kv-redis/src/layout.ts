/**
 * Every Redis key a bucket uses, built here and nowhere else. All of them
 * share the hash tag `{bucket}`, so Redis Cluster keeps a bucket on one slot.
 * `scripts.ts` documents what each holds.
 */
export interface BucketKeys {
  /** Prefix of the per-key record hashes: `<namespace>:{<bucket>}:r:<key>`. */
  readonly record: string;
  /** The change stream. */
  readonly log: string;
  /** The expiry index (zset of key -> expiry time). */
  readonly expiries: string;
  /** The live-key index (zset, for prefix listing). */
  readonly index: string;
  /** The bucket's epoch and horizon. */
  readonly meta: string;
  /** The tombstone index (zset of key -> the time of its delete or purge), for compaction. */
  readonly tombstones: string;
}

export function bucketKeys(namespace: string, bucket: string): BucketKeys {
  const base = `${namespace}:{${bucket}}:`;
  return {
    record: `${base}r:`,
    log: `${base}log`,
    expiries: `${base}exp`,
    index: `${base}idx`,
    meta: `${base}meta`,
    tombstones: `${base}tomb`,
  };
}

/**
 * The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the text
 * between the first `{` and the next `}`, when not empty) or of the whole
 * key, modulo 16384.
 */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key);
  const open = bytes.indexOf(0x7b);
  const close = open < 0 ? -1 : bytes.indexOf(0x7d, open + 1);
  const hashed = close > open + 1 ? bytes.subarray(open + 1, close) : bytes;
  let crc = 0;
  for (const byte of hashed) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
