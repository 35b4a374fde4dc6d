//! The Lua scripts that make multi-step changes atomic. Every script touches
//! only keys with one hash tag (a user's shard), so each runs on one Cluster
//! slot. Return codes: -1 not needed, -2 gone, -3 conflict.

use std::sync::LazyLock;

use redis::{Cmd, Script};

/// `EVALSHA` of `script` with `keys`; add the arguments with `.arg()`.
/// (Built by hand rather than with `ScriptInvocation` so that it can be
/// pipelined with `WAIT` on one connection.)
pub(crate) fn evalsha(script: &Script, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// KEYS: session, index. ARGV: member, expire-at, absolute, created (trims
/// index entries whose absolute expiry passed), then field, value, …
pub(crate) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], ARGV[3], 'NX')
redis.call('PEXPIREAT', KEYS[2], ARGV[3], 'GT')
return 1
",
    )
});

/// A create under a limit on the user's live sessions. KEYS: session,
/// index, then the session key of each member the caller read from the
/// index (so that every key the script touches is declared, and lives in
/// the user's slot). ARGV: member, expire-at, absolute, now (as in
/// [`CREATE`]), the limit, '1' to refuse past it ('0': evict the oldest),
/// the number n of members read, those n members, then field, value, ….
/// Returns {1, evicted member…}, {0} (refused: the limit is reached),
/// {-1} (the key exists) or {-2} (the index changed since it was read:
/// read it again). Oldest is by the `c` field (creation, ms); a session
/// written before `c` existed counts as the oldest.
pub(crate) static CREATE_LIMITED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
local n = tonumber(ARGV[7])
local current = redis.call('ZRANGE', KEYS[2], 0, -1)
if #current ~= n then return {-2} end
local read = {}
for i = 1, n do read[ARGV[7 + i]] = true end
for _, m in ipairs(current) do
  if not read[m] then return {-2} end
end
local live = {}
for i = 1, n do
  local m, k = ARGV[7 + i], KEYS[2 + i]
  local c = redis.call('HGET', k, 'c')
  if not c and redis.call('EXISTS', k) == 1 then c = '0' end
  if c then
    live[#live + 1] = {tonumber(c), m, k}
  else
    redis.call('ZREM', KEYS[2], m)
  end
end
local max = tonumber(ARGV[5])
local evicted = {1}
if #live >= max then
  if ARGV[6] == '1' then return {0} end
  table.sort(live, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  for i = 1, #live - max + 1 do
    redis.call('DEL', live[i][3])
    redis.call('ZREM', KEYS[2], live[i][2])
    evicted[#evicted + 1] = live[i][2]
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8 + n))
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], ARGV[3], 'NX')
redis.call('PEXPIREAT', KEYS[2], ARGV[3], 'GT')
return evicted
",
    )
});

/// Cluster create, step 2. KEYS: index. ARGV: member, absolute, created (as
/// in [`CREATE`]). Single-key, so it still runs while the slot migrates.
pub(crate) static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'NX')
redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
return 1
",
    )
});

/// Cluster create, step 1. KEYS: session. ARGV: expire-at, then field, value, …
/// Returns 0 if the key exists.
pub(crate) static SESSION_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
",
    )
});

/// KEYS: session. ARGV: now, threshold, idle. Returns the new idle expiry, -1 or -2.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'i', 'e')
if not v[1] then return -2 end
local now, th, idle = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ie, ae = tonumber(v[1]), tonumber(v[2])
if now >= ie or now >= ae then return -2 end
if ie - now >= th then return -1 end
local new = math.min(now + idle, ae)
if new <= ie then return -1 end
redis.call('HSET', KEYS[1], 'i', string.format('%.0f', new), 'l', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', new))
return new
",
    )
});

/// KEYS: session. ARGV: now, expected version or '', the attribute budget
/// (count, bytes of names and values), then (name, 's'|'d', value) triples.
/// Returns the new version, -2 (gone), -3 (version conflict) or -4 (over
/// budget; nothing written). The budget is counted over the `a:` fields
/// inside the script, so concurrent updates cannot overrun it.
pub(crate) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'i', 'e', 'v')
if not v[1] then return -2 end
local now = tonumber(ARGV[1])
if now >= tonumber(v[1]) or now >= tonumber(v[2]) then return -2 end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= tonumber(v[3]) then return -3 end
local sizes = {}
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all, 2 do
  if string.sub(all[j], 1, 2) == 'a:' then sizes[string.sub(all[j], 3)] = #all[j + 1] end
end
local i = 5
while i <= #ARGV do
  if ARGV[i + 1] == 's' then sizes[ARGV[i]] = #ARGV[i + 2] else sizes[ARGV[i]] = nil end
  i = i + 3
end
local count, bytes = 0, 0
for name, size in pairs(sizes) do
  count = count + 1
  bytes = bytes + #name + size
end
if count > tonumber(ARGV[3]) or bytes > tonumber(ARGV[4]) then return -4 end
i = 5
while i <= #ARGV do
  if ARGV[i + 1] == 's' then
    redis.call('HSET', KEYS[1], 'a:' .. ARGV[i], ARGV[i + 2])
  else
    redis.call('HDEL', KEYS[1], 'a:' .. ARGV[i])
  end
  i = i + 3
end
return redis.call('HINCRBY', KEYS[1], 'v', 1)
",
    )
});

/// KEYS: old, new, index. ARGV: now, old member, new member, old `m`, new
/// `m`, new `x` (CSRF secret) or ''.
/// The old `m` is compared first (it only ever changes by a cycle, which
/// deletes the old key). Returns the new hash as a flat list, or {-2} / {-3}.
pub(crate) static CYCLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'm', 'i', 'e')
if not v[1] or v[1] ~= ARGV[4] then return {-2} end
local now = tonumber(ARGV[1])
if now >= tonumber(v[2]) or now >= tonumber(v[3]) then return {-2} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {-3} end
redis.call('HSET', KEYS[2], unpack(redis.call('HGETALL', KEYS[1])))
redis.call('HSET', KEYS[2], 'm', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], 'x', ARGV[6]) end
redis.call('HINCRBY', KEYS[2], 'v', 1)
redis.call('PEXPIREAT', KEYS[2], string.format('%.0f', math.min(tonumber(v[2]), tonumber(v[3]))))
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[3], v[3], ARGV[3])
return redis.call('HGETALL', KEYS[2])
",
    )
});

/// KEYS: index, session…; ARGV: member to keep or '', then the member of each session key.
/// Returns how many sessions it deleted.
pub(crate) static DELETE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = 0
for i = 2, #KEYS do
  local m = ARGV[i]
  if m ~= ARGV[1] then
    n = n + redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], m)
  end
end
return n
",
    )
});

/// KEYS: setting. ARGV: '1' if a current value is expected ('0': none), the
/// expected value, the new value. Returns 1 if it stored the new value, else 0.
pub(crate) static SWAP_SETTING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
",
    )
});

/// KEYS: attempt counters (all under one hash tag). ARGV: window end (ms,
/// absolute), then each counter's limit. Returns -1 when the attempt was
/// taken (each counter gained one), else the milliseconds until the
/// blocking counter's window ends (nothing changed).
pub(crate) static TAKE_ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local wait = -1
for i, k in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', k) or '0')
  if n >= tonumber(ARGV[i + 1]) then
    local t = redis.call('PTTL', k)
    if t < 0 then t = 0 end
    if t > wait then wait = t end
  end
end
if wait >= 0 then return wait end
for _, k in ipairs(KEYS) do
  if redis.call('INCR', k) == 1 then
    redis.call('PEXPIREAT', k, ARGV[1])
  end
end
return -1
",
    )
});

/// One GCRA step (`sessiond_core::rate::gcra`, the same arithmetic) at
/// Redis's own clock, so every node judges by one time. KEYS: the limit's
/// key. ARGV: the emission interval and the tolerance, microseconds.
/// Returns {allowed (0/1), remaining, reset µs, retry-after µs}. The TAT
/// expires when it has passed: an expired key is a full burst.
pub(crate) static RATE_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > tau then
  return {0, 0, tat - now, tat - now - tau}
end
local new = tat + T
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.floor((new - now) / 1000) + 1)
return {1, math.floor((now + tau + T - new) / T), new - now, 0}
",
    )
});

/// KEYS: attempt counters. ARGV: per key, '1' (give back one) or 'all'
/// (forget the window). A counter never goes below zero.
pub(crate) static REFUND_ATTEMPTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i, k in ipairs(KEYS) do
  if ARGV[i] == 'all' then
    redis.call('DEL', k)
  elseif redis.call('DECR', k) <= 0 then
    redis.call('DEL', k)
  end
end
return 1
",
    )
});

/// Bumps response-cache generation counters (all in one slot: `{rcg}`).
/// KEYS: the counters. ARGV: how long to keep each after this bump, ms.
pub(crate) static CACHE_INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for _, k in ipairs(KEYS) do
  redis.call('INCR', k)
  redis.call('PEXPIRE', k, ARGV[1])
end
return 1
",
    )
});
