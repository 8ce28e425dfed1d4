"""Finding jobs: one by id, or the newest of a queue (or of every queue), optionally by state."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import redis
from launchbay.queue_config import pending
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.secrets import mask_record
from launchbay.queue_config.store import QueueStore
from launchbay.redis_connection.connect import connect

from launchbay.errors import ValidationError

from .handle import JobHandle

#: Ids read from a queue's index per round trip while looking for jobs in the wanted state.
PAGE_SIZE = 200


def get_job(
    job_id: str, *, redis_url: Optional[str] = None, conn: Optional[redis.Redis] = None, keys: Optional[Keys] = None
) -> JobHandle:
    """A handle on an existing job; NotFoundError when there is no such job."""
    handle = JobHandle(job_id, conn or connect(redis_url), keys)
    handle.status()
    return handle


def list_jobs(
    conn: redis.Redis,
    keys: Optional[Keys] = None,
    *,
    queue: Optional[str] = None,
    state: Optional[str] = None,
    limit: int = 50,
    user: Optional[str] = None,
) -> List[Dict[str, Any]]:
    """The newest ``limit`` job records (of ``queue``, in ``state``, by submitter ``user`` when given),
    newest first; secret values masked, and queued jobs carry why they wait (:func:`with_pending`).
    Each as ``--json`` shows it (:func:`list_records` gives them typed).
    """
    return [record.as_json() for record in list_records(conn, keys, queue=queue, state=state, limit=limit, user=user)]


def list_records(
    conn: redis.Redis,
    keys: Optional[Keys] = None,
    *,
    queue: Optional[str] = None,
    state: Optional[str] = None,
    limit: int = 50,
    user: Optional[str] = None,
) -> List[JobRecord]:
    """:func:`list_jobs`, as :class:`~launchbay.queue_config.job.JobRecord` s."""
    keys = keys or Keys.from_env()
    if state is not None and state not in {s.value for s in State}:
        raise ValidationError(f"unknown state {state!r}; states: {', '.join(s.value for s in State)}")
    if limit < 1:
        raise ValidationError(f"--limit must be at least 1, got {limit}")
    queues = [queue] if queue else QueueStore(conn, keys).names()
    records: List[JobRecord] = []
    for name in queues:
        records += _newest_in_queue(conn, keys, name, state, limit, user)
    records.sort(key=lambda r: r.times.get(State.QUEUED.value) or 0.0, reverse=True)
    return with_pending(conn, keys, [mask_record(r) for r in records[:limit]])


def with_pending(conn: redis.Redis, keys: Keys, records: List[JobRecord]) -> List[JobRecord]:
    """The records, each queued one with ``pending_reason``, ``pending_detail`` and ``estimated_start``
    as people should see them now (``pending.current``: the agents' last word, or paused / no agent)."""
    if not any(r.state is State.QUEUED for r in records):
        return records
    views = pending.fleet(conn, keys)
    return [pending.current(conn, keys, r, views) for r in records]


def _newest_in_queue(
    conn: redis.Redis, keys: Keys, queue: str, state: Optional[str], limit: int, user: Optional[str]
) -> List[JobRecord]:
    index = keys.queue_jobs(queue)
    found: List[JobRecord] = []
    start = 0
    while len(found) < limit:
        ids = conn.zrevrange(index, start, start + PAGE_SIZE - 1)
        if not ids:
            break
        with conn.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(keys.job(job_id.decode()))
            raws = pipe.execute()
        for job_id, raw in zip(ids, raws):
            if not raw:  # an expired record leaves its id behind
                continue
            record = JobRecord.from_hash(job_id.decode(), raw)
            wanted = state is None or (record.state is not None and record.state.value == state)
            if wanted and (user is None or record.submitter == user):  # submitter: the key's owner
                found.append(record)
        start += PAGE_SIZE
    return found[:limit]
