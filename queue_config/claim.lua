-- Claim one queued job for one agent, atomically: all of it happens or none of it.
--
-- The caller passes the candidates it would take, best first (each one what placement picks if the
-- ones before it are gone); the script claims the first that Redis still agrees to, so the jobs
-- other agents took since the caller's read cost no round trip each.
--
-- KEYS[1]        the agent's ledger hash ({ns}:agent:<agent>:ledger)
-- KEYS[3i-1]     candidate i's RQ queue list (rq:queue:<queue>), i = 1..n
-- KEYS[3i]       candidate i's job record hash ({ns}:job:<id>)
-- KEYS[3i+1]     candidate i's user's usage hash ({ns}:usage:<queue>:<user>; see quotas.py)
-- ARGV[1]        CPUs the agent may hand out in total
-- ARGV[2]        memory (MiB) the agent may hand out in total
-- ARGV[3]        most jobs at once (max_jobs)
-- ARGV[4]        JSON list of the GPU ids the agent has now
-- ARGV[5]        now, epoch seconds
-- ARGV[6]        agent id
-- ARGV[7]        host
-- ARGV[4+4i]     candidate i's job id
-- ARGV[5+4i]     candidate i's allocation, ledger JSON: {job_id, queue, cpus, memory_mib, gpus,
--                claimed_at, max_runtime_s, user}
-- ARGV[6+4i]     candidate i's record gpus field (JSON list, as the records module encodes it)
-- ARGV[7+4i]     candidate i's user's quota limits, JSON {gpus?, cpus?, jobs?} ({} = none); the
--                usage hash is checked against them and, on a claim by a named user, added to
--
-- Returns {1, "claimed", i} for the candidate claimed, or {0, why, n} when none was: why is the
-- first candidate's reason, one of not_queued, cancel_requested, already_claimed, max_jobs, cpus,
-- memory, quota, gpu_unknown, gpu_taken or not_in_queue. Every check reads; the first write (LREM)
-- happens only once all of a candidate's checks passed, and LREM returning 1 is what makes the
-- claim exclusive between agents.

local ledger = KEYS[1]
local used_cpus, used_memory, jobs = 0, 0, 0
local taken = {}
local held = {}  -- job ids the ledger holds (its fields: one HGETALL answers both questions)
local flat = redis.call('HGETALL', ledger)
for k = 1, #flat, 2 do
  held[flat[k]] = true
  local raw = flat[k + 1]
  -- an entry that is not JSON was not written by this script: skipped, as the agent's reader skips
  -- it (and reports it in its health), instead of stopping every claim
  local ok, entry = pcall(cjson.decode, raw)
  if not ok or type(entry) ~= 'table' then entry = nil end
  if entry then
  used_cpus = used_cpus + (tonumber(entry.cpus) or 0)
  used_memory = used_memory + (tonumber(entry.memory_mib) or 0)
  jobs = jobs + 1
  if type(entry.gpus) == 'table' then
    for _, gpu in ipairs(entry.gpus) do taken[tostring(gpu)] = true end
  end
  end
end
local present = {}
for _, gpu in ipairs(cjson.decode(ARGV[4])) do present[tostring(gpu)] = true end

local function over_quota(usage_key, alloc, limits)
  local ask = {gpus = 0, cpus = tonumber(alloc.cpus) or 0, jobs = 1}
  if type(alloc.gpus) == 'table' then ask.gpus = #alloc.gpus end
  for name, limit in pairs(limits) do
    local used = tonumber(redis.call('HGET', usage_key, name)) or 0
    if ask[name] ~= nil and used + ask[name] > tonumber(limit) + 1e-9 then return true end
  end
  return false
end

-- only the counters the job changes: a missing counter reads as 0 (quotas.parse_usage, over_quota)
local function add_usage(usage_key, alloc)
  local gpus = 0
  if type(alloc.gpus) == 'table' then gpus = #alloc.gpus end
  if gpus > 0 then redis.call('HINCRBYFLOAT', usage_key, 'gpus', gpus) end
  local cpus = tonumber(alloc.cpus) or 0
  if cpus > 0 then redis.call('HINCRBYFLOAT', usage_key, 'cpus', cpus) end
  redis.call('HINCRBYFLOAT', usage_key, 'jobs', 1)
end

-- Returns the reason the candidate may not be claimed, or nil and its attempts so far.
local function refusal(queue_key, job_key, job_id, alloc, usage_key, limits)
  local record = redis.call('HMGET', job_key, 'state', 'cancel_requested', 'attempts')
  if record[1] ~= 'queued' then return 'not_queued' end
  if record[2] == '1' then return 'cancel_requested' end
  if held[job_id] then return 'already_claimed' end
  if jobs + 1 > tonumber(ARGV[3]) then return 'max_jobs' end
  -- cpus are fractional; the slack lets 0.1 + 0.2 fit in 0.3
  if used_cpus + (tonumber(alloc.cpus) or 0) > tonumber(ARGV[1]) + 1e-9 then return 'cpus' end
  if used_memory + (tonumber(alloc.memory_mib) or 0) > tonumber(ARGV[2]) then return 'memory' end
  if over_quota(usage_key, alloc, limits) then return 'quota' end
  local chosen = {}
  if type(alloc.gpus) == 'table' then
    for _, gpu in ipairs(alloc.gpus) do
      gpu = tostring(gpu)
      if not present[gpu] then return 'gpu_unknown' end
      if taken[gpu] or chosen[gpu] then return 'gpu_taken' end
      chosen[gpu] = true
    end
  end
  if redis.call('LREM', queue_key, 1, job_id) ~= 1 then return 'not_in_queue' end
  return nil, tonumber(record[3]) or 0
end

local count = (#ARGV - 7) / 4
local first_why = nil
for i = 1, count do
  local job_id, raw_alloc = ARGV[4 + 4 * i], ARGV[5 + 4 * i]
  local job_key, usage_key = KEYS[3 * i], KEYS[3 * i + 1]
  local alloc = cjson.decode(raw_alloc)
  local why, attempts = refusal(KEYS[3 * i - 1], job_key, job_id, alloc, usage_key, cjson.decode(ARGV[7 + 4 * i]))
  if why == nil then
    redis.call('HSET', ledger, job_id, raw_alloc)
    if type(alloc.user) == 'string' and alloc.user ~= '' then add_usage(usage_key, alloc) end
    redis.call('HSET', job_key, 'state', 'starting', 'starting_at', ARGV[5], 'agent', ARGV[6], 'host', ARGV[7],
      'gpus', ARGV[6 + 4 * i], 'attempts', attempts + 1)
    -- what an earlier run left behind does not describe this one, and a claimed job waits no more
    -- (job.PENDING_FIELDS)
    redis.call('HDEL', job_key, 'reason', 'message', 'exit_code', 'container', 'rq_execution', 'effective_config',
      'summary', 'running_at', 'finished_at', 'failed_at', 'canceled_at',
      'pending_reason', 'pending_detail', 'estimated_start')
    return {1, 'claimed', i}
  end
  first_why = first_why or why
end
return {0, first_why or 'nothing_to_claim', count}
