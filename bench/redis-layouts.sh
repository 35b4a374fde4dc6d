#!/usr/bin/env bash
# bench/redis-layouts.sh [port=6391]
# Bytes per session of candidate Redis layouts: 100 000 keys written by one
# Lua loop each, growth of `used_memory` / 100 000. Starts its own
# redis-server on the port (default settings, no persistence) and stops it.
set -euo pipefail
PORT="${1:-6391}"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
PID=$!
trap 'kill $PID' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
R=(redis-cli -p "$PORT")
T=$(( ($(date +%s) + 86400) * 1000 )) # expiry tomorrow, in ms
N=100000
used() { "${R[@]}" info memory | tr -d '\r' | awk -F: '/^used_memory:/{print $2}'; }
measure() {
  "${R[@]}" flushall >/dev/null
  local before after
  before=$(used); "${R[@]}" eval "$2" 0 >/dev/null; after=$(used)
  printf '%-95s %5d B/session\n' "$1" $(( (after - before) / N ))
}
HASH6="redis.call('HSET',k,'m',string.rep('x',57),'x',string.rep('y',32),'e','$T','i','$T','l','$T','v','1')"
INDEX="local u='sessiond:{ab}u:user'..string.format('%05d',math.floor(i/2)); redis.call('ZADD',u,$T,string.format('%043d',i)); redis.call('PEXPIREAT',u,$T)"
measure "peers' model: one string, 22-char id, 100-byte blob, expiry, no index" \
  "for i=1,$N do local k='sess:'..string.format('%022d',i); redis.call('SET',k,string.rep('x',100)); redis.call('PEXPIREAT',k,$T) end"
measure "one string under sessiond's 58-char key name, 100-byte blob, expiry" \
  "for i=1,$N do local k='sessiond:{ab}s:'..string.format('%043d',i); redis.call('SET',k,string.rep('x',100)); redis.call('PEXPIREAT',k,$T) end"
measure "sessiond's hash alone (m 57 B, x 32 B, e, i, l, v), no index" \
  "for i=1,$N do local k='sessiond:{ab}s:'..string.format('%043d',i); $HASH6; redis.call('PEXPIREAT',k,$T) end"
measure "the same bytes in 2 fields (m 90 B, t = e:i:l:v), no index" \
  "for i=1,$N do local k='sessiond:{ab}s:'..string.format('%043d',i); redis.call('HSET',k,'m',string.rep('x',90),'t','$T:$T:$T:1'); redis.call('PEXPIREAT',k,$T) end"
measure "sessiond's hash + per-user sorted set, 2 sessions per user" \
  "for i=1,$N do local k='sessiond:{ab}s:'..string.format('%043d',i); $HASH6; redis.call('PEXPIREAT',k,$T); $INDEX end"
measure "minimal hash (m 16 B, one expiry) + per-user sorted set" \
  "for i=1,$N do local k='sessiond:{ab}s:'..string.format('%043d',i); redis.call('HSET',k,'m',string.rep('x',16),'e','$T'); redis.call('PEXPIREAT',k,$T); $INDEX end"
measure "minimal hash + sorted set, no prefix, 32-char ids (shortest keys)" \
  "for i=1,$N do local k='s:'..string.format('%032d',i); redis.call('HSET',k,'m',string.rep('x',16),'e','$T'); redis.call('PEXPIREAT',k,$T); local u='u:user'..string.format('%05d',math.floor(i/2)); redis.call('ZADD',u,$T,string.format('%032d',i)); redis.call('PEXPIREAT',u,$T) end"
