/**
 * The Lua scripts of the Redis backend, one per mutation, run with
 * `EVALSHA` (loaded with `EVAL` when the server lacks them). Each runs
 * atomically on the server: it settles a passed TTL of its key first (so
 * watchers see `expire` before whatever comes next), checks the expected
 * version, writes the record, appends to the bucket's change stream and
 * returns the new version (the stream id, chosen as {@link prelude} says).
 *
 * Key layout for bucket B (one hash tag, so Redis Cluster keeps a bucket on
 * one slot):
 *
 *   weft:{B}:r:<key>  hash   o = p (put) | d (delete) | x (purge), v = value, n = version
 *   weft:{B}:log      stream one entry per change: k = key, t = p | d | x | e (expire); no values; an entry
 *                            of a commit followed by more of it also has r = how many follow
 *   weft:{B}:exp      zset   key -> expiry time (ms, server clock)
 *   weft:{B}:idx      zset   live keys (score 0), for prefix listing with ZRANGEBYLEX
 *   weft:{B}:meta     hash   epoch = random id of this incarnation of the bucket's data,
 *                            last = the last change-stream id a script chose
 *   weft:{B}:tomb     zset   key -> time (ms) of its delete or purge, for compaction (a key written
 *                            again since stays until compaction finds it live and drops it)
 *
 * Mutation KEYS: record, log, exp, idx, meta, tomb.
 * Mutation ARGV: key, a random integer from 1 to 2^31 - 2 (see below), max
 * history entries, then per script.
 *
 * The epoch (a random id of this incarnation of the bucket's data) is set by
 * the change reader, the only place it is read: a bucket whose data vanished
 * (a restart without persistence) gets a new one at the first read after,
 * which is how watches holding old cursors find out. The reader's script
 * takes an epoch candidate where mutations take their random integer.
 *
 * Change-stream ids are chosen by the scripts, not by \`XADD *\`: the
 * server's clock in ms, then a sequence that starts at a random number in
 * each new millisecond and steps by a random amount within one. A server
 * that forgot entries it had handed out (a failover to a replica that
 * lacked them, an older copy put back) would give \`XADD *\` the same ids
 * again, within the same millisecond or later with a clock behind the old
 * one's, and a version or cursor naming a forgotten write would then name
 * the write that took its id.
 */

const prelude = `
local record, log, expiries, index, meta, tombstones = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local key, random, max_entries = ARGV[1], tonumber(ARGV[2]) or 1, tonumber(ARGV[3])

-- The server's clock (ms), read once per call and only when an expiry needs it.
local now
local function clock()
  if not now then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  end
  return now
end

-- The next of the client's random numbers (Park and Miller's generator: exact in Lua's doubles), below range.
local function draw(range)
  random = (random * 16807) % 2147483647
  return random % range
end

-- The id of the next change-stream entry: the clock, a random sequence in a new millisecond, a random step in one.
local function next_id()
  local last = redis.call('HGET', meta, 'last')
  if not last then
    last = '0-0'
    if redis.call('EXISTS', log) == 1 then
      local info = redis.call('XINFO', 'STREAM', log)
      for i = 1, #info, 2 do if info[i] == 'last-generated-id' then last = info[i + 1] end end
    end
  end
  local dash = string.find(last, '-', 1, true)
  local last_ms, last_seq = tonumber(string.sub(last, 1, dash - 1)), tonumber(string.sub(last, dash + 1))
  local ms, seq = clock(), 0
  if ms > last_ms then
    seq = draw(2147483647)
  else
    ms, seq = last_ms, last_seq + 1
    if seq < 2^52 then seq = seq + draw(65536) end
  end
  local id = string.format('%.0f-%.0f', ms, seq)
  redis.call('HSET', meta, 'last', id)
  return id
end

-- rest: how many entries of the same commit follow this one (nil outside a commit), so that a reader takes them together.
local function append(change_key, change_type, rest)
  local id = next_id()
  if rest and rest > 0 then
    redis.call('XADD', log, id, 'k', change_key, 't', change_type, 'r', rest)
  else
    redis.call('XADD', log, id, 'k', change_key, 't', change_type)
  end
  -- Trim in steps of at least 64 entries; XINFO's first entry then marks the horizon.
  if redis.call('XLEN', log) > max_entries + math.max(64, math.floor(max_entries / 100)) then
    redis.call('XTRIM', log, 'MAXLEN', max_entries)
  end
  return id
end

-- Redis already removed an expired record (PEXPIREAT); emit its expire event and clear the side indexes.
local function expire(change_key, record_key)
  redis.call('ZREM', expiries, change_key)
  redis.call('ZREM', index, change_key)
  redis.call('DEL', record_key)
  append(change_key, 'e')
end
`;

/**
 * Writes of one key, parameterized by the key and its record so that a
 * script may write several. A record has an expiry exactly when its key is
 * in the expiry index, so a bucket without TTLs answers \`settle\` with one
 * ZCARD, and the key's \`due\` (its expiry, or false) tells the writes
 * whether there is an expiry to clear.
 */
const keyWrites = `
-- The key's expiry, or false; a passed one is settled first (its expire event), which leaves none.
local function settle(key, record)
  local due = false
  if redis.call('ZCARD', expiries) > 0 then due = redis.call('ZSCORE', expiries, key) end
  if due and tonumber(due) <= clock() then
    expire(key, record)
    due = false
  end
  return due
end

local function live_version(record)
  local fields = redis.call('HMGET', record, 'o', 'n')
  if fields[1] == 'p' then return fields[2] end
  return false
end

local function write_put(key, record, due, value, ttl, rest)
  local id = append(key, 'p', rest)
  -- HSET counts the fields it added: none when the record held a value (only puts have v), whose key is indexed already.
  local added = redis.call('HSET', record, 'o', 'p', 'v', value, 'n', id)
  if ttl then
    -- Redis hides a key once now > at, so at = expiry - 1 hides it from the expiry instant on.
    redis.call('PEXPIREAT', record, clock() + ttl - 1)
    redis.call('ZADD', expiries, clock() + ttl, key)
  elseif due then
    redis.call('PERSIST', record)
    redis.call('ZREM', expiries, key)
  end
  if added > 0 then redis.call('ZADD', index, 0, key) end
  return id
end

local function write_tombstone(key, record, due, op, rest)
  local id = append(key, op, rest)
  redis.call('DEL', record)
  redis.call('HSET', record, 'o', op, 'n', id)
  if due then redis.call('ZREM', expiries, key) end
  redis.call('ZREM', index, key)
  redis.call('ZADD', tombstones, tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1)), key)
  return id
end
`;

/** What every single-key mutation does first: settles a passed TTL of its key. */
const mutationPrelude = `${prelude}${keyWrites}
local due = settle(key, record)
`;

/** The mutation scripts; a table reply `{code, current}` means the precondition failed. */
export const mutationScripts = {
  weftPut: `${mutationPrelude}
return write_put(key, record, due, ARGV[4], nil)`,
  weftPutTtl: `${mutationPrelude}
return write_put(key, record, due, ARGV[4], tonumber(ARGV[5]))`,
  weftCreate: `${mutationPrelude}
if live_version(record) then return {'AlreadyExists', live_version(record)} end
return write_put(key, record, due, ARGV[4], nil)`,
  weftUpdate: `${mutationPrelude}
local current = live_version(record)
if current ~= ARGV[5] then return {'RevisionMismatch', current or ''} end
return write_put(key, record, due, ARGV[4], nil)`,
  weftDelete: `${mutationPrelude}
return write_tombstone(key, record, due, 'd')`,
  weftDeleteIf: `${mutationPrelude}
local current = live_version(record)
if current ~= ARGV[4] then return {'RevisionMismatch', current or ''} end
return write_tombstone(key, record, due, 'd')`,
  weftPurge: `${mutationPrelude}
return write_tombstone(key, record, due, 'x')`,
} as const;

export type MutationScript = keyof typeof mutationScripts;

/**
 * Several writes in one step. KEYS: the first operation's record, log, exp,
 * idx, meta, tomb, then the other operations' records. ARGV: unused key,
 * random integer, max entries, then four per operation: kind, key, value
 * (or ''), the expected version or the TTL (or ''). Passed TTLs of every key
 * are settled first, then every precondition is checked, then every write
 * applied, so the commit's stream entries follow one another. Returns the
 * versions in op order, or \`{code, current, index}\` (1-based) for the first
 * operation whose precondition failed, with nothing written.
 */
export const commitScript = `${prelude}${keyWrites}
local count = (#ARGV - 3) / 4
local function op_record(i) if i == 1 then return KEYS[1] end return KEYS[5 + i] end
local function op_arg(i, field) return ARGV[3 + (i - 1) * 4 + field] end
local dues = {}
for i = 1, count do dues[i] = settle(op_arg(i, 2), op_record(i)) end
local function check(i)
  local kind = op_arg(i, 1)
  if kind == 'create' then
    local current = live_version(op_record(i))
    if current then return {'AlreadyExists', current, i} end
  elseif kind == 'update' or kind == 'deleteWithVersion' then
    local current = live_version(op_record(i))
    if current ~= op_arg(i, 4) then return {'RevisionMismatch', current or '', i} end
  end
  return nil
end
for i = 1, count do
  local failed = check(i)
  if failed then return failed end
end
local versions = {}
for i = 1, count do
  local kind, op_key = op_arg(i, 1), op_arg(i, 2)
  if kind == 'delete' or kind == 'deleteWithVersion' then
    versions[i] = write_tombstone(op_key, op_record(i), dues[i], 'd', count - i)
  elseif kind == 'putWithTtl' then
    versions[i] = write_put(op_key, op_record(i), dues[i], op_arg(i, 3), tonumber(op_arg(i, 4)), count - i)
  else
    versions[i] = write_put(op_key, op_record(i), dues[i], op_arg(i, 3), nil, count - i)
  end
end
return versions`;

/**
 * Expires due entries: KEYS as for mutations with a placeholder record key;
 * ARGV: unused key, random integer, max entries, record key prefix, limit.
 * Returns how many entries expired.
 */
export const sweepScript = `${prelude}
local record_prefix, limit = ARGV[4], tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', expiries, '-inf', clock(), 'LIMIT', 0, limit)
for _, due_key in ipairs(due) do
  expire(due_key, record_prefix .. due_key)
end
return #due`;

/**
 * Removes tombstone records (deletes and purges) older than an age by the
 * server's clock, in batches: KEYS: tomb. ARGV: record key prefix, age (ms), limit. A key
 * in the index that is live again (or gone) is only dropped from the index.
 * The change stream keeps its delete and purge entries (they carry no
 * record), so watches resumed from before still see them. Returns
 * {examined, removed}.
 */
export const compactScript = `
local tombstones = KEYS[1]
local record_prefix, age, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local cutoff = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) - age
local due = redis.call('ZRANGEBYSCORE', tombstones, '-inf', cutoff, 'LIMIT', 0, limit)
local removed = 0
for _, key in ipairs(due) do
  local record = record_prefix .. key
  local op = redis.call('HGET', record, 'o')
  if op == 'd' or op == 'x' then
    redis.call('DEL', record)
    removed = removed + 1
  end
  redis.call('ZREM', tombstones, key)
end
return {#due, removed}`;

/**
 * Reads the change stream after a position, with the values of puts that are
 * still current (a superseded put is reported as 's', skipped: its key changed
 * again later in the stream). KEYS: log, meta. ARGV: after id, count, record
 * key prefix, epoch candidate.
 *
 * Returns {epoch, last-generated-id, horizon, lost, id1, key1, type1, value1, ...}:
 * lost is '1' when the entry at the position read after is gone although it
 * lies above the horizon (the stream forgot acknowledged writes).
 * A position below the horizon may have lost changes: weft only ever removes
 * entries by trimming the head of the stream, so once anything was removed
 * (entries-added > length) every position below the first retained entry is
 * suspect (all of them, if the stream is empty); XDEL from elsewhere shows in
 * max-deleted-entry-id.
 */
export const readChangesScript = `
local log, meta = KEYS[1], KEYS[2]
local after, count, record_prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
redis.call('HSETNX', meta, 'epoch', ARGV[4])
local reply = {redis.call('HGET', meta, 'epoch'), '0-0', '0-0', '0'}
local function id_parts(id) local dash = string.find(id, '-', 1, true) return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1)) end
local function stream_id_after(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am > bm or (am == bm and as > bs)
end
if redis.call('EXISTS', log) == 0 then
  -- Nothing at all, yet the reader has a position past nothing: the stream lost everything it handed out.
  if after ~= '0-0' then reply[4] = '1' end
  return reply
end
local info = redis.call('XINFO', 'STREAM', log)
local fields = {}
for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
reply[2] = fields['last-generated-id']
local horizon = fields['max-deleted-entry-id'] or '0-0'
if tonumber(fields['entries-added'] or 0) > tonumber(fields['length']) then
  local first = fields['first-entry']
  local trimmed_below = (first and first[1]) or reply[2]
  if stream_id_after(trimmed_below, horizon) then horizon = trimmed_below end
end
reply[3] = horizon
-- The entry read after must still exist when it lies above the horizon: a stream that lost it (a failover to a
-- replica that lacked it, a restart from an older copy) forgot writes it had acknowledged, even if newer writes
-- have since moved its head past the position.
reply[4] = '0'
if after ~= '0-0' and stream_id_after(after, horizon) and #redis.call('XRANGE', log, after, after) == 0 then reply[4] = '1' end
if count == 0 then return reply end
local entries = redis.call('XRANGE', log, '(' .. after, '+', 'COUNT', count)
-- The entries of one commit are read together: whether a put is still current is then decided for all of them at
-- once, so a reader never delivers part of a commit and skips the rest as superseded.
local last = entries[#entries]
local rest = last and tonumber(last[2][6] or '0') or 0
if rest > 0 then
  for _, entry in ipairs(redis.call('XRANGE', log, '(' .. last[1], '+', 'COUNT', rest)) do entries[#entries + 1] = entry end
end
for _, entry in ipairs(entries) do
  local id, entry_fields = entry[1], entry[2]
  local change_key, change_type = entry_fields[2], entry_fields[4]
  local value = ''
  if change_type == 'p' then
    local current = redis.call('HMGET', record_prefix .. change_key, 'n', 'v')
    if current[1] == id then value = current[2] else change_type = 's' end
  end
  reply[#reply + 1] = id
  reply[#reply + 1] = change_key
  reply[#reply + 1] = change_type
  reply[#reply + 1] = value
end
return reply`;
