import type { KvStore, WatchCursor } from '@weft/kv';
import { type FdbDatabase, FdbKvStore } from '@weft/kv-fdb';

/** The key prefix of a bucket under the default namespace. */
export function bucketPrefix(bucket: string): Buffer {
  return Buffer.from(`weft/${bucket}/`, 'latin1');
}

/** Removes every key of a bucket, as an operator dropping it would. */
export async function dropBucket(database: FdbDatabase, bucket: string): Promise<void> {
  const prefix = bucketPrefix(bucket);
  const tn = database.createTransaction();
  tn.clearRange(prefix, Buffer.concat([prefix, Buffer.from([0xff])]));
  await tn.commit();
}

/** Trims the whole change log, as retention catching up with the head would. */
export async function forgetHistory(_bucket: string, store: KvStore): Promise<void> {
  if (!(store instanceof FdbKvStore)) throw new Error('not an fdb store');
  await store.trimHistory({ through: 'f'.repeat(24) as WatchCursor });
}

/** Every key-value pair of a bucket, raw. */
export async function bucketRows(database: FdbDatabase, bucket: string): Promise<Array<[Buffer, Buffer]>> {
  const prefix = bucketPrefix(bucket);
  const tn = database.createTransaction();
  try {
    return await tn.getRange(prefix, Buffer.concat([prefix, Buffer.from([0xff])]));
  } finally {
    tn.cancel();
  }
}
