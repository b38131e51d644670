/**
 * Opens a KV store from a URL through one registry of backends:
 * `nats://`, `redis://` / `rediss://`, `fdb://` (a cluster file path, or
 * empty for the default one) and `memory://` (in-process, gone when the
 * command ends). Adding a backend to the CLI is one entry here.
 */
import type { KvStore } from '@weft/kv';
import { CliError, exitUsage } from './output.js';

// Each backend's package (and its client library) loads only when a command opens a store of its scheme:
// a command on one backend does not pay for starting the others. They are optional peer dependencies of
// @weft/cli: a user installs the ones they use.

/** Imports a backend package, or says which package to install when it is not there. */
async function backend<Module>(name: string, scheme: string, load: () => Promise<Module>): Promise<Module> {
  try {
    return await load();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && String((error as Error).message).includes(name))
      throw new CliError(`${scheme} URLs need ${name}, which is not installed: npm install ${name}`);
    throw error;
  }
}

interface StoreScheme {
  /** URL protocols, with the colon. */
  readonly protocols: readonly string[];
  readonly example: string;
  /** `create`: the command writes, so a backend whose buckets must be made first makes it. */
  open(url: URL, bucket: string, create: boolean): Promise<KvStore>;
}

const registry: readonly StoreScheme[] = [
  {
    protocols: ['nats:'],
    example: 'nats://127.0.0.1:4222',
    open: async (url, bucket, create) => {
      const [{ openNatsKv }, { KvError, KvErrorCode }] = await Promise.all([
        backend('@weft/kv-nats', 'nats://', () => import('@weft/kv-nats')),
        import('@weft/kv'),
      ]);
      try {
        return await openNatsKv({ servers: url.href, bucket, ...(create ? { create: true } : {}) });
      } catch (error) {
        // Reads never make a bucket: a typo in --bucket would otherwise leave an empty one behind.
        if (!create && KvError.is(error, KvErrorCode.OperationFailed) && error.message.includes('does not exist')) {
          throw new CliError(`bucket '${bucket}' does not exist on ${url.protocol}//${url.host}; a write (weft kv put) creates it`);
        }
        throw error;
      }
    },
  },
  {
    protocols: ['redis:', 'rediss:'],
    example: 'redis://127.0.0.1:6379',
    open: async (url, bucket) =>
      (await backend('@weft/kv-redis', 'redis://', () => import('@weft/kv-redis'))).openRedisKv({ url: url.href, bucket }),
  },
  {
    protocols: ['fdb:'],
    example: 'fdb:///etc/foundationdb/fdb.cluster',
    open: async (url, bucket) => {
      const { openFdbKv } = await backend('@weft/kv-fdb', 'fdb://', () => import('@weft/kv-fdb'));
      const clusterFile = decodeURIComponent(url.pathname);
      return openFdbKv({ bucket, ...(clusterFile === '' || clusterFile === '/' ? {} : { clusterFile }) });
    },
  },
  {
    protocols: ['memory:'],
    example: 'memory://',
    open: async (_url, bucket) => (await import('@weft/kv')).openMemoryKv({ bucket }),
  },
];

const examples = registry.map((scheme) => scheme.example).join(', ');

/** Opens `bucket` on the store `url` names; `create` when the command writes (see {@link StoreScheme.open}). */
export async function openKv(url: string, bucket: string, { create = false }: { create?: boolean } = {}): Promise<KvStore> {
  if (!/^[A-Za-z0-9_-]+$/.test(bucket)) throw new CliError(`--bucket must match [A-Za-z0-9_-]+, got '${bucket}'`, exitUsage);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError(`--kv must be a URL such as ${examples}; got '${url}'`, exitUsage);
  }
  const scheme = registry.find((candidate) => candidate.protocols.includes(parsed.protocol));
  if (scheme === undefined) throw new CliError(`--kv must be one of ${examples}; got a '${parsed.protocol}' URL`, exitUsage);
  return scheme.open(parsed, bucket, create);
}

/** A short name for a store URL, without credentials. */
export function describeStore(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.protocol === 'memory:') return 'memory (in-process)';
    if (parsed.protocol === 'fdb:')
      return `fdb (${parsed.pathname === '' || parsed.pathname === '/' ? 'default cluster file' : parsed.pathname})`;
    return `${parsed.protocol}//${parsed.host}`;
  } catch {
    return url;
  }
}
