#!/usr/bin/env bash
# bench/response-cache.sh [rounds=3] [seconds=10] [connections=64]
#   The response cache of sessiond's built-in proxy, in one sitting,
#   alternating, on the embedded default store (one node: the memory tier):
#   - hit:        GET of one page the application marks `public, max-age=300`:
#                 every request answered from the cache;
#   - ceiling-axum: the ../shared/peers ceiling (fixed JSON, no session):
#                 this machine's HTTP limit, what a hit is compared with;
#   - healthz:    sessiond's own GET /healthz (fixed JSON through every
#                 server-wide layer): the floor a hit cannot go below;
#   - miss-cache: a new target every request (`?n=…`), cache on: lookup,
#                 the application, then the answer stored;
#   - miss-off:   the same requests with `[cache] enabled = false`;
#   - miss-unstored: a new target every request to a page the application
#                 marks with no freshness (looked up, never stored);
#   - miss-optout: the same with the rule's `cache = false` (the cache
#                 steps aside at once).
#   With REDIS=1 also hit-redis: the hit on a redis-server (port 6391),
#   where every hit reads its generation counters (one MGET).
#   Each RESULT line has req/s, p50/p99 and sessiond's CPU per request
#   (user + system time from /proc over the wrk window). The application is an nginx
#   answering fixed JSON (one worker). Needs target/release/sessiond, the
#   ceiling-axum peer built (cd ../shared/peers/rust && cargo build
#   --release --locked), nginx, wrk (and redis-server for REDIS=1); stops
#   what it starts by PID.
set -euo pipefail
# ../shared/peers/bench.sh's contract wants the session cookie's 30-minute
# Max-Age; sessiond gives one to remembered sessions only unless told.
export SESSIOND_COOKIE__PERSISTENT=true
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$HERE/.."
PEERS="$ROOT/../shared/peers"
ROUNDS="${1:-3}" SECS="${2:-10}" CONNS="${3:-64}"
BIN="$ROOT/target/release/sessiond"
WORK="$(mktemp -d -t sessiond-cache.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
APP=8121 SD=8080 CEIL=8104
cat > "$WORK/app.conf" <<CONF
daemon off; worker_processes 1; pid $WORK/app.pid; error_log $WORK/app.err;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/b; proxy_temp_path $WORK/p; fastcgi_temp_path $WORK/f;
  uwsgi_temp_path $WORK/u; scgi_temp_path $WORK/s;
  server { listen 127.0.0.1:$APP;
    location /app/plain { default_type application/json; return 200 '{"user_id":"user0001","role":"user"}'; }
    location / { default_type application/json; add_header Cache-Control "public, max-age=300";
      return 200 '{"user_id":"user0001","role":"user"}'; } } }
CONF
nginx -p "$WORK" -c "$WORK/app.conf" >/dev/null 2>&1 & PIDS+=($!)
PORT=$CEIL "$PEERS/rust/target/release/ceiling-axum" >/dev/null 2>&1 & PIDS+=($!)
if [ "${REDIS:-0}" = 1 ]; then
  redis-server --port 6391 --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
  until redis-cli -p 6391 ping >/dev/null 2>&1; do sleep 0.1; done
fi
for variant in on off optout; do
  {
    echo "[observability]"; echo "access_log = false"
    echo "[gateway]"; echo "upstream = \"http://127.0.0.1:$APP\""
    echo "[cache]"; echo "enabled = $([ $variant = off ] && echo false || echo true)"
    echo "[[access.rules]]"; echo "path = \"/app\""; echo "allow = \"public\""
    if [ $variant = optout ]; then echo "cache = false"; fi
  } > "$WORK/$variant.toml"
done
for i in $(seq -f '%04g' 0 999); do echo "sid=dummy-$i"; done > "$WORK/cookies.txt"
for p in $APP $CEIL; do until curl -s -o /dev/null "http://127.0.0.1:$p/"; do sleep 0.1; done; done
HZ="$(getconf CLK_TCK)"
ticks() { [ -n "$1" ] && sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}' || echo 0; }
run() { # label config url [unique] [store]
  local label=$1 config=$2 url=$3 unique=${4:-} store=${5:-}
  local pid=""
  if [ "$config" != none ]; then
    rm -rf "$WORK/data"
    # shellcheck disable=SC2086
    "$BIN" --config "$WORK/$config.toml" --data-dir "$WORK/data" $store serve --listen 127.0.0.1:$SD 2>"$WORK/sessiond.log" &
    pid=$!
    until curl -s -o /dev/null "http://127.0.0.1:$SD/healthz"; do sleep 0.1; done
    curl -s -o /dev/null "$url"
  fi
  local line t0 t1
  t0=$(ticks "$pid")
  line="$(COOKIES_FILE="$WORK/cookies.txt" UNIQUE="$unique" wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 5s \
    -s "$HERE/gateway.lua" "$url" | grep '^WRK' || echo 'WRK requests=0')"
  t1=$(ticks "$pid")
  local req; req="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")"
  echo "RESULT $label ${line#WRK } $(awk -v t=$((t1 - t0)) -v r="${req:-0}" -v hz="$HZ" \
    'BEGIN { if (r > 0 && t > 0) printf "sessiond_cpu_us_per_req=%.1f", t * 1e6 / hz / r }')"
  if [ -n "$pid" ]; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
}
unset UNIQUE
echo "# $(date -u +%FT%TZ) $(nproc) cpus, ${SECS}s x $CONNS connections, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  echo "# round $round"
  run hit on "http://127.0.0.1:$SD/app/page"
  run ceiling-axum none "http://127.0.0.1:$CEIL/api/profile"
  run healthz on "http://127.0.0.1:$SD/healthz"
  run miss-cache on "http://127.0.0.1:$SD/app/page" 1
  run miss-off off "http://127.0.0.1:$SD/app/page" 1
  run miss-unstored on "http://127.0.0.1:$SD/app/plain" 1
  run miss-optout optout "http://127.0.0.1:$SD/app/page" 1
  if [ "${REDIS:-0}" = 1 ]; then run hit-redis on "http://127.0.0.1:$SD/app/page" "" "--store redis://127.0.0.1:6391"; fi
done
