"""Write a validated job: its record, its RQ job and its job name, in one transaction.

The one place a new job's fields become Redis writes, for the client's ``enqueue`` and for a
sweep's driver, which writes each trial from fields validated when the sweep was made.
"""

from __future__ import annotations

from typing import Any, Dict

import redis
from launchbay.queue_config import lifecycle
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.store import QueueStore

#: The record fields RQ's job meta repeats, so `rq info` and rq-dashboard show what a job asked for.
META_FIELDS = ("name", "priority", "request", "constraints", "max_runtime_s")


def write_job(conn: redis.Redis, keys: Keys, job_id: str, fields: Dict[str, Any]) -> None:
    """Enqueue ``fields`` as job ``job_id`` (``lifecycle.enqueue``), remembering its job name with it."""
    job = JobRecord.from_fields(job_id, fields)  # what is read of them here, typed
    meta = {"launchbay": {name: getattr(job, name) for name in META_FIELDS}}
    store = QueueStore(conn, keys)
    lifecycle.enqueue(
        conn,
        keys,
        job_id,
        fields,
        meta=meta,
        description=f"launchbay job {job.name} ({job.spec.get('image')})",
        also=lambda pipe: store.add_jobdef_name(job.name, pipeline=pipe),
    )
