"""Leases in Redis: a key that one holder at a time owns for a while, taken or renewed atomically.

The reaper's lock, each queue's pending-reasons lease and each sweep's driver lease are all such a
key; the two scripts below are the one implementation they share (run them with ``register_script``).
"""

# KEYS[1] = lease. ARGV[1] = holder, ARGV[2] = TTL in ms. 0 when ARGV[1] holds it now (taken, as it was
# free, or renewed, as it was ARGV[1]'s); else the ms left on another's (at least 1; 1000 when this user
# may not run PTTL), when the caller should try again.
TAKE_LUA = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
local left = redis.pcall('PTTL', KEYS[1])
if type(left) ~= 'number' or left < 1 then return 1000 end
return left
"""

# KEYS[1] = lease. ARGV[1] = holder. Deletes the lease only while ARGV[1] holds it: 1, else 0.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
