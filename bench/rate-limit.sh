#!/usr/bin/env bash
# bench/rate-limit.sh [rounds=3] [seconds=10] [connections=64]
#   The cost of a rate limit on Redis, in one sitting, alternating: sessiond's
#   built-in proxy in front of an application (an nginx answering fixed JSON,
#   one worker) on its own redis-server (port 6390), with a public rule
#   without a rate ("none") and with a rate so high it never refuses
#   ("limited": one GCRA script call per request, keyed by client address).
#   Each RESULT line has req/s, p50/p99 and the Redis commands per request
#   (INFO commandstats over the wrk window). Needs target/release/sessiond,
#   nginx, redis-server, wrk; stops what it starts by PID.
set -euo pipefail
# ../shared/peers/bench.sh's contract wants the session cookie's 30-minute
# Max-Age; sessiond gives one to remembered sessions only unless told.
export SESSIOND_COOKIE__PERSISTENT=true
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$HERE/.."
ROUNDS="${1:-3}" SECS="${2:-10}" CONNS="${3:-64}"
BIN="$ROOT/target/release/sessiond"
WORK="$(mktemp -d -t sessiond-rate.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
APP=8111 SD=8080
redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
until redis-cli -p 6390 ping >/dev/null 2>&1; do sleep 0.1; done
cat > "$WORK/app.conf" <<CONF
daemon off; worker_processes 1; pid $WORK/app.pid; error_log $WORK/app.err;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/b; proxy_temp_path $WORK/p; fastcgi_temp_path $WORK/f;
  uwsgi_temp_path $WORK/u; scgi_temp_path $WORK/s;
  server { listen 127.0.0.1:$APP; location / { default_type application/json; return 200 '{"ok":true}'; } } }
CONF
nginx -p "$WORK" -c "$WORK/app.conf" >/dev/null 2>&1 & PIDS+=($!)
for variant in none limited; do
  {
    echo "[observability]"; echo "access_log = false"
    echo "[gateway]"; echo "upstream = \"http://127.0.0.1:$APP\""
    echo "[[access.rules]]"; echo "path = \"/app\""; echo "allow = \"public\""
    if [ "$variant" = limited ]; then echo 'rate = "1000000/s"'; echo 'rate_key = "ip"'; fi
  } > "$WORK/$variant.toml"
done
for i in $(seq -f '%04g' 0 999); do echo "sid=dummy-$i"; done > "$WORK/cookies.txt"
run() { # variant
  "$BIN" --config "$WORK/$1.toml" --store redis://127.0.0.1:6390 serve --listen 127.0.0.1:$SD 2>"$WORK/sessiond.log" &
  local pid=$!
  until curl -s -o /dev/null "http://127.0.0.1:$SD/healthz"; do sleep 0.1; done
  redis-cli -p 6390 CONFIG RESETSTAT >/dev/null
  local line
  line="$(COOKIES_FILE="$WORK/cookies.txt" wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 5s -s "$HERE/gateway.lua" \
    "http://127.0.0.1:$SD/app/x" | grep '^WRK')"
  local cmds req
  cmds="$(redis-cli -p 6390 INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_\([a-z|]*\):calls=\([0-9]*\).*/\1=\2/p' | grep -v resetstat | tr '\n' ' ')"
  req="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")"
  echo "RESULT $1 ${line#WRK } redis_cmds_per_req=$(awk -v r="$req" '{ for (i = 1; i <= NF; i++) { split($i, a, "="); printf "%s%s=%.2f", (o++ ? "," : ""), a[1], a[2] / r } } END { if (!o) printf "none" }' <<<"$cmds")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
echo "# $(date -u +%FT%TZ) $(nproc) cpus, ${SECS}s x $CONNS connections, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  echo "# round $round"
  run none
  run limited
done
