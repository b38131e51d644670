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
