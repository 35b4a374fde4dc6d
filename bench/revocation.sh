#!/usr/bin/env bash
# bench/revocation.sh [rounds=200] [connections=64]
#   Revocation propagation under load: two sessiond nodes (release build) on
#   one fresh Redis; wrk keeps node B busy verifying 1000 sessions on
#   `connections` connections while examples/revocation_probe logs in on A,
#   warms B, logs out on A and times how long B keeps accepting the cookie.
#   Env: NEAR_CACHE (true), PORT_BASE (6392; uses PORT_BASE and +1, +2).
#   Starts and stops its own processes (by PID); loopback only.
set -euo pipefail
# ../shared/peers/bench.sh's contract wants the session cookie's 30-minute
# Max-Age; sessiond gives one to remembered sessions only unless told.
export SESSIOND_COOKIE__PERSISTENT=true
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$HERE/.."
PEERS="$ROOT/../shared/peers"
ROUNDS="${1:-200}"
CONNS="${2:-64}"
BASE="${PORT_BASE:-6392}"
REDIS_PORT=$BASE A_PORT=$((BASE + 1)) B_PORT=$((BASE + 2))
BIN="$ROOT/target/release/sessiond"
PROBE="$ROOT/target/release/examples/revocation_probe"
[ -x "$BIN" ] && [ -x "$PROBE" ] || {
  echo "build first: cargo build --release -p sessiond --bin sessiond --example revocation_probe" >&2; exit 2; }
WORK="$(mktemp -d -t sessiond-revocation.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
PIDS+=($!)
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.1; done
STORE="redis://127.0.0.1:$REDIS_PORT"
{ for i in $(seq -f '%04g' 0 999); do echo "user$i,pw-user$i,user"; done
  echo "logoutcheck,pw-logoutcheck,user"; echo "prober,pw-prober-long,user"; } > "$WORK/users.csv"
"$BIN" --store "$STORE" user import --allow-weak-passwords "$WORK/users.csv" >/dev/null
export SESSIOND_REDIS__NEAR_CACHE="${NEAR_CACHE:-true}" SESSIOND_OBSERVABILITY__ACCESS_LOG=false
"$BIN" --store "$STORE" serve --listen "127.0.0.1:$A_PORT" 2>"$WORK/a.log" & PIDS+=($!)
"$BIN" --store "$STORE" serve --listen "127.0.0.1:$B_PORT" 2>"$WORK/b.log" & PIDS+=($!)
for p in "$A_PORT" "$B_PORT"; do
  until curl -sf "http://127.0.0.1:$p/healthz" >/dev/null; do sleep 0.1; done
done
python3 "$PEERS/login.py" "http://127.0.0.1:$B_PORT" 1000 "$WORK/cookies.txt" >&2
export COOKIES_FILE="$WORK/cookies.txt" STRICT=1
wrk -t1 -c"$CONNS" -d600s --timeout 5s -s "$PEERS/profile.lua" "http://127.0.0.1:$B_PORT/api/profile" >"$WORK/wrk.txt" &
WRK=$!
PIDS+=($WRK)
sleep 2
"$PROBE" "http://127.0.0.1:$A_PORT" "http://127.0.0.1:$B_PORT" prober pw-prober-long "$ROUNDS"
kill -INT "$WRK" 2>/dev/null || true
wait "$WRK" 2>/dev/null || true
grep '^WRK' "$WORK/wrk.txt" | sed 's/^WRK/RESULT load-on-B/' || true
