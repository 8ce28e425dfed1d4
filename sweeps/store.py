"""A sweep in Redis: its hash, its lease, and its trials' jobs. The only writer of ``{ns}:sweep:{id}``.

A sweep is one hash (``config``: SWEEP.yaml as JSON; ``template``: the job fields every trial
starts from, validated once at create; ``state``; ``submitter``; timestamps), an entry in the
``{ns}:sweeps`` index, and, while a driver should advance it, an entry in ``{ns}:sweeps:active``.
Its Optuna study is the journal beside it (``sweep_study.py``).

States: ``running`` (new trials are made), ``paused`` (none are; running ones go on and are
counted), ``stopping`` (none are; the sweep ends ``stopped`` once its trials ended),
``finished`` (every trial it was to make ended) and ``stopped``.

A trial's job id is ``{sweep id}-{trial number}``: a driver that dies after writing the job and
before noting it finds the job by that id and does not write a second one.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from typing import Any, Dict, Iterable, List, Mapping, Optional

import redis
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.submit import write_job
from launchbay.sdk.overlay import merge_overrides
from launchbay.sweeps.spec import Param

from launchbay.errors import NotFoundError, UserError
from launchbay.text import as_text


class SweepState(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


OPEN_STATES = (SweepState.RUNNING, SweepState.PAUSED, SweepState.STOPPING)
ENDED_STATES = (SweepState.FINISHED, SweepState.STOPPED)
_JSON_FIELDS = frozenset({"config", "template"})

# KEYS[1] = sweep hash, KEYS[2] = active set. ARGV[1] = new state, ARGV[2] = now, ARGV[3] = allowed
# states (comma-separated), ARGV[4] = sweep id, then field/value pairs. Returns the state before
# (the change was made when it is one of the allowed), or false when the sweep is missing.
_SET_STATE_LUA = """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return false end
for s in string.gmatch(ARGV[3], '[^,]+') do
  if s == current then
    redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updated_at', ARGV[2])
    for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
    if ARGV[1] == 'finished' or ARGV[1] == 'stopped' then
      redis.call('HSET', KEYS[1], 'ended_at', ARGV[2])
      redis.call('SREM', KEYS[2], ARGV[4])
    else
      redis.call('SADD', KEYS[2], ARGV[4])
    end
    return current
  end
end
return current
"""

# KEYS[1] = lease. ARGV[1] = holder, ARGV[2] = TTL in ms. 1 when ARGV[1] holds it now (taken or renewed).
_LEASE_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])  -- taken, or renewed (SET: the roles allow no PEXPIRE)
return 1
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def trial_job_id(sweep_id: str, number: int) -> str:
    return f"{sweep_id}-{number}"


class SweepStore:
    """Reads and writes sweeps for one connection and namespace."""

    def __init__(self, conn: redis.Redis, keys: Optional[Keys] = None) -> None:
        self.conn = conn
        self.keys = keys or Keys.from_env()
        self._set_state = conn.register_script(_SET_STATE_LUA)
        self._lease = conn.register_script(_LEASE_LUA)
        self._release = conn.register_script(_RELEASE_LUA)

    def create(self, sweep_id: str, *, queue: str, config: Mapping[str, Any], template: Mapping[str, Any],
               submitter: str, name: str) -> None:  # fmt: skip
        """Write a new sweep (``running``) and index it, in one MULTI."""
        now = repr(time.time())
        fields = {"id": sweep_id, "name": name, "queue": queue, "state": SweepState.RUNNING.value,
                  "submitter": submitter, "created_at": now, "updated_at": now,
                  "config": json.dumps(config, default=str), "template": json.dumps(template)}  # fmt: skip
        with self.conn.pipeline() as pipe:
            pipe.hset(self.keys.sweep(sweep_id), mapping=fields)
            pipe.zadd(self.keys.sweeps, {sweep_id: float(now)})
            pipe.sadd(self.keys.sweeps_active, sweep_id)
            pipe.execute()

    def get(self, sweep_id: str) -> Optional[Dict[str, Any]]:
        raw = self.conn.hgetall(self.keys.sweep(sweep_id))
        if not raw:
            return None
        out: Dict[str, Any] = {}
        for key, value in raw.items():
            name, text = as_text(key), as_text(value)
            out[name] = json.loads(text) if name in _JSON_FIELDS else text
        for name in ("created_at", "updated_at", "ended_at"):
            if name in out:
                out[name] = float(out[name])
        return out

    def queue_of(self, sweep_id: str) -> Optional[str]:
        value = self.conn.hget(self.keys.sweep(sweep_id), "queue")
        return as_text(value) if value else None

    def require(self, sweep_id: str) -> Dict[str, Any]:
        sweep = self.get(sweep_id)
        if sweep is None:
            raise NotFoundError(f"unknown sweep {sweep_id!r} (`launchbay sweep list` shows them)")
        return sweep

    def ids(self, limit: int = 200) -> List[str]:
        """Sweep ids, newest first."""
        return [as_text(i) for i in self.conn.zrevrange(self.keys.sweeps, 0, limit - 1)]

    def active_ids(self) -> List[str]:
        return sorted(as_text(i) for i in self.conn.smembers(self.keys.sweeps_active))

    def set_state(self, sweep_id: str, to: SweepState, allowed_from: Iterable[SweepState], **fields: Any) -> bool:
        """Move the sweep to ``to`` when it is in one of ``allowed_from``; False when it was not."""
        allowed = [SweepState(s).value for s in allowed_from]
        args: List[Any] = [SweepState(to).value, repr(time.time()), ",".join(allowed), sweep_id]
        for name, value in fields.items():
            args += [name, str(value)]
        before = self._set_state(keys=[self.keys.sweep(sweep_id), self.keys.sweeps_active], args=args)
        if before is None:
            raise NotFoundError(f"unknown sweep {sweep_id!r}")
        return as_text(before) in allowed

    def command(self, sweep_id: str, to: SweepState) -> str:
        """``pause``, ``resume`` or ``stop`` as a person asks: a UserError when the state does not allow it."""
        allowed = {
            SweepState.PAUSED: (SweepState.RUNNING, SweepState.PAUSED),
            SweepState.RUNNING: (SweepState.PAUSED, SweepState.RUNNING),
            SweepState.STOPPING: OPEN_STATES,
        }[to]
        if not self.set_state(sweep_id, to, allowed):
            state = self.require(sweep_id)["state"]
            raise UserError(f"sweep {sweep_id} is {state}; it cannot be made {to}")
        return to.value

    def note(self, sweep_id: str, message: str) -> None:
        """The driver's last word on the sweep (a problem, or why it waits); "" clears it."""
        self.conn.hset(self.keys.sweep(sweep_id), "message", message)

    # -- the driver's lease ---------------------------------------------------------------------

    def hold_lease(self, sweep_id: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the sweep's lease for ``holder``; False while another holds it."""
        return bool(self._lease(keys=[self.keys.sweep_lease(sweep_id)], args=[holder, int(ttl_s * 1000)]))

    def release_lease(self, sweep_id: str, holder: str) -> None:
        self._release(keys=[self.keys.sweep_lease(sweep_id)], args=[holder])

    def lease_holder(self, sweep_id: str) -> Optional[str]:
        value = self.conn.get(self.keys.sweep_lease(sweep_id))
        return as_text(value) if value else None


def trial_fields(template: Mapping[str, Any], params: Iterable[Param], values: Mapping[str, Any]) -> Dict[str, Any]:
    """The job fields of one trial: the sweep's template with each parameter's value set at its key."""
    fields = json.loads(json.dumps(template))  # a deep copy of plain JSON
    for param in params:
        if param.name not in values:
            continue
        tree = fields["run_config"] if param.file is None else fields["file_overrides"].setdefault(param.file, {})
        problems = merge_overrides(tree, {param.parts: values[param.name]})
        if problems:
            raise UserError(f"parameter {param.name!r}: " + "; ".join(problems))
    return fields


def enqueue_trial(conn: redis.Redis, keys: Keys, sweep: Mapping[str, Any], number: int, fields: Dict[str, Any]) -> str:
    """Write trial ``number``'s job (unless a job of its id exists); returns the job id."""
    job_id = trial_job_id(sweep["id"], number)
    if conn.exists(keys.job(job_id)):
        return job_id
    write_job(conn, keys, job_id, {**fields, "sweep": sweep["id"], "trial": number})
    return job_id
