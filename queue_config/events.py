"""The wake-up messages on ``{ns}:events`` (PUBSUB, JSON): their types, and the one publish and parse.

=================================================  ======================  ==============================
message                                            published by            read by
=================================================  ======================  ==============================
``{"queue": q, "type": "enqueued"}``               lifecycle (requeue,     agents serving ``q``: claim now
                                                   put back), queue resume
same, on ``{ns}:events:{agent}``                   lifecycle (enqueue),    that one agent: claim now
                                                   :func:`wake_idle`; the  (a gang: launch its member)
                                                   agent completing a gang
``{"job_id": id, "type": "cancel"}``               lifecycle (cancel of a  the agent running ``id``: stop it
                                                   claimed job)
``{"agent": id, "type": "released"}``              an agent, after it      nobody acts on it any more (a
                                                   freed a job's ledger    release frees only the releasing
                                                                           agent's resources, which wakes
                                                                           itself); scripts may listen
``{"agent": id, "type": "gpu_drain"}``             ``launchbay agent       the agent ``id``: re-read its
                                                   --drain-gpu``           GPUs (drains) now
=================================================  ======================  ==============================

Wake-ups that do not grow with the fleet: an agent with room for another job puts itself on
``{ns}:idle:{queue}`` for each queue it serves (:func:`offer`, before it reads the queue, so a job
enqueued after its read finds it there), and takes itself off when full. An enqueue wakes at most
:data:`WAKE_AT_MOST` agents from the front of that list, each on its own channel, and takes them
off it (:func:`wake_idle`, one Lua call); the woken agent puts itself back at the end on its next
pass. So an enqueue costs the same with 10 agents or 1,000. When no agent is idle nobody is woken:
busy agents look at the queue when a job of theirs ends. Agents also poll (``poll_interval_s``), so
a lost message, or a woken agent that cannot fit the job, only delays it: the poll is the safety net.
Unknown or malformed messages parse to None.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence, Union

import redis
from launchbay.queue_config.keys import Keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enqueued:
    queue: str
    type: str = "enqueued"


@dataclass(frozen=True)
class Cancel:
    job_id: str
    type: str = "cancel"


@dataclass(frozen=True)
class Released:
    agent: str
    type: str = "released"


@dataclass(frozen=True)
class GpuDrain:
    agent: str
    type: str = "gpu_drain"


Event = Union[Enqueued, Cancel, Released, GpuDrain]


def publish(conn: Any, keys: Keys, event: Event, *, to_agent: Optional[str] = None) -> None:
    """Send ``event`` on the events channel, or ``to_agent``'s own (``conn`` may be a pipeline)."""
    channel = keys.events if to_agent is None else keys.agent_events(to_agent)
    conn.publish(channel, json.dumps(asdict(event), sort_keys=True))


#: Agents one enqueue wakes: two, so that one stale entry (an agent that died idle) does not leave the
#: job to the poll, and few enough that their lost races stay cheap.
WAKE_AT_MOST = 2

# KEYS[1] = the queue's idle list. ARGV[1] = how many to wake, ARGV[2] = the channel prefix (the
# agent id is appended), ARGV[3] = the message. LRANGE + LREM rather than LPOP: the least-privilege
# ACL of docs/security.md needs no new command. Always one replicated write (below). Returns the agent ids woken.
_WAKE_LUA = """
local woken = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
for _, agent in ipairs(woken) do
  redis.call('LREM', KEYS[1], 1, agent)
  redis.call('PUBLISH', ARGV[2] .. agent, ARGV[3])
end
if #woken == 0 then
  -- Nobody idle: still one replicated write (on a channel no agent hears), so that the enqueue's WAIT
  -- over Sentinel has this connection's write to count (connection.confirm_replicated).
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return woken
"""


_WAKE_SHA = hashlib.sha1(_WAKE_LUA.encode()).hexdigest()


def wake_idle(conn: Any, keys: Keys, queue: str, *, at_most: int = WAKE_AT_MOST) -> Any:
    """Wake up to ``at_most`` idle agents serving ``queue``, taking them off its idle list (``conn`` may be a
    pipeline; on a connection, returns the ids woken)."""
    message = json.dumps(asdict(Enqueued(queue)), sort_keys=True)
    if isinstance(conn, redis.client.Pipeline):
        # Plain EVALSHA: redis-py's own script loading in a pipeline runs SCRIPT EXISTS, which the
        # least-privilege ACL does not allow; :func:`wake_confirmed` loads the script when it is missing.
        return conn.evalsha(_WAKE_SHA, 1, keys.idle(queue), str(at_most), keys.agent_events(""), message)
    # EVALSHA (SCRIPT LOAD once per server), which the least-privilege ACL allows; EVAL it does not.
    script = conn.register_script(_WAKE_LUA)
    try:
        return script(keys=[keys.idle(queue)], args=[str(at_most), keys.agent_events(""), message])
    except redis.ResponseError as exc:  # on a connection; in a pipeline the caller sees it at execute
        if not refused_by_acl(exc):
            raise
        # An ACL written before the per-agent channels (``&{ns}:events`` without the ``*``): wake
        # everyone as launchbay did before, rather than nobody.
        warn_old_acl(str(exc))
        publish(conn, keys, Enqueued(queue))
        return []


def wake_confirmed(conn: redis.Redis, keys: Keys, queue: str, confirm: Callable[[Callable[[Any], Any]], None]) -> None:
    """The enqueue's wake-up, made through ``confirm(write)`` (which runs ``write`` on a pipeline and, over
    Sentinel, waits for a replica to have it: ``connection.confirm_replicated``).

    Loads the script on a server that lacks it (new, restarted, failed over) and tries once more; under
    an ACL from before the per-agent channels it wakes the whole queue on the shared channel instead.
    """
    try:
        try:
            confirm(lambda pipe: wake_idle(pipe, keys, queue))
        except redis.exceptions.NoScriptError:
            conn.script_load(_WAKE_LUA)
            confirm(lambda pipe: wake_idle(pipe, keys, queue))
    except redis.ResponseError as exc:
        if not refused_by_acl(exc):
            raise
        warn_old_acl(str(exc))
        confirm(lambda pipe: publish(pipe, keys, Enqueued(queue)))


def refused_by_acl(exc: redis.ResponseError) -> bool:
    """Whether :func:`wake_idle` failed because the user may not publish on an agent's channel."""
    return isinstance(exc, redis.exceptions.NoPermissionError) or "can't publish" in str(exc).lower()


@functools.lru_cache(maxsize=1)
def warn_old_acl(problem: str) -> None:
    log.warning(
        "this Redis user may not wake one agent (%s): every agent of the queue is woken instead; "
        "allow the channels &%s* (docs/security.md)",
        problem,
        Keys.from_env().events,
    )


def offer(conn: Any, keys: Keys, agent_id: str, queues: Sequence[str], *, has_room: bool) -> None:
    """Put ``agent_id`` at the end of each queue's idle list (once), or take it off when it has no room."""
    with conn.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.lrem(keys.idle(queue), 0, agent_id)
            if has_room:
                pipe.rpush(keys.idle(queue), agent_id)
        pipe.execute()


def parse(data: Any) -> Optional[Event]:
    """The event in a PUBSUB message's data, or None when it is not one of ours."""
    try:
        message = json.loads(data)
    except (TypeError, ValueError):
        return None
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    if kind == "enqueued":
        return Enqueued(str(message.get("queue")))
    if kind == "cancel" and message.get("job_id"):
        return Cancel(str(message["job_id"]))
    if kind == "released":
        return Released(str(message.get("agent")))
    if kind == "gpu_drain":
        return GpuDrain(str(message.get("agent")))
    return None


def subscribe(conn: redis.Redis, keys: Keys, agent_id: Optional[str] = None) -> Any:
    """A PUBSUB listening on the events channel, and ``agent_id``'s own when given (close it when done)."""
    pubsub = conn.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.events, *([keys.agent_events(agent_id)] if agent_id else []))
    return pubsub
