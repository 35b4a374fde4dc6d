-- wrk script for bench/gateway.sh: GET wrk.path rotating through the cookies
-- in $COOKIES_FILE (one "name=value" per line), as ../shared/peers/profile.lua
-- does; with $ORIGINAL_URL set, each request also carries what nginx's
-- auth_request sends (X-Original-URL, X-Original-Method), for /auth/verify
-- measured alone; with $UNIQUE set, every request has a target of its own
-- (`?n=<thread>-<count>`). Counts every non-2xx.
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local reqs = {}
local cookies = {}
local idx = 0
bad = 0

function init(args)
  local original = os.getenv("ORIGINAL_URL")
  for line in io.lines(os.getenv("COOKIES_FILE")) do
    if #line > 0 then
      local h = { ["Cookie"] = line }
      if original then
        h["X-Original-URL"] = original
        h["X-Original-Method"] = "GET"
      end
      reqs[#reqs + 1] = wrk.format("GET", wrk.path, h)
      cookies[#cookies + 1] = line
    end
  end
  idx = (tid * 397) % #reqs
end

local unique = os.getenv("UNIQUE")
if unique == "" then unique = nil end
local headers = {}
local n = 0

function request()
  idx = idx % #reqs + 1
  if unique then
    -- A new target every time (bench/response-cache.sh's misses).
    n = n + 1
    headers["Cookie"] = cookies[idx]
    return wrk.format("GET", wrk.path .. "?n=" .. tid .. "-" .. n, headers)
  end
  return reqs[idx]
end

function response(status, headers, body)
  if status < 200 or status > 299 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local non2xx = 0
  for _, t in ipairs(threads) do non2xx = non2xx + t:get("bad") end
  io.write(string.format(
    "WRK requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d sockerr=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
