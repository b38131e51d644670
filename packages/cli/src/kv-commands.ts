import { readFile } from 'node:fs/promises';
import type { KvStore, Version, WatchCursor, WatchEvent } from '@weft/kv';
import type { Command } from 'commander';
import { CliError, exitUsage } from './output.js';
import { openKv } from './stores.js';

interface StoreOptions {
  readonly kv: string;
  readonly bucket: string;
}

/** Runs `work` on the bucket; only `put` and `create` (`creates`) make a bucket that does not exist. */
async function withStore<T>(options: StoreOptions, work: (store: KvStore) => Promise<T>, creates = false): Promise<T> {
  const store = await openKv(options.kv, options.bucket, { create: creates });
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

async function readStdin(): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

/** The value of a write: the argument, `--file`, or standard input (`-`, or no argument with piped input). */
async function valueFrom(value: string | undefined, options: { file?: string }): Promise<Uint8Array> {
  if (options.file !== undefined) {
    if (value !== undefined) throw new CliError('give the value as an argument or with --file, not both', exitUsage);
    return new Uint8Array(await readFile(options.file));
  }
  if (value === '-' || (value === undefined && !process.stdin.isTTY)) return readStdin();
  if (value === undefined) throw new CliError('a value is needed: an argument, --file PATH, or - for standard input', exitUsage);
  return new TextEncoder().encode(value);
}

function show(value: Uint8Array): { value: string; encoding: 'utf8' | 'base64' } {
  try {
    return { value: new TextDecoder('utf-8', { fatal: true }).decode(value), encoding: 'utf8' };
  } catch {
    return { value: Buffer.from(value).toString('base64'), encoding: 'base64' };
  }
}

function eventLine(event: WatchEvent, json: boolean): string {
  if (json) {
    if (event.type === 'synced') return JSON.stringify({ type: 'synced', cursor: event.cursor });
    if (event.type === 'put')
      return JSON.stringify({ type: 'put', key: event.key, version: event.version, cursor: event.cursor, ...show(event.value) });
    return JSON.stringify({ ...event });
  }
  if (event.type === 'synced') return `synced ${event.cursor}`;
  if (event.type === 'put') return `put ${event.key} ${event.version} ${event.cursor} ${show(event.value).value}`;
  if (event.type === 'expire') return `expire ${event.key} - ${event.cursor}`;
  return `${event.type} ${event.key} ${event.version} ${event.cursor}`;
}

export function registerKvCommands(program: Command): void {
  const kv = program.command('kv').description('read and write a KV bucket on any backend');
  const common = (command: Command) =>
    command
      .requiredOption('--kv <url>', 'the store: nats://host:port, redis://host:port, fdb://[cluster-file] or memory:// (in-process)')
      .requiredOption('--bucket <name>', 'the bucket');

  common(kv.command('get <key>').description('print the live value of a key (exit 1 when absent)'))
    .option('--json', 'print {key, version, value, encoding}')
    .action(async (key: string, options: StoreOptions & { json?: boolean }) => {
      await withStore(options, async (store) => {
        const entry = await store.get(key);
        if (entry === undefined) throw new CliError(`${key}: no live value`);
        if (options.json) process.stdout.write(`${JSON.stringify({ key, version: entry.version, ...show(entry.value) })}\n`);
        else process.stdout.write(process.stdout.isTTY ? `${show(entry.value).value}\n` : entry.value);
      });
    });

  for (const [name, description] of [
    ['put', 'write a value (clears any TTL)'],
    ['create', 'write a value only if the key has none (exit 1 when it exists)'],
  ] as const) {
    const command = common(kv.command(`${name} <key> [value]`).description(`${description}; prints the new version`)).option(
      '--file <path>',
      'read the value from a file',
    );
    // The contract has no conditional write with a TTL: `create --ttl` is refused as an unknown option, never ignored.
    if (name === 'put') command.option('--ttl <ms>', 'expire after this many milliseconds (backends with TTL)');
    command.action(async (key: string, value: string | undefined, options: StoreOptions & { file?: string; ttl?: string }) => {
      const bytes = await valueFrom(value, options);
      await withStore(
        options,
        async (store) => {
          let version: Version;
          if (name === 'create') version = await store.create(key, bytes);
          else if (options.ttl !== undefined) version = await store.putWithTtl(key, bytes, Number(options.ttl));
          else version = await store.put(key, bytes);
          process.stdout.write(`${version}\n`);
        },
        true,
      );
    });
  }

  common(kv.command('update <key> [value]').description('write a value only if the current version is --expect; prints the new version'))
    .requiredOption('--expect <version>', 'the version the key must be at')
    .option('--file <path>', 'read the value from a file')
    .action(async (key: string, value: string | undefined, options: StoreOptions & { file?: string; expect: string }) => {
      const bytes = await valueFrom(value, options);
      await withStore(options, async (store) => process.stdout.write(`${await store.update(key, bytes, options.expect as Version)}\n`));
    });

  common(kv.command('del <key>').description('delete a key (a tombstone); prints its version'))
    .option('--expect <version>', 'delete only if the key is at this version')
    .action(async (key: string, options: StoreOptions & { expect?: string }) => {
      await withStore(options, async (store) => {
        const version =
          options.expect === undefined ? await store.delete(key) : await store.deleteWithVersion(key, options.expect as Version);
        process.stdout.write(`${version}\n`);
      });
    });

  common(kv.command('purge <key>').description('delete a key and its history')).action(async (key: string, options: StoreOptions) => {
    await withStore(options, async (store) => process.stdout.write(`${await store.purge(key)}\n`));
  });

  common(kv.command('keys [prefix]').description('list live keys, one per line (whole-token prefix)')).action(
    async (prefix: string | undefined, options: StoreOptions) => {
      await withStore(options, async (store) => {
        for await (const key of store.keys(prefix)) process.stdout.write(`${key}\n`);
      });
    },
  );

  common(kv.command('watch [prefixes...]').description('stream changes with their cursors: current values, "synced", then live changes'))
    .option('--from <cursor>', 'resume after this cursor instead of listing current values')
    .option('--count <n>', 'stop after this many change events')
    .option('--until-synced', 'stop at the synced marker')
    .option('--json', 'one JSON object per line')
    .action(
      async (prefixes: string[], options: StoreOptions & { from?: string; count?: string; untilSynced?: boolean; json?: boolean }) => {
        const limit = options.count === undefined ? Number.POSITIVE_INFINITY : Number(options.count);
        if (!(limit > 0)) throw new CliError('--count must be a positive number', exitUsage);
        await withStore(options, async (store) => {
          const controller = new AbortController();
          process.once('SIGINT', () => controller.abort());
          let changes = 0;
          const watch = store.watch({
            ...(prefixes.length > 0 ? { prefixes } : {}),
            ...(options.from === undefined ? {} : { from: options.from as WatchCursor }),
            signal: controller.signal,
          });
          for await (const event of watch) {
            process.stdout.write(`${eventLine(event, options.json === true)}\n`);
            if (event.type === 'synced' && options.untilSynced) break;
            if (event.type !== 'synced' && ++changes >= limit) break;
          }
        });
      },
    );
}
