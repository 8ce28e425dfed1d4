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
-- One HSET and at most one HDEL, whatever the number of fields (an empty value removes its field).
local set, gone = {'state', ARGV[1], ARGV[1] .. '_at', ARGV[2]}, {}
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    gone[#gone + 1] = ARGV[i]
  else
    set[#set + 1] = ARGV[i]
    set[#set + 1] = ARGV[i + 1]
  end
end
redis.call('HSET', KEYS[1], unpack(set))
if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
return 1
