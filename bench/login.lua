-- wrk script: POST /login (JSON) for user0000.. rotating, right passwords
-- (pw-<name>, as ../shared/peers/bench.sh seeds them), or wrong ones with
-- WRONG_PASSWORD=1 (hashing without a session write; raise the throttling
-- limits for that). Counts answers by class: 200 (401 with WRONG_PASSWORD),
-- 503 (the hashing queue is full: `busy`), anything else.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local reqs = {}
local idx = 0
ok, busy, other = 0, 0, 0

function init(args)
  local n = tonumber(os.getenv("N_USERS") or "1000")
  for i = 0, n - 1 do
    local name = string.format("user%04d", i)
    local password = "pw-" .. name
    if os.getenv("WRONG_PASSWORD") == "1" then password = "not-" .. password end
    local body = string.format('{"username":"%s","password":"%s"}', name, password)
    reqs[#reqs + 1] = wrk.format("POST", wrk.path, { ["Content-Type"] = "application/json" }, body)
  end
  idx = (tid * 397) % #reqs
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end

function response(status, headers, body)
  if status == 200 or (status == 401 and os.getenv("WRONG_PASSWORD") == "1") then ok = ok + 1
  elseif status == 503 then busy = busy + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local o, b, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); b = b + t:get("busy"); x = x + t:get("other")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT logins ok_per_s=%.1f busy_per_s=%.1f other=%d p50_ms=%.1f p99_ms=%.1f\n",
    o / secs, b / secs, x, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
