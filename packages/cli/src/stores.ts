/** Opens a KV store from a URL: `nats://`, `redis://` or `memory://` (in-process, gone when the command ends). */
import { type KvStore, openMemoryKv } from '@weft/kv';
import { openNatsKv } from '@weft/kv-nats';
import { openRedisKv } from '@weft/kv-redis';
import { CliError, exitUsage } from './output.js';

export async function openKv(url: string, bucket: string): Promise<KvStore> {
  if (!/^[A-Za-z0-9_-]+$/.test(bucket)) throw new CliError(`--bucket must match [A-Za-z0-9_-]+, got '${bucket}'`, exitUsage);
  let scheme: string;
  try {
    scheme = new URL(url).protocol;
  } catch {
    throw new CliError(`--kv must be a URL such as nats://127.0.0.1:4222, redis://127.0.0.1:6379 or memory://, got '${url}'`, exitUsage);
  }
  switch (scheme) {
    case 'nats:':
      return openNatsKv({ servers: url, bucket, create: true });
    case 'redis:':
    case 'rediss:':
      return openRedisKv({ url, bucket });
    case 'memory:':
      return openMemoryKv({ bucket });
    default:
      throw new CliError(`--kv must start with nats://, redis:// or memory://, got '${scheme}'`, exitUsage);
  }
}

/** A short name for a store URL, without credentials. */
export function describeStore(url: string): string {
  try {
    const parsed = new URL(url);
    return parsed.protocol === 'memory:' ? 'memory (in-process)' : `${parsed.protocol}//${parsed.host}`;
  } catch {
    return url;
  }
}
