"""The wake-up messages on ``{ns}:events`` (PUBSUB, JSON): their types, and the one publish and parse.

=================================================  ======================  ==============================
message                                            published by            read by
=================================================  ======================  ==============================
``{"queue": q, "type": "enqueued"}``               lifecycle (enqueue,     agents serving ``q``: claim now
                                                   requeue, put back)
``{"job_id": id, "type": "cancel"}``               lifecycle (cancel of a  the agent running ``id``: stop it
                                                   claimed job)
``{"agent": id, "type": "released"}``              an agent, after it      every agent: resources are free
                                                   freed a job's ledger
``{"agent": id, "type": "gpu_drain"}``             ``launchbay agent       the agent ``id``: re-read its
                                                   --drain-gpu``           GPUs (drains) now
=================================================  ======================  ==============================

Agents also poll, so a lost message only delays. Unknown or malformed messages parse to None.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Optional, Union

import redis
from launchbay.queue_config.keys import Keys


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


def publish(conn: Any, keys: Keys, event: Event) -> None:
    """Send ``event`` on the events channel (``conn`` may be a pipeline)."""
    conn.publish(keys.events, json.dumps(asdict(event), sort_keys=True))


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


def subscribe(conn: redis.Redis, keys: Keys) -> Any:
    """A PUBSUB listening on the events channel (close it when done)."""
    pubsub = conn.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.events)
    return pubsub
