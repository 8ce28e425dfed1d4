-- A multi-node job's members (lifecycle.GangScript; table layout in gang.py), each step atomic.
--
-- ARGV[1] is the step. Every step names the job hash KEYS[1] and the gang hash KEYS[2].
--
-- hold     KEYS[3] the queue's assembling key, KEYS[4] the agent's ledger, KEYS[5] the user's quota
--          usage, KEYS[6] the job's RQ queue list. ARGV: 2 job id, 3 agent, 4 host, 5 address,
--          6 allocation (ledger JSON), 7 nodes as the agent read them, 8 now, 9 assembly timeout (ms),
--          10 CPUs, 11 memory (MiB), 12 most jobs at once, 13 JSON list of the agent's GPU ids,
--          14 the user's quota limits JSON.
--          Holds one member for this agent: the allocation into its ledger (counted like a claim, so
--          other work fits only beside it), the member into the table. The first hold of a round takes
--          the queue's assembling key (one gang per queue at a time), refuses while a member of the
--          previous attempt has not ended (never two attempts at once), and checks the user's quota for
--          all N members, then reserves it: usage + N members at once (gang fields reserved, reserved_gpus,
--          reserved_cpus); each hold turns one reserved member into its ledger entry's share, so a gang
--          never holds part of a quota it cannot complete, and nothing else of the user's takes the rest.
--          The hold that completes the
--          gang takes the job out of its RQ queue and moves it queued -> starting (attempts + 1),
--          as claim.lua does for one agent. Returns {1, 'held'|'complete', rank, round} or {0, why}.
-- drop     KEYS[3] the user's quota usage. ARGV: 2 job id, 3 agent, 4 round. Forgets this agent's hold of
--          ``round`` unless that round's gang is complete and the job active, and gives back the quota
--          reserved for the round's members never held. Returns 1 when the caller must free its ledger entry.
-- member   ARGV: 2 agent, 3 round, 4 rank, 5 state, 6 container ('' keeps it), 7 exit code ('' none),
--          8 now, 9 port ('' none). Sets a member's state, only for the agent and round it holds.
--          Returns the round's members (JSON strings), or {} when the member is not that agent's.

local job, gang = KEYS[1], KEYS[2]
local op = ARGV[1]

local function members_of(round)
  local out = {}
  local fields = redis.call('HGETALL', gang)
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 5) == 'rank:' then
      local ok, m = pcall(cjson.decode, fields[i + 1])
      if ok and type(m) == 'table' and (round == nil or tonumber(m.round) == round) then
        table.insert(out, fields[i + 1])
      end
    end
  end
  return out
end

local function previous_running(round)
  for _, raw in ipairs(members_of(nil)) do
    local m = cjson.decode(raw)
    if tonumber(m.round) == round and (m.state == 'ready' or m.state == 'running') then return true end
  end
  return false
end

-- The quota reserved for members of the current round that no agent held: back to the user's usage.
local function unreserve(usage_key)
  local left = tonumber(redis.call('HGET', gang, 'reserved')) or 0
  if left <= 0 then return end
  local back = {gpus = left * (tonumber(redis.call('HGET', gang, 'reserved_gpus')) or 0),
                cpus = left * (tonumber(redis.call('HGET', gang, 'reserved_cpus')) or 0), jobs = left}
  for name, amount in pairs(back) do
    if amount > 0 then
      local now = tonumber(redis.call('HINCRBYFLOAT', usage_key, name, -amount))
      if now < 1e-9 then redis.call('HDEL', usage_key, name) end
    end
  end
  redis.call('HSET', gang, 'reserved', 0)
end

local function share(alloc)
  local gpus = 0
  if type(alloc.gpus) == 'table' then gpus = #alloc.gpus end
  return {gpus = gpus, cpus = tonumber(alloc.cpus) or 0, jobs = 1}
end

-- The user's quota for all ``nodes`` members, checked before the first is held.
local function over_quota(alloc, nodes)
  local ask = share(alloc)
  for name, limit in pairs(cjson.decode(ARGV[14])) do
    local used = tonumber(redis.call('HGET', KEYS[5], name)) or 0
    if ask[name] ~= nil and used + nodes * ask[name] > tonumber(limit) + 1e-9 then return true end
  end
  return false
end

local function reserve(alloc, nodes)
  if type(alloc.user) ~= 'string' or alloc.user == '' then return end
  local ask = share(alloc)
  -- as claim.lua does, only what a member asks for is counted (the release leaves a zero counter alone)
  for name, amount in pairs(ask) do
    if amount > 0 then redis.call('HINCRBYFLOAT', KEYS[5], name, nodes * amount) end
  end
  redis.call('HSET', gang, 'reserved', nodes, 'reserved_gpus', ask.gpus, 'reserved_cpus', ask.cpus)
end

local function new_round(now, timeout_ms, job_id)
  local round = tonumber(redis.call('HGET', gang, 'round')) or 0
  for _, field in ipairs(redis.call('HKEYS', gang)) do
    if string.sub(field, 1, 5) == 'rank:' or string.sub(field, 1, 6) == 'agent:' then redis.call('HDEL', gang, field) end
  end
  round = round + 1
  redis.call('HSET', gang, 'round', round, 'held', 0, 'deadline', now + timeout_ms / 1000)
  redis.call('HDEL', gang, 'port', 'attempt')
  redis.call('SET', KEYS[3], job_id .. ':' .. round, 'PX', timeout_ms)
  return round
end

local function does_not_fit(alloc)
  local used_cpus, used_memory, jobs, taken = 0, 0, 0, {}
  for _, raw in ipairs(redis.call('HVALS', KEYS[4])) do
    local ok, entry = pcall(cjson.decode, raw)
    if ok and type(entry) == 'table' then
      used_cpus = used_cpus + (tonumber(entry.cpus) or 0)
      used_memory = used_memory + (tonumber(entry.memory_mib) or 0)
      jobs = jobs + 1
      if type(entry.gpus) == 'table' then for _, g in ipairs(entry.gpus) do taken[tostring(g)] = true end end
    end
  end
  if jobs + 1 > tonumber(ARGV[12]) then return 'max_jobs' end
  if used_cpus + (tonumber(alloc.cpus) or 0) > tonumber(ARGV[10]) + 1e-9 then return 'cpus' end
  if used_memory + (tonumber(alloc.memory_mib) or 0) > tonumber(ARGV[11]) then return 'memory' end
  local present = {}
  for _, g in ipairs(cjson.decode(ARGV[13])) do present[tostring(g)] = true end
  if type(alloc.gpus) == 'table' then
    for _, g in ipairs(alloc.gpus) do
      if not present[tostring(g)] then return 'gpu_unknown' end
      if taken[tostring(g)] then return 'gpu_taken' end
    end
  end
  return nil
end

local function complete(job_id, now, timeout_ms)
  if redis.call('LREM', KEYS[6], 1, job_id) ~= 1 then return false end
  local first = cjson.decode(redis.call('HGET', gang, 'rank:0'))
  redis.call('HSET', job, 'state', 'starting', 'starting_at', now, 'agent', first.agent, 'host', first.host)
  local attempts = redis.call('HINCRBY', job, 'attempts', 1)
  -- as claim.lua: what an earlier run left behind does not describe this one; a started job waits no more
  redis.call('HDEL', job, 'reason', 'message', 'exit_code', 'container', 'rq_execution', 'effective_config',
    'summary', 'running_at', 'finished_at', 'failed_at', 'canceled_at', 'gpus')
  redis.call('HDEL', job, 'pending_reason', 'pending_detail', 'estimated_start', 'pending_at')
  redis.call('HSET', gang, 'attempt', attempts, 'deadline', now + timeout_ms / 1000)
  redis.call('DEL', KEYS[3])
  return true
end

local function hold()
  local job_id, agent, now, timeout_ms = ARGV[2], ARGV[3], tonumber(ARGV[8]), tonumber(ARGV[9])
  local nodes = tonumber(ARGV[7])
  if redis.call('HGET', job, 'state') ~= 'queued' then return {0, 'not_queued'} end
  if redis.call('HGET', job, 'cancel_requested') == '1' then return {0, 'cancel_requested'} end
  if tonumber(redis.call('HGET', job, 'nodes')) ~= nodes then return {0, 'nodes_changed'} end
  if redis.call('HEXISTS', KEYS[4], job_id) == 1 then return {0, 'already_held'} end
  local alloc = cjson.decode(ARGV[6])
  local why = does_not_fit(alloc)
  if why then return {0, why} end
  local assembling = redis.call('GET', KEYS[3])
  local round = tonumber(redis.call('HGET', gang, 'round')) or 0
  if not assembling then
    if previous_running(round) then return {0, 'previous_attempt_running'} end
    unreserve(KEYS[5])  -- the last round ran out: what it reserved for members never held is not the user's
    if over_quota(alloc, nodes) then return {0, 'quota'} end
    round = new_round(now, timeout_ms, job_id)
    reserve(alloc, nodes)
  elseif assembling ~= job_id .. ':' .. round then
    return {0, 'other_gang_assembling'}
  end
  local rank = redis.call('HINCRBY', gang, 'held', 1) - 1
  alloc.gang_rank, alloc.gang_round = rank, round
  redis.call('HSET', KEYS[4], job_id, cjson.encode(alloc))
  if (tonumber(redis.call('HGET', gang, 'reserved')) or 0) > 0 then
    redis.call('HINCRBY', gang, 'reserved', -1)  -- the reservation is this entry's share of the usage now
  end
  local member = {rank = rank, agent = agent, host = ARGV[4], addr = ARGV[5], state = 'held', round = round, at = now}
  redis.call('HSET', gang, 'rank:' .. rank, cjson.encode(member), 'agent:' .. agent, rank)
  if rank + 1 >= nodes then
    if not complete(job_id, now, timeout_ms) then return {1, 'held', rank, round} end
    return {1, 'complete', rank, round}
  end
  return {1, 'held', rank, round}
end

local function drop()
  local round = tonumber(ARGV[4])
  local state = redis.call('HGET', job, 'state')
  local current = tonumber(redis.call('HGET', gang, 'round')) or 0
  if current == round and tonumber(redis.call('HGET', gang, 'attempt')) and (state == 'starting' or state == 'running') then
    return 0
  end
  if current == round then unreserve(KEYS[3]) end
  if current == round and redis.call('HGET', gang, 'agent:' .. ARGV[3]) then
    local rank = redis.call('HGET', gang, 'agent:' .. ARGV[3])
    local raw = redis.call('HGET', gang, 'rank:' .. rank)
    if raw then
      local m = cjson.decode(raw)
      if m.state == 'held' then m.state = 'released' end
      redis.call('HSET', gang, 'rank:' .. rank, cjson.encode(m))
    end
  end
  return 1
end

local function member()
  local round, rank = tonumber(ARGV[3]), ARGV[4]
  local raw = redis.call('HGET', gang, 'rank:' .. rank)
  if not raw then return {} end
  local m = cjson.decode(raw)
  if m.agent ~= ARGV[2] or tonumber(m.round) ~= round then return {} end
  m.state, m.at = ARGV[5], tonumber(ARGV[8])
  if ARGV[6] ~= '' then m.container = ARGV[6] end
  if ARGV[7] ~= '' then m.exit_code = tonumber(ARGV[7]) end
  redis.call('HSET', gang, 'rank:' .. rank, cjson.encode(m))
  if ARGV[9] ~= '' then redis.call('HSET', gang, 'port', ARGV[9]) end
  return members_of(round)
end

if op == 'hold' then return hold() end
if op == 'drop' then return drop() end
if op == 'member' then return member() end
return redis.error_reply('unknown gang step ' .. tostring(op))
