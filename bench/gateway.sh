#!/usr/bin/env bash
# bench/gateway.sh [rounds=3] [seconds=10] [connections=64]
#   sessiond in front of an application, in one sitting, alternating:
#   - verify:       GET /auth/verify alone (cookie + X-Original-URL), as nginx asks it
#   - profile:      sessiond's own GET /api/profile (the same stack, no gateway)
#   - ceiling-axum: the ../shared/peers ceiling (fixed JSON, no session): this machine's HTTP limit
#   - nginx-direct: nginx → application, no authentication (the hop itself)
#   - nginx-auth:   nginx with the shipped auth_request snippets → sessiond → application
#   - builtin:      sessiond's built-in proxy → application
#   The application is an nginx answering fixed JSON (one worker), the same
#   for the last three. Every nginx runs one worker. 1000 users, rotating
#   cookies, wrk -t2. Each RESULT line has req/s, p50/p99 and the CPU time
#   per request of sessiond, of the front nginx and of the application.
#   Needs: target/release/sessiond, the ceiling-axum peer built
#   (cd ../shared/peers/rust && cargo build --release --locked), nginx, wrk.
#   Starts everything on loopback and stops it by PID.
set -euo pipefail
# ../shared/peers/bench.sh's contract wants the session cookie's 30-minute
# Max-Age; sessiond gives one to remembered sessions only unless told.
export SESSIOND_COOKIE__PERSISTENT=true
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$HERE/.."
PEERS="$ROOT/../shared/peers"
ROUNDS="${1:-3}" SECS="${2:-10}" CONNS="${3:-64}"
BIN="$ROOT/target/release/sessiond"
WORK="$(mktemp -d -t sessiond-gateway.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
APP=8111 DIRECT=8112 AUTH=8113 SD=8080 CEIL=8104

# The application, and the two fronts.
mkdir -p "$WORK/snippets"
cp "$ROOT/deploy/nginx/sessiond-location.conf" "$ROOT/deploy/nginx/sessiond-auth.conf" "$WORK/snippets/"
nginx_conf() { # name body
  cat > "$WORK/$1.conf" <<CONF
daemon off; worker_processes 1; pid $WORK/$1.pid; error_log $WORK/$1.err;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/$1-b; proxy_temp_path $WORK/$1-p;
  fastcgi_temp_path $WORK/$1-f; uwsgi_temp_path $WORK/$1-u; scgi_temp_path $WORK/$1-s;
  upstream app { server 127.0.0.1:$APP; keepalive 64; }
  upstream sessiond { server 127.0.0.1:$SD; keepalive 64; }
  $2
}
CONF
  nginx -p "$WORK" -c "$WORK/$1.conf" >/dev/null 2>&1 & PIDS+=($!)
}
nginx_conf app "server { listen 127.0.0.1:$APP; location / { default_type application/json; return 200 '{\"user_id\":\"user0001\",\"role\":\"user\"}'; } }"
nginx_conf direct "server { listen 127.0.0.1:$DIRECT; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx_conf auth "server { listen 127.0.0.1:$AUTH; include snippets/sessiond-location.conf;
  location / { include snippets/sessiond-auth.conf; proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

cat > "$WORK/sessiond.toml" <<CONF
[server]
trusted_proxies = ["127.0.0.1/32"]
[observability]
access_log = false
[gateway]
upstream = "http://127.0.0.1:$APP"
[[access.rules]]
path = "/app"
allow = "authenticated"
CONF
{ for i in $(seq -f '%04g' 0 999); do echo "user$i,pw-user$i,user"; done
  echo "logoutcheck,pw-logoutcheck,user"; } > "$WORK/users.csv"
"$BIN" --data-dir "$WORK/data" user import --allow-weak-passwords "$WORK/users.csv" >/dev/null
"$BIN" --config "$WORK/sessiond.toml" --data-dir "$WORK/data" serve --listen 127.0.0.1:$SD 2>"$WORK/sessiond.log" & SESSIOND=$!; PIDS+=($SESSIOND)
PORT=$CEIL "$PEERS/rust/target/release/ceiling-axum" >/dev/null 2>&1 & CEILING=$!; PIDS+=($CEILING)
for p in $APP $DIRECT $AUTH $SD $CEIL; do until curl -s -o /dev/null "http://127.0.0.1:$p/"; do sleep 0.1; done; done
python3 "$PEERS/login.py" "http://127.0.0.1:$SD" 1000 "$WORK/cookies.txt" >/dev/null
for i in $(seq -f '%04g' 0 999); do echo "sid=dummy-$i"; done > "$WORK/dummy.txt"

pids_of() { local pidfile="$WORK/$1.pid"; local m; m="$(cat "$pidfile")"; echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }
ticks() { local t=0 p v; for p in "$@"; do v="$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}')"; t=$((t + ${v:-0})); done; echo $t; }
HZ="$(getconf CLK_TCK)"
run() { # label url cookies [original-url]
  local label=$1 url=$2 cookies=$3 original=${4:-}
  local front=""; case $label in nginx-direct) front="$(pids_of direct)";; nginx-auth) front="$(pids_of auth)";; esac
  local app; app="$(pids_of app)"
  local s0 f0 a0; s0=$(ticks $SESSIOND $CEILING); f0=$(ticks $front); a0=$(ticks $app)
  local line
  line="$(COOKIES_FILE="$cookies" ORIGINAL_URL="$original" wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 5s \
    -s "$HERE/gateway.lua" "$url" | grep '^WRK' || echo 'WRK requests=0')"
  local s1 f1 a1; s1=$(ticks $SESSIOND $CEILING); f1=$(ticks $front); a1=$(ticks $app)
  local req; req="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")"
  awk -v l="$label" -v line="$line" -v hz="$HZ" -v r="${req:-0}" -v s=$((s1 - s0)) -v f=$((f1 - f0)) -v a=$((a1 - a0)) 'BEGIN {
    sub(/^WRK /, "", line); us = (r > 0 ? 1e6 / hz / r : 0)
    printf "RESULT %s %s cpu_us_per_req: sessiond_or_ceiling=%.1f front_nginx=%.1f app=%.1f\n", l, line, s * us, f * us, a * us }'
}
unset ORIGINAL_URL
echo "# $(date -u +%FT%TZ) $(nproc) cpus, ${SECS}s x $CONNS connections, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  echo "# round $round"
  run verify "http://127.0.0.1:$SD/auth/verify" "$WORK/cookies.txt" "http://127.0.0.1:$AUTH/app/profile"
  run profile "http://127.0.0.1:$SD/api/profile" "$WORK/cookies.txt"
  run ceiling-axum "http://127.0.0.1:$CEIL/api/profile" "$WORK/dummy.txt"
  run nginx-direct "http://127.0.0.1:$DIRECT/app/profile" "$WORK/cookies.txt"
  run nginx-auth "http://127.0.0.1:$AUTH/app/profile" "$WORK/cookies.txt"
  run builtin "http://127.0.0.1:$SD/app/profile" "$WORK/cookies.txt"
done
