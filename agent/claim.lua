-- Claim one queued job for one agent, atomically: all of it happens or none of it.
--
-- KEYS[1]  the job's RQ queue list (rq:queue:<queue>)
-- KEYS[2]  the job record hash ({ns}:job:<id>)
-- KEYS[3]  the agent's ledger hash ({ns}:agent:<agent>:ledger)
-- ARGV[1]  job id
-- ARGV[2]  the allocation, ledger JSON: {job_id, queue, cpus, memory_mib, gpus, claimed_at, max_runtime_s}
-- ARGV[3]  CPUs the agent may hand out in total
-- ARGV[4]  memory (MiB) the agent may hand out in total
-- ARGV[5]  most jobs at once (max_jobs)
-- ARGV[6]  JSON list of the GPU ids the agent has now
-- ARGV[7]  now, epoch seconds
-- ARGV[8]  agent id
-- ARGV[9]  host
-- ARGV[10] the record's gpus field (JSON list, as the records module encodes it)
--
-- Returns {1, "claimed"} or {0, why}: why is not_queued, cancel_requested, already_claimed,
-- max_jobs, cpus, memory, gpu_unknown, gpu_taken or not_in_queue. Every check reads; the
-- first write (LREM) happens only once all checks passed, and LREM returning 1 is what makes
-- the claim exclusive between agents.

local job_id = ARGV[1]
local alloc = cjson.decode(ARGV[2])

if redis.call('HGET', KEYS[2], 'state') ~= 'queued' then
  return {0, 'not_queued'}
end
if redis.call('HGET', KEYS[2], 'cancel_requested') == '1' then
  return {0, 'cancel_requested'}
end
if redis.call('HEXISTS', KEYS[3], job_id) == 1 then
  return {0, 'already_claimed'}
end

local used_cpus, used_memory, jobs = 0, 0, 0
local taken = {}
for _, raw in ipairs(redis.call('HVALS', KEYS[3])) do
  local entry = cjson.decode(raw)
  used_cpus = used_cpus + (tonumber(entry.cpus) or 0)
  used_memory = used_memory + (tonumber(entry.memory_mib) or 0)
  jobs = jobs + 1
  if type(entry.gpus) == 'table' then
    for _, gpu in ipairs(entry.gpus) do taken[tostring(gpu)] = true end
  end
end

if jobs + 1 > tonumber(ARGV[5]) then return {0, 'max_jobs'} end
-- cpus are fractional; the slack lets 0.1 + 0.2 fit in 0.3
if used_cpus + (tonumber(alloc.cpus) or 0) > tonumber(ARGV[3]) + 1e-9 then return {0, 'cpus'} end
if used_memory + (tonumber(alloc.memory_mib) or 0) > tonumber(ARGV[4]) then return {0, 'memory'} end

local present = {}
for _, gpu in ipairs(cjson.decode(ARGV[6])) do present[tostring(gpu)] = true end
local chosen = {}
if type(alloc.gpus) == 'table' then
  for _, gpu in ipairs(alloc.gpus) do
    gpu = tostring(gpu)
    if not present[gpu] then return {0, 'gpu_unknown'} end
    if taken[gpu] or chosen[gpu] then return {0, 'gpu_taken'} end
    chosen[gpu] = true
  end
end

if redis.call('LREM', KEYS[1], 1, job_id) ~= 1 then
  return {0, 'not_in_queue'}
end

redis.call('HSET', KEYS[3], job_id, ARGV[2])
redis.call('HSET', KEYS[2], 'state', 'starting', 'starting_at', ARGV[7], 'agent', ARGV[8], 'host', ARGV[9],
  'gpus', ARGV[10])
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
-- what an earlier run left behind does not describe this one
redis.call('HDEL', KEYS[2], 'reason', 'message', 'exit_code', 'container', 'rq_execution', 'effective_config',
  'running_at', 'finished_at', 'failed_at', 'canceled_at')
return {1, 'claimed'}
