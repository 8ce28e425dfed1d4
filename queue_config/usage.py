"""Fair share's memory: each user's recent usage of a queue, decayed with the queue's half-life.

One hash per queue, ``{ns}:usage:{queue}`` (keys.py), fields ``<user>:gpu_s``, ``<user>:cpu_s``
(GPU-seconds and CPU-seconds as they counted at ``<user>:at``) and ``<user>:at`` (epoch seconds).
:func:`add` decays a user's figures to ``now`` and adds a run's in one Lua step, so agents ending
jobs at once never lose an update. :func:`read` decays every user's figures to ``now``. A job's
usage is added when it ends (agent/job_end.py); jobs still running are not counted until then.

Placement orders by :func:`billing`: GPU-seconds plus CPU-seconds times :data:`CPU_WEIGHT` (a CPU
counts as a tenth of a GPU, as Slurm's TRES billing weights do), divided by the user's weight.
"""

from __future__ import annotations

from typing import Dict, Mapping

import redis
from launchbay.queue_config.acl import UNKNOWN_SUBMITTER
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.sharing import decayed

from launchbay.text import as_text

#: A CPU-second counts as this many GPU-seconds in the fair-share order.
CPU_WEIGHT = 0.1
#: Who a job belongs to when neither its id nor its record names a submitter.
UNKNOWN_USER = UNKNOWN_SUBMITTER

_ADD = """
local key, user = KEYS[1], ARGV[1]
local gpu_s, cpu_s, now, half = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local old = redis.call('HMGET', key, user .. ':gpu_s', user .. ':cpu_s', user .. ':at')
local factor = 1
if old[3] then factor = 0.5 ^ (math.max(0, now - tonumber(old[3])) / half) end
redis.call('HSET', key, user .. ':gpu_s', tostring((tonumber(old[1]) or 0) * factor + gpu_s),
  user .. ':cpu_s', tostring((tonumber(old[2]) or 0) * factor + cpu_s), user .. ':at', tostring(now))
return 1
"""


def add(
    conn: redis.Redis, keys: Keys, queue: str, user: str, *, gpu_s: float, cpu_s: float, now: float, half_life_s: float
) -> None:
    """Add one run's GPU- and CPU-seconds to ``user``'s usage of ``queue`` (atomically, decayed to ``now``)."""
    # EVALSHA (a registered script), which the documented agent ACL allows; plain EVAL it does not.
    conn.register_script(_ADD)(keys=[keys.usage(queue)], args=[user or UNKNOWN_USER, gpu_s, cpu_s, now, half_life_s])


def read(conn: redis.Redis, keys: Keys, queue: str, *, now: float, half_life_s: float) -> Dict[str, Dict[str, float]]:
    """``{user: {"gpu_s": .., "cpu_s": ..}}`` as they count at ``now``."""
    raw = {as_text(k): as_text(v) for k, v in conn.hgetall(keys.usage(queue)).items()}
    out: Dict[str, Dict[str, float]] = {}
    for name, value in raw.items():
        user, _, kind = name.rpartition(":")
        if kind not in ("gpu_s", "cpu_s"):
            continue
        try:
            since = now - float(raw.get(f"{user}:at", now))
            out.setdefault(user, {"gpu_s": 0.0, "cpu_s": 0.0})[kind] = decayed(float(value), since, half_life_s)
        except ValueError:
            continue  # a hand-written field that is not a number counts as no usage
    return out


def billing(usage: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]) -> Dict[str, float]:
    """What placement orders by: ``(gpu_s + CPU_WEIGHT * cpu_s) / weight`` per user."""
    return {
        user: (figures.get("gpu_s", 0.0) + CPU_WEIGHT * figures.get("cpu_s", 0.0)) / weights.get(user, 1.0)
        for user, figures in usage.items()
    }
