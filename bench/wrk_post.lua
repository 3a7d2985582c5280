-- wrk script: POST pre-built, pre-signed webhook bodies (one per line of the file given after `--`),
-- each thread taking its own lines so every messageId is sent once. Prints one RESULT line at the end.
local counter = 0
local bodies = {}
local idx = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local path, nthreads, n = args[1], tonumber(args[2]), 0
  for line in io.lines(path) do
    if n % nthreads == id then bodies[#bodies + 1] = line end
    n = n + 1
  end
end

local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }

function request()
  idx = idx + 1
  if idx > #bodies then idx = 1 end
  return wrk.format("POST", "/webhooks/inbound-sms", headers, bodies[idx])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%.0f non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    e.status, e.connect + e.read + e.write + e.timeout))
end
