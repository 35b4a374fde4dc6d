#!/usr/bin/env bash
# bench/bearer.sh URL [seconds=15] [connections=64]
#   Gets an access token for each of N_USERS users (user0000.., password
#   pw-<name>, as ../shared/peers/bench.sh expects) from POST /api/token, then
#   runs wrk on GET /api/profile with "Authorization: Bearer", rotating
#   through the tokens, and prints one RESULT line (req/s, p50/p99, non-2xx).
#   Env: N_USERS (1000), WRK_THREADS (2).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
URL="${1:?usage: bearer.sh URL [seconds] [connections]}"
URL="${URL%/}"
SECS="${2:-15}"
CONNS="${3:-64}"
N_USERS="${N_USERS:-1000}"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 2; }
WORK="$(mktemp -d -t sessiond-bearer.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
python3 - "$URL" "$N_USERS" "$WORK/tokens.txt" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def token(i):
    name = f"user{i:04d}"
    body = json.dumps({"username": name, "password": f"pw-{name}"}).encode()
    req = urllib.request.Request(f"{url}/api/token", body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["access_token"]
with ThreadPoolExecutor(4) as pool:
    tokens = list(pool.map(token, range(n)))
open(out, "w").write("\n".join(tokens) + "\n")
print(f"TOKENS {len(tokens)}", file=sys.stderr)
PY
TOKENS_FILE="$WORK/tokens.txt" wrk -t"${WRK_THREADS:-2}" -c"$CONNS" -d"${SECS}s" --timeout 5s \
  -s "$HERE/bearer.lua" "$URL/api/profile" | grep '^RESULT' | sed "s#^RESULT#RESULT target=$URL#"
