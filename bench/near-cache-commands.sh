#!/usr/bin/env bash
# bench/near-cache-commands.sh [seconds=15] [connections=64]
#   Redis commands per verification after warm-up, exactly: sessiond (release
#   build, near-cache on) on its own redis-server (port 6390), 1000 users
#   logged in, one warm-up pass over every cookie, CONFIG RESETSTAT, then wrk
#   on GET /api/profile; prints every command Redis ran in the window divided
#   by the requests wrk completed.
set -euo pipefail
# ../shared/peers/bench.sh's contract wants the session cookie's 30-minute
# Max-Age; sessiond gives one to remembered sessions only unless told.
export SESSIOND_COOKIE__PERSISTENT=true
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$HERE/.."
PEERS="$ROOT/../shared/peers"
SECS="${1:-15}" CONNS="${2:-64}"
BIN="$ROOT/target/release/sessiond"
WORK="$(mktemp -d -t sessiond-cmds.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
until redis-cli -p 6390 ping >/dev/null 2>&1; do sleep 0.1; done
{ for i in $(seq -f '%04g' 0 999); do echo "user$i,pw-user$i,user"; done
  echo "logoutcheck,pw-logoutcheck,user"; } > "$WORK/users.csv"
"$BIN" --store redis://127.0.0.1:6390 user import --allow-weak-passwords "$WORK/users.csv" >/dev/null
SESSIOND_OBSERVABILITY__ACCESS_LOG=false "$BIN" --store redis://127.0.0.1:6390 serve --listen 127.0.0.1:8080 2>"$WORK/log" & PIDS+=($!)
until curl -s -o /dev/null http://127.0.0.1:8080/healthz; do sleep 0.1; done
python3 "$PEERS/login.py" http://127.0.0.1:8080 1000 "$WORK/cookies.txt" >&2
while read -r c; do curl -s -o /dev/null -H "Cookie: $c" http://127.0.0.1:8080/api/profile; done < "$WORK/cookies.txt"
redis-cli -p 6390 CONFIG RESETSTAT >/dev/null
COOKIES_FILE="$WORK/cookies.txt" STRICT=1 wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$PEERS/profile.lua" \
  http://127.0.0.1:8080/api/profile | grep '^WRK' | tee "$WORK/wrk.txt"
REQS="$(sed -E 's/.*requests=([0-9]+).*/\1/' "$WORK/wrk.txt")"
redis-cli -p 6390 INFO commandstats | tr -d '\r' | grep '^cmdstat_' |
  sed -E 's/^cmdstat_([^:]+):calls=([0-9]+).*/\1 \2/' |
  awk -v reqs="$REQS" '{total += $2; printf "COMMAND %s calls=%d per_request=%.6f\n", $1, $2, $2 / reqs}
    END {printf "RESULT requests=%d redis_commands=%d per_verification=%.6f\n", reqs, total, total / reqs}'
