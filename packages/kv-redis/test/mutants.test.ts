/**
 * The conformance suite must catch realistic bugs in the Redis backend
 * itself, not only in the memory backend: each mutant below is one bug a
 * backend author could write, applied to a copy of this package's source
 * (its Lua scripts or its client code), run against a real server until the
 * first conformance check fails. Every mutant must be caught; the catch
 * rate and the check that caught each one are printed.
 */
import { fileURLToPath } from 'node:url';
import { describeKvMutants, type SourceMutant } from '@weft/kv-testkit';
import type { RedisServer } from '@weft/test-servers';
import { type RedisFixture, redisHarness, redisMissing, standalone } from './helpers.js';

const srcDir = fileURLToPath(new URL('../src', import.meta.url));

const mutants: SourceMutant[] = [
  {
    name: 'create refuses over a tombstone (checks that any record exists, not a live one)',
    firstCheck: 'every write gives the key a new version',
    file: 'scripts.ts',
    find: "if live_version(record) then return {'AlreadyExists', live_version(record)} end",
    replace: "if redis.call('EXISTS', record) == 1 then return {'AlreadyExists', live_version(record) or ''} end",
  },
  {
    name: 'update compares against the record version whatever its op (a tombstone version matches)',
    firstCheck: 'update succeeds only on the current version',
    file: 'scripts.ts',
    find: "local current = live_version(record)\nif current ~= ARGV[5] then return {'RevisionMismatch', current or ''} end",
    replace: "local current = redis.call('HGET', record, 'n')\nif current ~= ARGV[5] then return {'RevisionMismatch', current or ''} end",
  },
  {
    name: 'deleteWithVersion skips its version check',
    firstCheck: 'a refused compare-and-swap names the key',
    file: 'scripts.ts',
    find: "if current ~= ARGV[4] then return {'RevisionMismatch', current or ''} end\nreturn write_tombstone(key, record, due, 'd')",
    replace: "return write_tombstone(key, record, due, 'd')",
  },
  {
    name: 'a plain put keeps an earlier TTL (PERSIST forgotten)',
    firstCheck: 'a plain put clears the TTL',
    file: 'scripts.ts',
    find: "    redis.call('PERSIST', record)\n",
    replace: '',
  },
  {
    name: 'a TTL put lives a second longer than asked',
    firstCheck: 'reads as absent to get, entry, keys',
    file: 'scripts.ts',
    find: "redis.call('PEXPIREAT', record, clock() + ttl - 1)",
    replace: "redis.call('PEXPIREAT', record, clock() + ttl + 1000)",
  },
  {
    name: 'a tombstone is logged as a put',
    firstCheck: 'purge deletes the key and watchers see a purge event',
    file: 'scripts.ts',
    find: 'local function write_tombstone(key, record, due, op, rest)\n  local id = append(key, op, rest)',
    replace: "local function write_tombstone(key, record, due, op, rest)\n  local id = append(key, 'p', rest)",
  },
  {
    name: 'trimming does not move the horizon (only XDEL does)',
    firstCheck: 'a cursor whose history is gone',
    file: 'scripts.ts',
    find: "if tonumber(fields['entries-added'] or 0) > tonumber(fields['length']) then",
    replace: 'if false then',
  },
  {
    name: 'the sweeper expires entries without logging an expire event',
    firstCheck: 'an expiry shows up in watches as an expire event',
    file: 'scripts.ts',
    find: "  redis.call('DEL', record_key)\n  append(change_key, 'e')",
    replace: "  redis.call('DEL', record_key)",
  },
  {
    name: 'purge writes a delete marker instead of a purge marker',
    firstCheck: 'entry returns the raw latest record',
    file: 'scripts.ts',
    find: 'weftPurge: `$' + "{mutationPrelude}\nreturn write_tombstone(key, record, due, 'x')`",
    replace: 'weftPurge: `$' + "{mutationPrelude}\nreturn write_tombstone(key, record, due, 'd')`",
  },
  {
    name: 'a write does not settle a passed TTL of its key first (no expire before the next write)',
    firstCheck: "comes after that key's expire event",
    file: 'scripts.ts',
    find: '  if due and tonumber(due) <= clock() then\n    expire(key, record)',
    replace: '  if false then\n    expire(key, record)',
  },
  {
    name: 'a put indexes only brand-new records (a key written again after its delete drops out of listings)',
    firstCheck: 'stays complete while other clients write continuously',
    file: 'scripts.ts',
    find: "if added > 0 then redis.call('ZADD', index, 0, key) end",
    replace: "if added == 3 then redis.call('ZADD', index, 0, key) end",
  },
  {
    name: 'a put without TTL leaves the key in the expiry index (the sweeper later expires a permanent value)',
    firstCheck: 'a plain put clears the TTL',
    file: 'scripts.ts',
    find: "    redis.call('PERSIST', record)\n    redis.call('ZREM', expiries, key)\n",
    replace: "    redis.call('PERSIST', record)\n",
  },
  {
    name: 'a delete leaves the key in the expiry index (the sweeper later logs an expire of a deleted key)',
    firstCheck: 'a delete or purge before the TTL passes',
    file: 'scripts.ts',
    find: "  if due then redis.call('ZREM', expiries, key) end\n",
    replace: '',
  },
  {
    name: 'a write settles passed TTLs only while more than one key has a TTL',
    firstCheck: 'a plain put clears the TTL',
    file: 'scripts.ts',
    find: "if redis.call('ZCARD', expiries) > 0 then due",
    replace: "if redis.call('ZCARD', expiries) > 1 then due",
  },
  {
    name: 'the change reader does not check that the entry it reads after still exists (a server that forgot acknowledged writes looks whole once newer writes pass its position)',
    firstCheck: 'a server that forgets acknowledged writes',
    file: 'scripts.ts',
    find: "and #redis.call('XRANGE', log, after, after) == 0 then reply[4] = '1' end",
    replace: "and false then reply[4] = '1' end",
  },
  {
    name: 'the change feed does not report the trimming horizon',
    firstCheck: 'a cursor whose history is gone',
    file: 'change-stream.ts',
    find: 'head: head.lastId, horizon: head.horizon, lost: head.lost },',
    replace: 'head: head.lastId, horizon: undefined, lost: head.lost },',
  },
  {
    name: 'the state-sync listing keeps records written after its snapshot',
    firstCheck: 'state-sync of a bucket of several listing pages',
    file: 'change-stream.ts',
    find: "if (op === 'p' && version != null && compareStreamIds(version, snapshot) <= 0) candidates.push({ key, version });",
    replace: "if (op === 'p' && version != null) candidates.push({ key, version });",
  },
  {
    name: 'entry() reports a purge marker as a delete',
    firstCheck: 'entry returns the raw latest record',
    file: 'driver.ts',
    find: "return { key, op: 'purge', version: versionText };",
    replace: "return { key, op: 'delete', version: versionText };",
  },
  {
    name: 'a commit applies each operation before checking the next one (a later failing precondition leaves earlier writes)',
    firstCheck: 'a commit whose precondition fails writes nothing',
    file: 'scripts.ts',
    find: 'for i = 1, count do\n  local failed = check(i)\n  if failed then return failed end\nend\nlocal versions = {}\nfor i = 1, count do\n',
    replace: 'local versions = {}\nfor i = 1, count do\n  local failed = check(i)\n  if failed then return failed end\n',
  },
  {
    name: "a commit is sent as one script per operation (another commit's writes interleave with them)",
    firstCheck: 'a commit whose precondition fails writes nothing',
    file: 'driver.ts',
    find: 'this.#replicated(this.connection.runScript(commit, keys, args, false).then(settle, fail), keys[0] as string, first.key)',
    replace: 'Promise.all(mutations.map((mutation) => this.mutate(mutation)))',
  },
];

let server: RedisServer;
const fixture = {} as RedisFixture;

describeKvMutants<typeof import('@weft/kv-redis')>('redis', mutants, {
  srcDir,
  skip: redisMissing,
  setup: async () => {
    let raw: RedisFixture['raw'];
    ({ server, raw } = await standalone());
    Object.assign(fixture, { target: { url: server.url }, raw });
  },
  teardown: async () => {
    fixture.raw?.disconnect();
    await server?.stop();
  },
  harness: ({ openRedisKv }) => redisHarness(openRedisKv, fixture),
});
