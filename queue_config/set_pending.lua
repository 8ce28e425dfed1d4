-- Why queued jobs wait (lifecycle.set_pending): KEYS = job hashes; ARGV = per job: reason, detail,
-- estimated start ("" = none). Written only while the job is still queued: a job claimed since keeps none.
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'state') == 'queued' then
    local base = (i - 1) * 3
    redis.call('HSET', key, 'pending_reason', ARGV[base + 1], 'pending_detail', ARGV[base + 2])
    if ARGV[base + 3] == '' then
      redis.call('HDEL', key, 'estimated_start')
    else
      redis.call('HSET', key, 'estimated_start', ARGV[base + 3])
    end
  end
end
return #KEYS
