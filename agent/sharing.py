"""The agent's side of a shared queue: fair-share usage in and out of Redis around placement.

:func:`with_usage` gives placement each served queue's users' decayed usage (queues whose
``fair_share`` is enabled; read once per claim pass, one HGETALL per queue); :func:`record_usage`
adds an ended run's GPU- and CPU-seconds to its submitter's usage. A Redis or config problem here
never stops a claim or an end: fair share falls back to FIFO for that pass.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Callable, Dict, Mapping, Optional, Sequence

import redis
from launchbay.agent.placement import Policy
from launchbay.queue_config import usage
from launchbay.queue_config.acl import submitter_of
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig

from launchbay.errors import LaunchbayError

log = logging.getLogger(__name__)


def with_usage(
    policy: Policy,
    conn: redis.Redis,
    keys: Keys,
    config_for: Callable[[str], QueueConfig],
    queues: Sequence[str],
    now: Optional[float] = None,
) -> Policy:
    """``policy`` with ``usage`` = ``{queue: {user: billing}}`` for the served fair-share queues."""
    now = time.time() if now is None else now
    by_queue: Dict[str, Mapping[str, float]] = {}
    for queue in queues:
        try:
            fair = config_for(queue).fair_share
            if fair.enabled:
                figures = usage.read(conn, keys, queue, now=now, half_life_s=fair.half_life_s)
                by_queue[queue] = usage.billing(figures, fair.weights)
        except (LaunchbayError, redis.RedisError) as exc:
            log.debug("fair share of queue %s unknown this pass: %s", queue, exc)
    return replace(policy, usage=by_queue)


def run_seconds(record: JobRecord, now: float) -> Optional[tuple]:
    """``(gpu_s, cpu_s)`` of the run the record describes, or None when it never started."""
    started = record.times.get(State.STARTING.value)
    if started is None:
        return None
    try:
        cpus = float(record.request.get("cpus") or 0.0)
    except (TypeError, ValueError):
        return None
    seconds = max(0.0, now - started)
    return len(record.gpus) * seconds, cpus * seconds


def record_usage(
    conn: redis.Redis,
    keys: Keys,
    config_for: Callable[[str], QueueConfig],
    job_id: str,
    record: JobRecord,
    now: float,
) -> None:
    """Add the ended run of ``job_id`` to its submitter's usage of its queue (when the queue keeps fair share).

    The submitter is the one the job's key pins (``acl.submitter_of``): a field the submitter
    may rewrite while the job runs must not bill someone else. A multi-node job bills all its members."""
    queue = record.queue
    spent = run_seconds(record, now)
    if not queue or spent is None:
        return
    try:
        fair = config_for(queue).fair_share
        if fair.enabled:
            user = submitter_of(job_id, record.submitter_field)
            nodes = record.nodes  # a multi-node job: every member's share
            gpu_s, cpu_s = spent[0] * nodes, spent[1] * nodes
            usage.add(conn, keys, queue, user, gpu_s=gpu_s, cpu_s=cpu_s, now=now, half_life_s=fair.half_life_s)
    except (LaunchbayError, redis.RedisError) as exc:
        log.warning("job usage not added to fair share of queue %s: %s", queue, exc)
