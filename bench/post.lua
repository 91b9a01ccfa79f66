-- bench/post.lua — wrk script: POST a ~100-byte JSON body with a unique Idempotency-Key.
--
--   wrk -t1 -c64 -d10s --latency -s bench/post.lua http://127.0.0.1:PORT/resources
--
-- Body: {"data":{...},"work_ms":0}, Content-Type: application/json.
-- Key:  <run>-<thread>-<counter>. <run> is $BENCH_RUN_ID when set (bench/http_bench.sh sets a
-- fresh one per run), else the start time plus a random number, so repeated runs against the
-- same database never reuse a key.

local run = os.getenv("BENCH_RUN_ID")
-- BENCH_KEYS=N: cycle over N keys per thread (same key, same body), so once each key has
-- been used once every request is a replay of a completed operation.
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "")

-- setup() runs once per thread in the main Lua state: number the threads.
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

local prefix
local counter = 0
local headers = {}

-- init() runs in each thread's own Lua state.
function init(args)
  local t = tid or 0
  if run == nil or run == "" then
    math.randomseed(os.time() + t * 7919)
    run = string.format("%d-%06x", os.time(), math.random(0, 0xffffff))
  end
  prefix = string.format("%s-t%d-", run, t)
  headers["Content-Type"] = "application/json"
  headers["Host"] = wrk.host
end

function request()
  counter = counter + 1
  if nkeys and nkeys > 0 then counter = (counter - 1) % nkeys + 1 end
  headers["Idempotency-Key"] = prefix .. counter
  -- about 100 bytes on the wire
  local body = string.format(
    '{"data":{"sku":"bench-%08d","qty":3,"price":12.5,"tags":["a","b"],"note":"wrk"},"work_ms":0}',
    counter)
  return wrk.format("POST", nil, headers, body)
end
