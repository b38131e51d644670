/**
 * The built `weft` command, run as a child process: the demo on every
 * backend, every kv and log subcommand with good and bad input (clear
 * message, exit code, nothing corrupted), and help everywhere.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { natsUnavailable, type RedisServer, redisUnavailable, runChild, startNatsServer, startRedisServer } from '@weft/test-servers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = new URL('../bin/weft.js', import.meta.url).pathname;

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function weft(args: readonly string[], input?: string | Uint8Array, env?: Record<string, string>): Promise<Run> {
  const run = await runChild(process.execPath, [bin, ...args], {
    limitMs: 120_000,
    ...(input === undefined ? {} : { input }),
    ...(env === undefined ? {} : { env }),
  });
  if (run.timedOut) throw new Error(`weft ${args.join(' ')} ran past 120 s and was killed:\n${run.stdout}${run.stderr}`);
  return { code: run.code ?? -1, stdout: run.stdout, stderr: run.stderr };
}

const natsMissing = natsUnavailable();
const redisMissing = redisUnavailable();

describe('weft starts without loading what the command does not use', () => {
  /** Runs weft with a module hook that reports every package it loads (on stderr, one per line). */
  async function loadedPackages(args: readonly string[]): Promise<string[]> {
    // Every module the command resolves is written to stderr: with module.registerHooks where the runtime has it
    // (in the main thread; Node 22.15+), else with an async loader hook (Node 20).
    const note = `const note = (url) => {
      const match = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\/|packages\\/([^/]+)\\/dist\\//.exec(url);
      if (match) process.stderr.write('loaded ' + (match[1] ?? '@weft/' + match[2]) + '\\n');
    };`;
    const hooks = `${note} export async function resolve(specifier, context, next) {
      const resolved = await next(specifier, context);
      note(resolved.url);
      return resolved;
    }`;
    const register = `import * as module from 'node:module';
    ${note}
    if (typeof module.registerHooks === 'function') {
      module.registerHooks({ resolve(specifier, context, next) { const resolved = next(specifier, context); note(resolved.url); return resolved; } });
    } else module.register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
    const run = await runChild(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, bin, ...args], {
      limitMs: 60_000,
    });
    return [...new Set(run.stderr.split('\n').flatMap((line) => (line.startsWith('loaded ') ? [line.slice(7)] : [])))];
  }

  it('--version and --help load no backend, no event log and no sync', async () => {
    for (const args of [['--version'], ['kv', '--help'], ['log', '--help']]) {
      const loaded = await loadedPackages(args);
      expect(loaded, args.join(' ')).toContain('@weft/cli');
      for (const heavy of [
        '@weft/kv-nats',
        '@weft/kv-redis',
        '@weft/kv-fdb',
        '@weft/eventlog',
        '@weft/sync',
        'ioredis',
        '@nats-io/transport-node',
      ]) {
        expect(loaded, `${args.join(' ')} loaded ${heavy}`).not.toContain(heavy);
      }
    }
  });

  it('a command on the memory store loads no other backend and no client library', async () => {
    const loaded = await loadedPackages(['kv', 'get', 'missing', '--kv', 'memory://', '--bucket', 'b']);
    expect(loaded).toContain('@weft/kv');
    for (const other of ['@weft/kv-nats', '@weft/kv-redis', '@weft/kv-fdb', 'ioredis', '@nats-io/transport-node', 'foundationdb']) {
      expect(loaded).not.toContain(other);
    }
  });
});

describe('weft --help', () => {
  it('prints help for every command and exits 0; unknown commands and missing options exit 2', async () => {
    const commands = [
      [],
      ['demo'],
      ['kv'],
      ...['get', 'put', 'create', 'update', 'del', 'purge', 'keys', 'watch'].map((sub) => ['kv', sub]),
      ['log'],
      ...['append', 'read', 'tail', 'verify', 'stats', 'shred'].map((sub) => ['log', sub]),
      ['sync', 'status'],
      ['bench'],
    ];
    for (const command of commands) {
      const run = await weft([...command, '--help']);
      expect(run.code, command.join(' ')).toBe(0);
      expect(run.stdout, command.join(' ')).toContain('Usage: weft');
    }
    expect((await weft(['frobnicate'])).code).toBe(2);
    const missing = await weft(['kv', 'get', 'k', '--bucket', 'b']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("required option '--kv <url>' not specified");
    expect((await weft(['kv', 'get', 'k', '--kv', 'ftp://x', '--bucket', 'b'])).code).toBe(2);
  });

  it('marks the options a command cannot run without as required, and only those', async () => {
    const help = (await weft(['log', 'append', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(help).toContain('--dir <path> the log directory (required)');
    expect(help).toContain('--entity <entity> the entity (stream) (required)');
    expect(help).not.toMatch(/--scope <scope>[^-]*\(required\)/);
    const get = (await weft(['kv', 'get', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(get).toContain('--bucket <name> the bucket (required)');
    expect(get).not.toMatch(/--json[^-]*\(required\)/);
  });

  it('opens FoundationDB through fdb:// and says what to install when its client is missing', async () => {
    const run = await weft(['kv', 'get', 'k', '--kv', 'fdb:///nonexistent/fdb.cluster', '--bucket', 'b']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/Unsupported: \[fdb\].*(foundationdb|libfdb_c)/);
  });
});

describe('weft demo', () => {
  it('converges on the embedded in-memory store, and the store sees no plaintext', async () => {
    const run = await weft(['demo', '--events', '10']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/summary: events=\d+ converged=yes shredded=\d+ rotation=generation-1 plaintext-in-store=0 .* OK/);
    expect(run.stdout).toContain('bob cannot (right)');
  });

  it.skipIf(natsMissing !== undefined)('converges on a spawned NATS server', async () => {
    const server = await startNatsServer();
    try {
      const run = await weft(['demo', '--events', '10', '--kv', server.url]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/converged=yes .*plaintext-in-store=0 .* OK/);
      // The demo leaves no bucket behind on the server.
      const connection = await connect({ servers: server.url });
      try {
        const streams = await (await jetstreamManager(connection)).streams.names().next();
        expect(streams.filter((name) => name.includes('demo-'))).toEqual([]);
      } finally {
        await connection.close();
      }
    } finally {
      await server.stop();
    }
  });

  it.skipIf(redisMissing !== undefined)('converges on a spawned Redis server, and sync status reads a device directory', async () => {
    const server = await startRedisServer();
    try {
      const run = await weft(['demo', '--events', '5', '--kv', server.url, '--keep']);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/converged=yes .*plaintext-in-store=0 .* OK/);
      const kept = /device directories kept in (\S+)/.exec(run.stdout)?.[1] as string;
      try {
        const status = await weft(['sync', 'status', '--dir', join(kept, 'carol')]);
        expect(status.code, status.stderr).toBe(0);
        expect(status.stdout).toMatch(/device [0-9a-f]{32}: pushed through changeset \d+, 0 event\(s\) waiting to upload/);
        const json = JSON.parse((await weft(['sync', 'status', '--dir', join(kept, 'carol'), '--json'])).stdout) as {
          pendingUploads: number;
        };
        expect(json.pendingUploads).toBe(0);
        const missing = await weft(['sync', 'status', '--dir', kept]);
        expect(missing.code).toBe(1);
        expect(missing.stderr).toContain("is not a synced device's directory");
        expect(missing.stderr).not.toContain('ENOENT');
      } finally {
        rmSync(kept, { recursive: true, force: true });
      }
    } finally {
      await server.stop();
    }
  });
});

describe.skipIf(redisMissing !== undefined)('weft kv on a spawned Redis server', () => {
  let server: RedisServer;
  let store: string[];
  beforeAll(async () => {
    server = await startRedisServer();
    store = ['--kv', server.url, '--bucket', 'cli'];
  });
  afterAll(async () => server.stop());

  it('writes and reads values from arguments, files and standard input', async () => {
    const put = await weft(['kv', 'put', 'app.greeting', 'hello', ...store]);
    expect(put.code, put.stderr).toBe(0);
    const version = put.stdout.trim();
    expect(version).toMatch(/^\d+-\d+$/);
    expect((await weft(['kv', 'get', 'app.greeting', ...store])).stdout).toBe('hello');
    const json = JSON.parse((await weft(['kv', 'get', 'app.greeting', '--json', ...store])).stdout) as { version: string; value: string };
    expect(json).toMatchObject({ version, value: 'hello' });

    const dir = mkdtempSync(join(tmpdir(), 'weft-cli-'));
    try {
      const file = join(dir, 'value.bin');
      writeFileSync(file, Buffer.from([0, 255, 1, 254]));
      expect((await weft(['kv', 'put', 'app.binary', '--file', file, ...store])).code).toBe(0);
      const binary = JSON.parse((await weft(['kv', 'get', 'app.binary', '--json', ...store])).stdout) as {
        encoding: string;
        value: string;
      };
      expect(binary).toEqual({
        key: 'app.binary',
        version: expect.any(String),
        encoding: 'base64',
        value: Buffer.from([0, 255, 1, 254]).toString('base64'),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect((await weft(['kv', 'put', 'app.piped', '-', ...store], 'from stdin')).code).toBe(0);
    expect((await weft(['kv', 'get', 'app.piped', ...store])).stdout).toBe('from stdin');
  });

  it('create, update, del and purge keep their compare-and-swap meaning, and failures change nothing', async () => {
    const created = await weft(['kv', 'create', 'cas.key', 'one', ...store]);
    expect(created.code).toBe(0);
    const again = await weft(['kv', 'create', 'cas.key', 'two', ...store]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('AlreadyExists');
    const stale = await weft(['kv', 'update', 'cas.key', 'three', '--expect', '1-0', ...store]);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain('RevisionMismatch');
    expect((await weft(['kv', 'get', 'cas.key', ...store])).stdout).toBe('one');
    const updated = await weft(['kv', 'update', 'cas.key', 'four', '--expect', created.stdout.trim(), ...store]);
    expect(updated.code, updated.stderr).toBe(0);
    expect((await weft(['kv', 'del', 'cas.key', '--expect', created.stdout.trim(), ...store])).code).toBe(1);
    expect((await weft(['kv', 'del', 'cas.key', '--expect', updated.stdout.trim(), ...store])).code).toBe(0);
    const gone = await weft(['kv', 'get', 'cas.key', ...store]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('no live value');
    expect((await weft(['kv', 'put', 'cas.purged', 'x', ...store])).code).toBe(0);
    expect((await weft(['kv', 'purge', 'cas.purged', ...store])).code).toBe(0);
    expect((await weft(['kv', 'get', 'cas.purged', ...store])).code).toBe(1);
  });

  it('lists keys by whole-token prefix and watches with cursors, resuming from one', async () => {
    for (const key of ['list.a', 'list.b', 'list.bc', 'listing']) await weft(['kv', 'put', key, key, ...store]);
    expect((await weft(['kv', 'keys', 'list', ...store])).stdout.split('\n').filter(Boolean).sort()).toEqual([
      'list.a',
      'list.b',
      'list.bc',
    ]);
    const watch = await weft(['kv', 'watch', 'list', '--until-synced', ...store]);
    expect(watch.code, watch.stderr).toBe(0);
    const lines = watch.stdout.trim().split('\n');
    expect(lines.filter((line) => line.startsWith('put list.')).length).toBe(3);
    const synced = lines.at(-1) as string;
    expect(synced).toMatch(/^synced \S+$/);
    await weft(['kv', 'put', 'list.c', 'later', ...store]);
    const resumed = await weft(['kv', 'watch', 'list', '--from', synced.split(' ')[1] as string, '--count', '1', '--json', ...store]);
    expect(resumed.code, resumed.stderr).toBe(0);
    const events = resumed.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { type: string; key?: string; value?: string });
    expect(events.find((event) => event.type === 'put')).toMatchObject({ key: 'list.c', value: 'later' });
  });

  it('refuses bad input with a clear message and exit 2, storing nothing', async () => {
    const bad = await weft(['kv', 'put', 'bad key', 'x', ...store]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('InvalidKey');
    expect(bad.stderr).toContain("'bad key'");
    expect((await weft(['kv', 'put', 'k', 'x', '--kv', server.url, '--bucket', 'bad.bucket'])).code).toBe(2);
    const malformed = await weft(['kv', 'update', 'k', 'x', '--expect', 'not-a-version', ...store]);
    expect(malformed.stderr).toContain('InvalidArgument');
    expect(malformed.code).toBe(2);
    expect((await weft(['kv', 'keys', ...store])).stdout).not.toContain('bad key');
  });
});

describe.skipIf(natsMissing !== undefined)('weft kv on a spawned NATS server', () => {
  it('puts, reads, lists and watches', async () => {
    const server = await startNatsServer();
    try {
      const store = ['--kv', server.url, '--bucket', 'cli'];
      // Reads never make a bucket (a typo in --bucket would leave an empty one behind); a put does.
      const early = await weft(['kv', 'get', 'n.one', ...store]);
      expect(early.code).toBe(1);
      expect(early.stderr).toContain("bucket 'cli' does not exist");
      // Still missing for the next read: the get did not make it.
      const again = await weft(['kv', 'keys', ...store]);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain("bucket 'cli' does not exist");
      const put = await weft(['kv', 'put', 'n.one', 'first', ...store]);
      expect(put.code, put.stderr).toBe(0);
      expect((await weft(['kv', 'get', 'n.one', ...store])).stdout).toBe('first');
      expect((await weft(['kv', 'update', 'n.one', 'second', '--expect', put.stdout.trim(), ...store])).code).toBe(0);
      expect((await weft(['kv', 'keys', 'n', ...store])).stdout.trim()).toBe('n.one');
      const watch = await weft(['kv', 'watch', '--until-synced', ...store]);
      expect(watch.stdout).toMatch(/^put n\.one \d+(-w[0-9a-z]+)? \S+ second\nsynced \S+\n$/);
      const ttl = await weft(['kv', 'put', 'n.ttl', 'x', '--ttl', '60000', ...store]);
      expect(ttl.code, ttl.stderr).toBe(0);
      expect((await weft(['kv', 'get', 'n.ttl', ...store])).stdout).toBe('x');
    } finally {
      await server.stop();
    }
  });
});

describe('weft log', () => {
  it('a log wrapped with a master key, opened without one, names the command-line option', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-log-key-'));
    try {
      const append = await weft(
        [
          'log',
          'append',
          'x',
          '--entity',
          'e',
          '--kind',
          '0x1001',
          '--dir',
          dir,
          '--encrypted',
          '--master-key-env',
          'WEFT_TEST_MASTER_KEY',
        ],
        undefined,
        { WEFT_TEST_MASTER_KEY: 'ab'.repeat(32) },
      );
      expect(append.code, append.stderr).toBe(0);
      const read = await weft(['log', 'read', '--dir', dir, '--encrypted']);
      expect(read.code).toBe(2);
      expect(read.stderr).toContain('--master-key-env');
      expect(read.stderr).not.toContain('encryption.masterKey');
      expect(read.stderr).not.toContain('ab'.repeat(32));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an encrypted log refuses an append without --encrypted (exit 2) and keeps no plaintext; verify of a directory without a log exits 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-log-plain-'));
    const empty = mkdtempSync(join(tmpdir(), 'weft-log-empty-'));
    try {
      const log = (args: readonly string[]) => weft(['log', ...args, '--dir', dir]);
      expect((await log(['append', 'sealed words', '--entity', 'e', '--kind', '0x1001', '--encrypted'])).code).toBe(0);
      const plain = await log(['append', 'clear words', '--entity', 'e', '--kind', '0x1001']);
      expect(plain.code).toBe(2);
      expect(plain.stderr).toContain('--encrypted');
      for (const name of readdirSync(dir)) {
        expect(readFileSync(join(dir, name)).includes(Buffer.from('clear words')), name).toBe(false);
        expect(readFileSync(join(dir, name)).includes(Buffer.from('sealed words')), name).toBe(false);
      }
      expect((await log(['verify'])).stdout).toContain('ok: 1 events');
      const nothing = await weft(['log', 'verify', '--dir', empty]);
      expect(nothing.code).toBe(1);
      expect(nothing.stderr).toContain('holds no event log');
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('appends, reads, tails, verifies, reports stats and shreds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-log-'));
    try {
      const log = ['--dir', dir, '--encrypted'];
      const first = await weft(['log', 'append', 'hello', '--entity', 'doc', '--kind', '0x1001', '--scope', 'team', ...log]);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toMatch(/^1 [0-9a-f-]{36}\n$/);
      expect((await weft(['log', 'append', '-', '--entity', 'doc', '--kind', '0x1001', ...log], 'from stdin')).code).toBe(0);
      expect((await weft(['log', 'append', 'private', '--entity', 'secret', '--kind', '4097', '--scope', 'private', ...log])).code).toBe(0);
      const read = await weft(['log', 'read', ...log]);
      expect(
        read.stdout
          .split('\n')
          .filter(Boolean)
          .map((line) => `${line.split(' ').slice(0, 2).join(' ')} ${line.split(' ').slice(4).join(' ')}`),
      ).toEqual(['1 doc#1 hello', '2 doc#2 from stdin', '3 secret#1 private']);
      const json = (await weft(['log', 'read', '--json', '--from', '2', ...log])).stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { position: number; disposition: string });
      expect(json.map((event) => [event.position, event.disposition])).toEqual([
        [2, 'decrypted'],
        [3, 'decrypted'],
      ]);

      // tail follows appends made by another process.
      const tail = weft(['log', 'tail', '--count', '2', ...log]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await weft(['log', 'append', 'tailed one', '--entity', 'doc', '--kind', '0x1001', ...log]);
      await weft(['log', 'append', 'tailed two', '--entity', 'doc', '--kind', '0x1001', ...log]);
      const tailed = await tail;
      expect(tailed.code, tailed.stderr).toBe(0);
      expect(tailed.stdout).toMatch(/^4 doc#3 .* tailed one\n5 doc#4 .* tailed two\n$/);

      const verify = await weft(['log', 'verify', ...log]);
      expect(verify.code).toBe(0);
      expect(verify.stdout).toBe('ok: 5 events in 1 segment verified\n');
      const stats = JSON.parse((await weft(['log', 'stats', '--json', ...log])).stdout) as {
        events: number;
        entities: number;
        encrypted: number;
      };
      expect(stats).toMatchObject({ events: 5, entities: 2, encrypted: 5 });

      const shred = await weft(['log', 'shred', '--scope', 'private', ...log]);
      expect(shred.code, shred.stderr).toBe(0);
      expect(shred.stdout).toBe('1 key destroyed\n');
      expect((await weft(['log', 'read', '--entity', 'secret', ...log])).stdout).toContain('<shredded>');
      // Stats count without opening payloads, and see what was shredded.
      expect(JSON.parse((await weft(['log', 'stats', '--json', ...log])).stdout)).toMatchObject({ events: 5, encrypted: 5, shredded: 1 });
      const unknown = await weft(['log', 'shred', '--entity', 'no-such-entity', ...log]);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain("no event of entity 'no-such-entity'");
      expect((await weft(['log', 'shred', '--event', '00000000-0000-7000-8000-000000000000', ...log])).code).toBe(1);
      expect((await weft(['log', 'verify', ...log])).code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses bad input clearly and names the first bad frame on damage', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-log-'));
    try {
      const log = ['--dir', dir];
      for (let index = 0; index < 3; index++)
        expect((await weft(['log', 'append', `event ${index}`, '--entity', 'e', '--kind', '0x1001', ...log])).code).toBe(0);
      const reserved = await weft(['log', 'append', 'x', '--entity', 'e', '--kind', '0xd001', ...log]);
      expect(reserved.code).toBe(2);
      expect(reserved.stderr).toContain('reserved for the log');
      expect((await weft(['log', 'append', 'x', '--entity', 'e', '--kind', 'lots', ...log])).code).toBe(2);
      expect((await weft(['log', 'append', 'x', '--entity', 'e', '--kind', '0x1001'])).code).toBe(2);
      expect((await weft(['log', 'shred', '--scope', 'x', ...log])).code).toBe(2);
      for (const bad of [
        ['read', '--from', 'abc'],
        ['read', '--from', '0'],
        ['tail', '--count', '-1'],
        ['tail', '--from', '1.5'],
      ]) {
        const refused = await weft(['log', ...bad, ...log]);
        expect(refused.code, bad.join(' ')).toBe(2);
        expect(refused.stderr, bad.join(' ')).toContain(bad[1] as string);
      }
      const mismatch = await weft(['log', 'append', 'x', '--entity', 'e', '--kind', '0x1001', '--expected-sequence', '1', ...log]);
      expect(mismatch.code).toBe(1);
      expect(mismatch.stderr).toContain('SequenceMismatch');
      expect((await weft(['log', 'stats', '--json', ...log])).stdout).toContain('"events":3');

      const [segment] = readdirSync(dir).filter((name) => name.startsWith('seg-'));
      const { openSync, writeSync, closeSync } = await import('node:fs');
      const handle = openSync(join(dir, segment as string), 'r+');
      writeSync(handle, Buffer.from('XX'), 0, 2, 130);
      closeSync(handle);
      const verify = await weft(['log', 'verify', ...log]);
      expect(verify.code).toBe(1);
      expect(verify.stderr).toContain(`bad frame in ${segment} at offset`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
