-- Records.transition (lifecycle.py): one job's change of state, checked and set at once.
-- KEYS[1] = job hash. ARGV[1] = new state, ARGV[2] = now, ARGV[3] = allowed current states
-- (comma-separated), then field/value pairs to set. Returns 1 when written, 0 when the job is
-- missing or in a state not allowed.
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return 0 end
local allowed = false
for s in string.gmatch(ARGV[3], '[^,]+') do
  if s == current then allowed = true end
end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], ARGV[1] .. '_at', ARGV[2])
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
