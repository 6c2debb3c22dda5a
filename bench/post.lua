-- wrk script: POST a 1 KiB JSON body, unique per request (so dedup never short-cuts).
-- Every wrk thread starts with the same random seed, so threads are numbered in setup().
local counter = 0
local path = os.getenv("BENCH_PATH") or "/in/bench"
local threads = {}

setup = function(thread)
  thread:set("thread_tag", tostring(#threads + 1) .. "-" .. tostring(os.time()))
  table.insert(threads, thread)
end

request = function()
  counter = counter + 1
  local head = string.format('{"id":"evt_%s_%d","type":"invoice.paid","data":{"pad":"', thread_tag, counter)
  local tail = '"}}'
  local body = head .. string.rep("x", 1024 - #head - #tail) .. tail
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
