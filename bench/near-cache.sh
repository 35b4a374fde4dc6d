#!/usr/bin/env bash
# bench/near-cache.sh [rounds=3] [seconds=15] [connections=64]
#   One sitting, alternating: GET /api/profile on Redis through
#   ../shared/peers/bench.sh for sessiond with the near-cache, the
#   rust-tower-sessions and go-gin-noping peers, and sessiond without the
#   near-cache, `rounds` times, and the ceiling-axum peer (fixed JSON, no
#   session, no Redis: this machine's HTTP limit; CEILING=0 leaves it out). Starts its own redis-server on 6390 (the
#   peers' port) and every server, one at a time; stops each by PID. Each
#   RESULT line carries redis_cmds_per_req (INFO commandstats over the wrk
#   window). Needs: target/release/sessiond, the peers built as their README
#   says, wrk, redis-server.
set -euo pipefail
# ../shared/peers/bench.sh's contract wants the session cookie's 30-minute
# Max-Age; sessiond gives one to remembered sessions only unless told.
export SESSIOND_COOKIE__PERSISTENT=true
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$HERE/.."
PEERS="$ROOT/../shared/peers"
ROUNDS="${1:-3}" SECS="${2:-15}" CONNS="${3:-64}"
BIN="$ROOT/target/release/sessiond"
WORK="$(mktemp -d -t sessiond-near.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
redis-server --port 6390 --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
PIDS+=($!)
until redis-cli -p 6390 ping >/dev/null 2>&1; do sleep 0.1; done
{ for i in $(seq -f '%04g' 0 999); do echo "user$i,pw-user$i,user"; done
  echo "logoutcheck,pw-logoutcheck,user"; } > "$WORK/users.csv"

wait_port() { until curl -s -o /dev/null "http://127.0.0.1:$1/"; do sleep 0.1; done; }
run() { # label port command...
  local label=$1 port=$2; shift 2
  redis-cli -p 6390 FLUSHALL >/dev/null
  if [ "$label" != "${label#sessiond}" ]; then "$BIN" --store redis://127.0.0.1:6390 user import --allow-weak-passwords "$WORK/users.csv" >/dev/null; fi
  "$@" >"$WORK/server.log" 2>&1 &
  local pid=$!
  wait_port "$port"
 local skip=0; [ "$label" = ceiling-axum ] && skip=1
  SKIP_LOGIN=$skip LABEL="$label" "$PEERS/bench.sh" "http://127.0.0.1:$port" "$SECS" "$CONNS" 2>/dev/null | grep '^RESULT' || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
export SESSIOND_OBSERVABILITY__ACCESS_LOG=false
for round in $(seq "$ROUNDS"); do
  echo "# round $round $(date -u +%T)"
  run sessiond-near-cache 8080 env SESSIOND_REDIS__NEAR_CACHE=true "$BIN" --store redis://127.0.0.1:6390 serve --listen 127.0.0.1:8080
  run rust-tower-sessions 8103 env PORT=8103 "$PEERS/rust/target/release/peer-tower-sessions"
  run go-gin-noping 8101 env PORT=8101 REDIS_PING=0 "$PEERS/go-gin/bin/peer-go-gin"
  run sessiond-no-near-cache 8080 env SESSIOND_REDIS__NEAR_CACHE=false "$BIN" --store redis://127.0.0.1:6390 serve --listen 127.0.0.1:8080
  [ "${CEILING:-1}" = 1 ] && run ceiling-axum 8104 env PORT=8104 "$PEERS/rust/target/release/ceiling-axum"
done
