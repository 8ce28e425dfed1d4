"""Leases in Redis: a key that one holder at a time owns for a while, taken or renewed atomically.

The reaper's lock, each queue's pending-reasons lease and each sweep's driver lease are all such a
key; the two scripts below are the one implementation they share (run them with ``register_script``).
A lease's holder renews it with :data:`TAKE_LUA`; the agents that do not hold it try it only when it
may have run out, and then with :func:`take_free` (one command), so a fleet of N agents pays N small
tries per lease length, not N scripts.
"""

from typing import Any

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


def take_free(conn: Any, key: str, holder: str, ttl_ms: int) -> bool:
    """Take the lease only if nobody holds it: one plain ``SET NX PX``, for an agent that did not hold it.

    The cheap try of the many agents that do not hold a lease: where :data:`TAKE_LUA` costs three
    commands (its GET, SET or PTTL inside the script), this costs one. A caller that gets False does
    not learn how long the other's lease has left: it tries again after a whole ``ttl_ms``, at most
    the holder's renewal interval later than the lease could run out.
    """
    return bool(conn.set(key, holder, nx=True, px=max(1, int(ttl_ms))))


def try_lease(take: Any, conn: Any, key: str, holder: str, ttl_ms: int, *, may_hold: bool) -> int:
    """One try at a lease that all holders keep for ``ttl_ms``: 0 when ``holder`` holds it now, else the ms
    until it could be free.

    ``take`` is :data:`TAKE_LUA` registered. A holder that may hold the lease (it did at its last try, or
    this is its first: an agent restarted under the same id may hold it still) runs it, which renews its
    own lease or says how long another's lasts; any other tries :func:`take_free` (one command), and
    learns only that the lease cannot be free within ``ttl_ms``.
    """
    if may_hold:
        return int(take(keys=[key], args=[holder, ttl_ms]))
    return 0 if take_free(conn, key, holder, ttl_ms) else ttl_ms


def take_free_or_left(conn: Any, key: str, holder: str, ttl_ms: int) -> int:
    """:func:`take_free`, with the other holder's ``PTTL`` in the same round trip: 0 when taken, else the ms
    until it could be free (at least 1; 1000 when this user may not run PTTL), as :data:`TAKE_LUA` answers.

    For a lease whose holders keep it for different lengths (the reaper's lock: each agent's own
    ``reaper_interval_s``), where a lease length of one's own is no bound on the other's."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.set(key, holder, nx=True, px=max(1, int(ttl_ms)))
        pipe.pttl(key)
        taken, left = pipe.execute(raise_on_error=False)
    if isinstance(taken, Exception):
        raise taken
    if taken:
        return 0
    if isinstance(left, Exception) or not isinstance(left, int) or left == -1:
        return 1000
    return max(1, left)
