-- wrk script: POST /v1/sessions/validate with a random token from
-- $TOKENS (one a line) and the API key from $API_KEY. Non-200 answers are
-- counted and reported: a load figure only counts if every answer was 200.
local tokens = {}
local requests = {}

init = function(args)
  for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
  -- Whole requests, formatted once: building one per call would make the
  -- load generator, which shares the machine, cost more than it must.
  for i, t in ipairs(tokens) do
    requests[i] = wrk.format(nil, "/v1/sessions/validate", nil,
      '{"token":"' .. t .. '","ip":"198.51.100.7","user_agent":"loadtest","path":"/page"}')
  end
end

-- With RATE (requests/s over all connections) and CONNS set, each
-- connection paces itself, so latency is measured below saturation.
local pause = nil
if os.getenv("RATE") and os.getenv("CONNS") then
  pause = tonumber(os.getenv("CONNS")) * 1000 / tonumber(os.getenv("RATE"))
end
if pause then delay = function() return pause end end

local n = 0
request = function()
  n = n + 1
  return requests[(n * 7919) % #requests + 1]
end

local bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

done = function(summary, latency, requests)
  io.write(string.format("p50_ms %.3f\np90_ms %.3f\np99_ms %.3f\nrequests %d\nnon2xx %d\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    summary.requests, summary.errors.status))
end
