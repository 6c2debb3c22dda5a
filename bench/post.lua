-- wrk script: POST a 1 KiB JSON body, unique per request (so dedup never short-cuts).
-- Every wrk thread starts with the same random seed, so threads are numbered in setup().
local counter = 0
local path = os.getenv("BENCH_PATH") or "/in/bench"
local next_thread = 1

setup = function(thread)
  thread:set("thread_tag", tostring(next_thread) .. "-" .. tostring(os.time()))
  next_thread = next_thread + 1
end

request = function()
  counter = counter + 1
  local head = string.format('{"id":"evt_%s_%d","type":"invoice.paid","data":{"pad":"', thread_tag, counter)
  local tail = '"}}'
  local body = head .. string.rep("x", 1024 - #head - #tail) .. tail
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
end

-- Count answers that are not 2xx, so a run full of 503s cannot pass for a fast one.
local non2xx = 0
response = function(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

done = function(summary, latency, requests)
  io.write(string.format("non2xx %d\n", non2xx))
end
