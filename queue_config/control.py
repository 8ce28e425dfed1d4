"""What a person does to one job after enqueue: cancel it, or put an ended job back in its queue.

Both move the record with :meth:`Records.transition` (one check-and-set, so a cancel racing an
agent's claim has exactly one winner) and then mirror the move into RQ through ``rq_bridge``.
A claimed job cannot be stopped from here: we flag it and tell its agent, which owns the container.
"""

from __future__ import annotations

import json
from typing import Any, Dict

import redis
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.records import ACTIVE_STATES, TERMINAL_STATES, Reason, Records, State

from launchbay.errors import NotFoundError, UserError

CANCELED = "canceled"
CANCEL_REQUESTED = "cancel_requested"
#: A queued job can be claimed between our read of its state and our write; try again this often.
STATE_RACE_RETRIES = 3
#: Fields that describe one run; a requeued job starts without them.
RUN_FIELDS = (
    "reason", "message", "exit_code", "agent", "host", "gpus", "container", "rq_execution",
    "effective_config", "summary", "cancel_requested", "starting_at", "running_at", "finished_at", "failed_at", "canceled_at",
)  # fmt: skip


def publish(conn: redis.Redis, keys: Keys, message: Dict[str, Any]) -> None:
    """Send a wake-up message on the events channel (agents also poll, so a lost message only delays)."""
    conn.publish(keys.events, json.dumps(message, sort_keys=True))


def cancel_job(
    conn: redis.Redis, keys: Keys, job_id: str, *, missing_ok: bool = False, terminal_ok: bool = False
) -> str:
    """Cancel a job: ``"canceled"`` when it was still queued, ``"cancel_requested"`` when an agent has it.

    A job that already ended is a UserError unless ``terminal_ok`` (then its state is returned);
    an unknown job is a NotFoundError unless ``missing_ok`` (then ``"missing"``).
    """
    records = Records(conn, keys)
    for _ in range(STATE_RACE_RETRIES):
        state = records.state(job_id)
        if state is None:
            if missing_ok:
                return "missing"
            raise NotFoundError(f"unknown job {job_id!r}")
        if state == State.QUEUED and _cancel_queued(conn, records, job_id):
            return CANCELED
        if state in ACTIVE_STATES:
            records.update(job_id, cancel_requested=1)
            publish(conn, keys, {"type": "cancel", "job_id": job_id})
            return CANCEL_REQUESTED
        if state in TERMINAL_STATES:
            if terminal_ok:
                return state.value
            raise UserError(f"job {job_id} already ended ({state}); nothing to cancel")
    raise UserError(f"job {job_id} changed state while being canceled; run the command again")


def _cancel_queued(conn: redis.Redis, records: Records, job_id: str) -> bool:
    moved = records.transition(
        job_id,
        State.CANCELED,
        allowed_from=[State.QUEUED],
        reason=Reason.CANCELED_BY_USER,
        message="canceled before an agent claimed it",
    )
    if moved:
        rq_bridge.cancel_queued(conn, job_id)
        # An ended record lives as long as RQ keeps the job's result.
        conn.expire(records.keys.job(job_id), rq_bridge.RESULT_TTL_S)
    return moved


def requeue_job(conn: redis.Redis, keys: Keys, job_id: str) -> Dict[str, Any]:
    """Put a finished, failed or canceled job back in its queue; returns the record as it now is."""
    records = Records(conn, keys)
    record = records.get(job_id)
    if record is None:
        raise NotFoundError(f"unknown job {job_id!r}")
    state = State(record["state"])
    if state not in TERMINAL_STATES:
        raise UserError(f"job {job_id} is {state}; only a finished, failed or canceled job can be requeued")
    if not conn.sismember(keys.queues, record["queue"]):
        raise NotFoundError(f"job {job_id} belongs to queue {record['queue']!r}, which no longer exists")
    if not rq_bridge.exists(conn, job_id):
        raise UserError(f"job {job_id} is too old to requeue (RQ no longer keeps it); enqueue it again")
    cleared = dict.fromkeys(RUN_FIELDS)
    if not records.transition(job_id, State.QUEUED, allowed_from=TERMINAL_STATES, **cleared):
        raise UserError(f"job {job_id} changed state while being requeued; run the command again")
    conn.persist(keys.job(job_id))
    rq_bridge.requeue(conn, job_id, at_front=record.get("priority") == "high")
    publish(conn, keys, {"type": "enqueued", "queue": record["queue"]})
    return records.get(job_id) or {}
