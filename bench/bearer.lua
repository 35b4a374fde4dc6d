-- wrk script: GET with "Authorization: Bearer <token>", rotating through the
-- access tokens in $TOKENS_FILE (one per line). Requests are pre-formatted
-- once per thread; every status outside 2xx is counted.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local reqs = {}
local idx = 0
bad = 0

function init(args)
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    if #line > 0 then
      reqs[#reqs + 1] = wrk.format("GET", wrk.path, { ["Authorization"] = "Bearer " .. line })
    end
  end
  idx = (tid * 397) % #reqs
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end

function response(status, headers, body)
  if status < 200 or status > 299 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local non2xx = 0
  for _, t in ipairs(threads) do non2xx = non2xx + t:get("bad") end
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d non2xx=%d sockerr=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, non2xx, e.connect + e.read + e.write + e.timeout))
end
