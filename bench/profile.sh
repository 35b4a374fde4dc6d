#!/usr/bin/env bash
# bench/profile.sh near|nonear|ceiling [seconds=8]
#   Where a server's CPU goes under the bench.sh load (64 connections, 1000
#   rotating cookies): `perf record -g` on the server process for `seconds`
#   while wrk runs, then the kernel / user split (`--sort dso`) and the top
#   symbols by self time. near / nonear: sessiond (release build) on its own
#   redis-server (port 6390) with the near-cache on / off; ceiling: the
#   ceiling-axum peer (fixed JSON, no session, no Redis). Needs perf, wrk,
#   redis-server; starts and stops its own processes by PID.
set -euo pipefail
# ../shared/peers/bench.sh's contract wants the session cookie's 30-minute
# Max-Age; sessiond gives one to remembered sessions only unless told.
export SESSIOND_COOKIE__PERSISTENT=true
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$HERE/.."
PEERS="$ROOT/../shared/peers"
MODE="${1:?usage: profile.sh near|nonear|ceiling [seconds]}"
SECS="${2:-8}"
WORK="$(mktemp -d -t sessiond-profile.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
if [ "$MODE" = ceiling ]; then
  PORT=8104
  PORT=$PORT "$PEERS/rust/target/release/ceiling-axum" >/dev/null 2>&1 & SERVER=$!; PIDS+=($SERVER)
  until curl -s -o /dev/null "http://127.0.0.1:$PORT/api/profile"; do sleep 0.1; done
  for i in $(seq -f '%04g' 0 999); do echo "sid=dummy-$i"; done > "$WORK/cookies.txt"
else
  PORT=8080 BIN="$ROOT/target/release/sessiond"
  NEAR=true; [ "$MODE" = nonear ] && NEAR=false
  redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
  until redis-cli -p 6390 ping >/dev/null 2>&1; do sleep 0.1; done
  { for i in $(seq -f '%04g' 0 999); do echo "user$i,pw-user$i,user"; done
    echo "logoutcheck,pw-logoutcheck,user"; } > "$WORK/users.csv"
  "$BIN" --store redis://127.0.0.1:6390 user import --allow-weak-passwords "$WORK/users.csv" >/dev/null
  SESSIOND_OBSERVABILITY__ACCESS_LOG=false SESSIOND_REDIS__NEAR_CACHE=$NEAR \
    "$BIN" --store redis://127.0.0.1:6390 serve --listen 127.0.0.1:$PORT 2>"$WORK/log" & SERVER=$!; PIDS+=($SERVER)
  until curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz"; do sleep 0.1; done
  python3 "$PEERS/login.py" "http://127.0.0.1:$PORT" 1000 "$WORK/cookies.txt" >/dev/null
fi
COOKIES_FILE="$WORK/cookies.txt" STRICT=1 wrk -t2 -c64 -d"$((SECS + 6))s" -s "$PEERS/profile.lua" \
  "http://127.0.0.1:$PORT/api/profile" > "$WORK/wrk.txt" &
WRK=$!; PIDS+=($WRK)
sleep 3
perf record -F 1999 -g -p "$SERVER" -o "$WORK/perf.data" -- sleep "$SECS" >/dev/null 2>&1
wait "$WRK" || true
grep '^WRK' "$WORK/wrk.txt" | sed "s/^WRK/RESULT $MODE/"
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -4 | sed 's/^ */DSO /'
perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' |
  awk '{$1=$1; print "SYMBOL " substr($0, 1, 140)}' | head -"${TOP:-30}"
