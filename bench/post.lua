-- wrk script: POST a 1 KiB JSON body, unique per request (so dedup never short-cuts).
--
-- BENCH_SIZE: the body size in bytes instead (default 1024).
-- BENCH_PATH: the request path (default /in/bench).
-- BENCH_ADDRS: optional space-separated HOST:PORT list; wrk thread i then connects to
--   address i mod n (the URL given to wrk names only the first and sets the Host
--   header), so -tT -cC gives each server T/n threads and C/n connections when n divides
--   T. One wrk process, one latency histogram: its p99 is over all servers.
-- BENCH_LIMIT: if set, each thread stops after that many requests (to fill a backlog).
-- BENCH_TAG: part of every event id, so runs started in the same second (and several
--   runs on one schema) never send the same body (default: the time in seconds).
local path = os.getenv("BENCH_PATH") or "/in/bench"
-- BENCH_GET=1: GET the URL given to wrk instead (its path and query, headers from -H),
--   still counting answers that are not 2xx (a redirect included).
local get = os.getenv("BENCH_GET") == "1"
local size = tonumber(os.getenv("BENCH_SIZE") or "") or 1024
local limit = tonumber(os.getenv("BENCH_LIMIT") or "")
local tag = os.getenv("BENCH_TAG") or tostring(os.time())
local addrs = nil
local threads = {}

-- Every wrk thread starts with the same random seed, so threads are numbered here.
setup = function(thread)
  local spread = os.getenv("BENCH_ADDRS")
  if spread and not addrs then
    addrs = {}
    for hostport in string.gmatch(spread, "%S+") do
      local host, port = string.match(hostport, "^(.+):(%d+)$")
      local found = wrk.lookup(host, port)
      if not found or #found == 0 then
        error("cannot resolve " .. hostport)
      end
      table.insert(addrs, found[1])
    end
    if #addrs == 0 then
      error("BENCH_ADDRS is empty")
    end
  end
  local i = #threads + 1
  if addrs then
    thread.addr = addrs[((i - 1) % #addrs) + 1]
  end
  thread:set("thread_tag", tag .. "-" .. tostring(i))
  table.insert(threads, thread)
end

local counter = 0
request = function()
  if get then
    return wrk.format("GET")
  end
  counter = counter + 1
  if limit and counter > limit then
    wrk.thread:stop()
  end
  local head = string.format('{"id":"evt_%s_%d","type":"invoice.paid","data":{"pad":"', thread_tag, counter)
  local tail = '"}}'
  local body = head .. string.rep("x", size - #head - #tail) .. tail
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
end

-- Count answers that are not 2xx, so a run full of 503s cannot pass for a fast one.
-- Each thread counts in its own global; done() runs in the main Lua state and sums them
-- with thread:get(), which sees only globals.
non2xx = 0
response = function(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

done = function(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
  end
  io.write(string.format("non2xx %d\n", bad))
end
