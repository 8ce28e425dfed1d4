"""The job record: one Redis hash per job that says where the job is, why, and since when.

The CLI creates it at enqueue; agents move it forward. Every change of state goes through
:func:`transition`, one Lua script that checks the current state and writes the new one with its
timestamp in a single step, so a cancel racing a finish, or two agents racing one job, can never
both win. RQ's own job hash mirrors the state for ``rq info`` and rq-dashboard
(see ``launchbay.queue_config.rq_bridge``).

Fields (all strings in Redis; JSON where noted):

========================  ==========================================================
id, name, queue           the job id, its job definition name, its queue
state, reason, message    see :class:`State` and :class:`Reason`; message is for people
priority                  high | normal | low
spec                      JSON: image, command, workdir, env, docker options
request                   JSON: the canonical resource request (claim script reads it)
constraints               JSON: agent labels that must match
max_runtime_s             seconds, or empty
run_config                JSON: run-config overrides
file_overrides            JSON: {relative path: object}
agent, host, container    who runs it, and the container id
gpus                      JSON list of host GPU ids, e.g. ["0", "3"]
exit_code                 the container's exit code
effective_config          JSON: the config the job ran with (the SDK's config.json)
attempts                  how many times an agent claimed it
cancel_requested          "1" once a user asked to cancel a claimed job
<state>_at                epoch seconds when it entered that state (queued_at, ...)
========================  ==========================================================

Anyone who can write to Redis can write a record, so reading one never fails on a malformed
value: :func:`decode_fields` gives None for it and names it in ``unreadable_fields`` (the agent
fails such a job with a message saying so, instead of choking on it).
"""

from __future__ import annotations

import json
import time
from enum import Enum
from typing import Any, Dict, Iterable, Mapping, Optional

import redis
from launchbay.queue_config.keys import Keys


class State(str, Enum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset({State.FINISHED, State.FAILED, State.CANCELED})
ACTIVE_STATES = frozenset({State.STARTING, State.RUNNING})


class Reason(str, Enum):
    """Why a job ended (or was put back in its queue)."""

    EXIT_CODE = "exit_code"  # the command exited non-zero
    OOM_KILLED = "oom_killed"  # the kernel killed it for exceeding its memory
    TIMEOUT = "timeout"  # it ran past max_runtime and was stopped
    IMAGE_PULL_FAILED = "image_pull_failed"  # the image is missing and could not be pulled
    CONTAINER_FAILED = "container_failed"  # docker refused to create or start the container
    AGENT_LOST = "agent_lost"  # its agent stopped heartbeating and did not come back
    REQUEUED_AGENT_LOST = "requeued_agent_lost"  # put back in the queue after its agent was lost
    CANCELED_BY_USER = "canceled_by_user"
    DOCKER_UNAVAILABLE = "docker_unavailable"  # the engine went away and the container with it
    GPU_FAILED = "gpu_failed"  # a GPU it ran on became unhealthy (agent/gpu_health.py); maybe requeued

    def __str__(self) -> str:
        return self.value


JSON_FIELDS = frozenset({"spec", "request", "constraints", "run_config", "file_overrides", "gpus", "effective_config"})
INT_FIELDS = frozenset({"exit_code", "attempts", "max_runtime_s"})
#: Added by :func:`decode_fields`: the names of the fields whose stored value could not be read.
UNREADABLE_FIELDS = "unreadable_fields"

# KEYS[1] = job hash. ARGV[1] = new state, ARGV[2] = now, ARGV[3] = allowed current states
# (comma-separated), then field/value pairs to set. Returns 1 when written, 0 when the job is
# missing or in a state not allowed.
_TRANSITION_LUA = """
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
"""


def encode_fields(fields: Mapping[str, Any]) -> Dict[str, str]:
    """Turn Python values into the strings stored in the hash (JSON where the field is JSON)."""
    out = {}
    for name, value in fields.items():
        if value is None:
            out[name] = ""
        elif name in JSON_FIELDS:
            out[name] = json.dumps(value, separators=(",", ":"), sort_keys=True)
        elif isinstance(value, Enum):
            out[name] = value.value
        else:
            out[name] = str(value)
    return out


def decode_fields(raw: Mapping[bytes | str, bytes | str]) -> Dict[str, Any]:
    """The inverse of :func:`encode_fields`, applied to an HGETALL result.

    A value that cannot be read (not JSON, not a number) becomes None and its field name is listed
    under ``unreadable_fields``.
    """
    out: Dict[str, Any] = {}
    for key, value in raw.items():
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        try:
            out[name] = _decode_value(name, text)
        except (ValueError, RecursionError):
            out[name] = None
            out.setdefault(UNREADABLE_FIELDS, []).append(name)
    return out


def _decode_value(name: str, text: str) -> Any:
    if name in JSON_FIELDS:
        return json.loads(text) if text else None
    if name in INT_FIELDS:
        return int(text) if text not in ("", None) else None
    if name.endswith("_at"):
        return float(text) if text else None
    return text


class Records:
    """Reads and writes job records for one Redis connection and namespace."""

    def __init__(self, conn: redis.Redis, keys: Optional[Keys] = None) -> None:
        self.conn = conn
        self.keys = keys or Keys.from_env()
        self._transition = conn.register_script(_TRANSITION_LUA)

    def create(self, job_id: str, fields: Mapping[str, Any], *, pipeline: Any = None) -> None:
        """Write a new record in state ``queued`` (in ``pipeline`` when given, so it lands with the enqueue)."""
        now = time.time()
        values = encode_fields({**fields, "id": job_id, "state": State.QUEUED, "queued_at": now, "attempts": 0})
        target = pipeline if pipeline is not None else self.conn
        target.hset(self.keys.job(job_id), mapping={k: v for k, v in values.items() if v != ""})
        target.zadd(self.keys.queue_jobs(str(fields["queue"])), {job_id: now})

    def get(self, job_id: str) -> Optional[Dict[str, Any]]:
        raw = self.conn.hgetall(self.keys.job(job_id))
        return decode_fields(raw) if raw else None

    def state(self, job_id: str) -> Optional[State]:
        value = self.conn.hget(self.keys.job(job_id), "state")
        return State(value.decode()) if value else None

    def transition(
        self, job_id: str, to: State, *, allowed_from: Iterable[State], pipeline: Any = None, **fields: Any
    ) -> bool:
        """Move ``job_id`` to ``to`` if it is now in one of ``allowed_from``; set ``fields`` with it.

        Returns False (and writes nothing) when the job is missing or in another state. A field
        given as None is deleted. With ``pipeline`` the check runs when the pipeline executes and
        the return value is not meaningful.
        """
        args: list[str] = [State(to).value, repr(time.time()), ",".join(State(s).value for s in allowed_from)]
        for name, value in encode_fields(fields).items():
            args += [name, value]
        result = self._transition(keys=[self.keys.job(job_id)], args=args, client=pipeline or self.conn)
        return bool(result) if pipeline is None else True

    def update(self, job_id: str, **fields: Any) -> None:
        """Set fields without a change of state (container id, exit code, effective config...)."""
        values = encode_fields(fields)
        key = self.keys.job(job_id)
        pipe = self.conn.pipeline()
        for name, value in values.items():
            if value == "":
                pipe.hdel(key, name)
            else:
                pipe.hset(key, name, value)
        pipe.execute()
