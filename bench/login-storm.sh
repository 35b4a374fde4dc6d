#!/usr/bin/env bash
# bench/login-storm.sh URL [seconds=15] [verify_connections=56] [login_connections=8]
#   Does a login storm stall session checks? Logs in N_USERS users (user0000..,
#   password pw-<name>, as ../shared/peers/bench.sh seeds them) for their
#   cookies, then runs, ROUNDS times (3) alternating:
#     alone: wrk GET /api/profile on verify_connections, rotating cookies;
#     storm: the same, while a second wrk sends POST /login (argon2id) on
#            login_connections.
#   Prints a RESULT line per run: verify req/s and p50/p99, logins served/s,
#   `busy` (503) answers/s. Env: N_USERS (1000), ROUNDS (3).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PEERS="$HERE/../../shared/peers"
URL="${1:?usage: login-storm.sh URL [seconds] [verify_connections] [login_connections]}"
URL="${URL%/}"
SECS="${2:-15}"
VCONNS="${3:-56}"
LCONNS="${4:-8}"
export N_USERS="${N_USERS:-1000}"
ROUNDS="${ROUNDS:-3}"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 2; }
WORK="$(mktemp -d -t sessiond-storm.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
python3 "$PEERS/login.py" "$URL" "$N_USERS" "$WORK/cookies.txt" >&2
export COOKIES_FILE="$WORK/cookies.txt" STRICT=1

verify() { # label
  wrk -t1 -c"$VCONNS" -d"${SECS}s" --timeout 5s -s "$PEERS/profile.lua" "$URL/api/profile" \
    | grep '^WRK' | sed "s#^WRK#RESULT verify $1#"
}
for round in $(seq "$ROUNDS"); do
  verify "alone round=$round"
  wrk -t1 -c"$LCONNS" -d"$((SECS + 2))s" --timeout 10s -s "$HERE/login.lua" "$URL/login" \
    | grep '^RESULT' | sed "s#^RESULT#RESULT round=$round#" &
  LOGINS=$!
  sleep 1
  verify "storm round=$round"
  wait "$LOGINS"
done
