"""Keeps RQ's view of a job in step with launchbay's record, so ``rq info`` and rq-dashboard count
our jobs correctly.

launchbay jobs are real RQ jobs (JSON serializer) in real RQ queues, but no RQ worker runs them:
an agent claims them with its own atomic script and runs them in containers. This module is the
only Python module that writes RQ's structures, and it does so through rq's classes (Queue, Job,
Execution, the registries), never by key name. The one other writer is the claim script
(``queue_config/claim.lua``, run by ``lifecycle.ClaimScript``), which takes a claimed job out of its
RQ queue list (LREM) in the same atomic step as the claim; it gets the list's key from ``rq_queue(..).key``.

Supported: rq 2.12 and 3.x (``scripts/test-rq2`` runs this module's tests on 2.12, the main suite on 3).
``Execution`` is the one class used here whose behaviour differs between them: rq 3 also indexes an
execution under its worker (``rq:worker:<name>:executions``), so every ``Execution`` built here carries
the worker's name (kept on RQ's job by ``prepare_for_execution``), which makes ``delete`` take it out of
that index again and lets the heartbeat keep the index alive; on 2.12 the name only labels the execution.
rq 3's ``RQ_KEY_PREFIX`` must stay unset (``rq``): launchbay's Redis roles (``acl.py``) grant ``rq:*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

import redis
from launchbay.queue_config.job import State
from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcformat

#: The function name RQ stores for our jobs. An RQ worker that picks one up by mistake fails it
#: with a message that says what to run instead.
ENTRY_POINT = "launchbay.queue_config.rq_bridge.run_with_launchbay_agent"
#: How long RQ keeps a job's "started" entry without a heartbeat. The agent refreshes it on every
#: beat, and launchbay detects lost agents itself (heartbeat TTL + grace, seconds), long before this.
EXECUTION_TTL_S = 3600
RESULT_TTL_S = 7 * 24 * 3600
FAILURE_TTL_S = 30 * 24 * 3600


def run_with_launchbay_agent(job_id: str) -> None:
    raise RuntimeError(
        f"job {job_id} is a launchbay job: run `launchbay agent` on a machine that serves its queue, not `rq worker`"
    )


def rq_queue(conn: redis.Redis, name: str) -> Queue:
    return Queue(name, connection=conn, serializer=JSONSerializer)


def fetch(conn: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=conn, serializer=JSONSerializer)


def exists(conn: redis.Redis, job_id: str) -> bool:
    """Whether RQ still keeps the job (its hash expires with the result TTL)."""
    return Job.exists(job_id, connection=conn)


def enqueue(
    conn: redis.Redis,
    queue: str,
    job_id: str,
    *,
    meta: Mapping[str, Any],
    description: str,
    at_front: bool = False,
    pipeline: Any = None,
) -> Job:
    """Put a new RQ job at the back (or front) of ``queue``; with ``pipeline`` nothing runs until it executes."""
    return rq_queue(conn, queue).enqueue_call(
        ENTRY_POINT,
        kwargs={"job_id": job_id},
        job_id=job_id,
        meta=dict(meta),
        description=description,
        timeout=-1,  # max_runtime is enforced by the agent, on the container
        result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S,
        at_front=at_front,
        pipeline=pipeline,
    )


def mark_started(
    conn: redis.Redis, job_id: str, *, worker_name: str, queue: Optional[str] = None, pipeline: Any = None
) -> str:
    """Record in RQ that ``worker_name`` runs the job; returns the execution id to keep for later calls.

    With ``queue`` nothing is read (RQ's job is addressed by id and queue), else RQ's job is fetched;
    with ``pipeline`` the writes wait for the caller to execute it."""
    if queue is None:
        job = fetch(conn, job_id)
    else:
        job = Job(job_id, connection=conn, serializer=JSONSerializer)
        job.origin = queue
    pipe = pipeline if pipeline is not None else conn.pipeline()
    execution = Execution.create(job, ttl=EXECUTION_TTL_S, pipeline=pipe, worker_name=worker_name)
    job.prepare_for_execution(worker_name, pipe)
    if pipeline is None:
        pipe.execute()
    return execution.id


def _execution(conn: redis.Redis, job: Job, execution_id: str) -> Execution:
    """RQ's handle on one run of ``job``, named after the agent that runs it (see the module's docstring)."""
    return Execution(execution_id, job.id, connection=conn, worker_name=job.worker_name or "")


def heartbeat(conn: redis.Redis, job_id: str, execution_id: str, *, pipeline: Any = None) -> None:
    """Keep RQ's started entry alive (so its abandoned-job cleanup leaves the job alone)."""
    job = fetch(conn, job_id)
    execution = _execution(conn, job, execution_id)
    pipe = pipeline if pipeline is not None else conn.pipeline()
    execution.heartbeat(job.started_job_registry, ttl=EXECUTION_TTL_S, pipeline=pipe)
    index = getattr(execution, "worker_executions_key", None)  # rq 3 only; an RQ worker refreshes its own
    if index and execution.worker_name:
        pipe.expire(index, EXECUTION_TTL_S + 60)
    if pipeline is None:
        pipe.execute()


@dataclass(frozen=True)
class StartedBy:
    """Where RQ shows a job started, as :func:`mark_started` wrote it: its queue and the worker's name."""

    queue: str
    worker_name: str


def _ended_job(conn: redis.Redis, job_id: str, state: State, started_by: Optional[StartedBy]) -> Job:
    """RQ's job as the end needs it: addressed by id and ``started_by`` when the caller knows them,
    else read (always for a failure: the failed registry's ``add`` saves the whole job). Unread, a job
    whose RQ hash someone deleted while it ran is not noticed: its end leaves RQ a status-only hash."""
    if started_by is None or state == State.FAILED:
        return fetch(conn, job_id)
    job = Job(job_id, connection=conn, serializer=JSONSerializer)
    job.origin, job.worker_name = started_by.queue, started_by.worker_name
    return job


def mark_ended(
    conn: redis.Redis,
    job_id: str,
    execution_id: Optional[str],
    *,
    state: State,
    message: str = "",
    started_by: Optional[StartedBy] = None,
) -> None:
    """Move the RQ job to its finished, failed or canceled registry and drop its started entry.

    One pipeline, after a read of RQ's job (its queue and worker) unless ``started_by`` says them
    (the agent that started it knows; a failure reads it anyway). Not a transaction: RQ's copy is a
    mirror of the record, and ``lifecycle.complete_end`` runs again after an interrupted end."""
    job = _ended_job(conn, job_id, state, started_by)
    job.ended_at = datetime.now(timezone.utc)
    with conn.pipeline(transaction=False) as pipe:
        if execution_id:
            _execution(conn, job, execution_id).delete(job, pipe)
        if state == State.FINISHED:
            status = JobStatus.FINISHED
            FinishedJobRegistry(job.origin, conn, serializer=JSONSerializer).add(job, ttl=RESULT_TTL_S, pipeline=pipe)
        elif state == State.FAILED:
            status = JobStatus.FAILED
            FailedJobRegistry(job.origin, conn, serializer=JSONSerializer).add(
                job, ttl=FAILURE_TTL_S, exc_string=message, pipeline=pipe
            )
        elif state == State.CANCELED:
            status = JobStatus.CANCELED
            CanceledJobRegistry(job.origin, conn, serializer=JSONSerializer).add(job, pipeline=pipe)
        else:
            raise ValueError(f"not a terminal state: {state}")
        # the status and the end time in one HSET (a failed registry's ``add`` saved the whole job before it)
        pipe.hset(job.key, mapping={"status": status.value, "ended_at": utcformat(job.ended_at)})
        pipe.execute()


def cancel_queued(conn: redis.Redis, job_id: str) -> None:
    """Take a job that no agent has claimed out of its RQ queue, into the canceled registry."""
    job = fetch(conn, job_id)
    if not job.is_canceled:
        job.cancel()


def requeue(conn: redis.Redis, job_id: str, *, at_front: bool = False, execution_id: Optional[str] = None) -> None:
    """Put a job back in its RQ queue, out of whichever registry it ended in."""
    job = fetch(conn, job_id)
    queue = rq_queue(conn, job.origin)
    with conn.pipeline() as pipe:
        if execution_id:
            _execution(conn, job, execution_id).delete(job, pipe)
        for registry in (queue.finished_job_registry, queue.failed_job_registry, queue.canceled_job_registry):
            registry.remove(job, pipeline=pipe)
        pipe.execute()
    queue.enqueue_job(job, at_front=at_front)


def delete_queue(conn: redis.Redis, name: str) -> None:
    """Remove an (emptied) RQ queue so ``rq info`` stops listing it; its jobs' hashes stay."""
    rq_queue(conn, name).delete(delete_jobs=False)
