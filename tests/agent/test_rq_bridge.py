"""RQ's view of launchbay jobs (queue_config/rq_bridge.py) on whichever rq major is installed: ``rq info``
and rq-dashboard count a job from enqueue through claim and run to its end, and a run leaves nothing behind.

The main suite runs this on rq 3; ``scripts/test-rq2`` runs it again in a venv with rq 2.12.
"""

from __future__ import annotations

import subprocess
import time
from typing import Dict

import pytest
from conftest import BIN_DIR
from launchbay.agent.claim import Claimer
from launchbay.agent.ledger import LedgerEntry
from launchbay.queue_config import lifecycle, rq_bridge
from launchbay.queue_config.job import Outcome, Reason, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.matching import Capacity
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from test_control_support import make_queue, put_job

pytestmark = pytest.mark.integration

AGENT = "agent-a"
# rq-dashboard 0.9.0 (rq_dashboard/web.py, serialize_queues) shows per queue the queue's length and, for
# each of these registries, Registry(queue, connection=...).get_job_count(cleanup=False).
DASHBOARD_REGISTRIES = {
    "failed": FailedJobRegistry,
    "started": StartedJobRegistry,
    "deferred": DeferredJobRegistry,
    "finished": FinishedJobRegistry,
    "canceled": CanceledJobRegistry,
    "scheduled": ScheduledJobRegistry,
}
NOTHING = dict.fromkeys(["queued", *DASHBOARD_REGISTRIES], 0)


def rq_info_line(redis_url: str, queue: str = "default") -> str:
    """The queue's line of ``rq info`` (RQ's own CLI, from the installed rq), or "" when it lists no such queue."""
    out = subprocess.run(
        [str(BIN_DIR / "rq"), "info", "--only-queues", "-u", redis_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return next((line.rstrip() for line in out.splitlines() if line.split(" ", 1)[0] == queue), "")


def dashboard_counts(conn, queue: str = "default") -> Dict[str, int]:
    counts = {"queued": rq_bridge.rq_queue(conn, queue).count}
    for name, registry in DASHBOARD_REGISTRIES.items():
        counts[name] = registry(queue, connection=conn).get_job_count(cleanup=False)
    return counts


def claim_and_start(conn, job_id: str = "") -> str:
    """Claim a (new) job with the agent's claim script and show it started in RQ, as the agent does."""
    job_id = job_id or put_job(conn)
    entry = LedgerEntry(job_id, "default", 1.0, 0, (), claimed_at=time.time(), max_runtime_s=None)
    result = Claimer(conn, Keys(), agent_id=AGENT, host="host-a").claim(
        entry, Capacity(cpus=4.0, memory_mib=4096, slots=4, gpus=())
    )
    assert result.claimed, result.why
    lifecycle.record_rq_start(Records(conn, Keys()), job_id, queue="default", worker_name=AGENT)
    return job_id


def run_leftovers(conn) -> list:
    """RQ keys about a run (executions and rq 3's per-worker execution index) still in Redis."""
    return sorted(k.decode() for k in conn.keys("rq:*") if b"execution" in k or k.startswith(b"rq:worker"))


@pytest.mark.parametrize(
    ("outcome", "registry"),
    [
        (Outcome(State.FINISHED, exit_code=0), "finished"),
        (Outcome(State.FAILED, Reason.EXIT_CODE, exit_code=3, message="exit 3"), "failed"),
        (Outcome(State.CANCELED, Reason.CANCELED_BY_USER, message="canceled"), "canceled"),
    ],
)
def test_rq_info_and_the_dashboard_follow_a_job_to_its_end(redis_url, redis_conn, outcome, registry):
    make_queue(redis_conn)
    job_id = put_job(redis_conn)
    assert rq_info_line(redis_url).endswith(" 1, 0 executing, 0 finished, 0 failed")
    assert dashboard_counts(redis_conn) == {**NOTHING, "queued": 1}

    claim_and_start(redis_conn, job_id)
    assert rq_info_line(redis_url).endswith(" 0, 1 executing, 0 finished, 0 failed")
    assert dashboard_counts(redis_conn) == {**NOTHING, "started": 1}
    rq_job = rq_bridge.fetch(redis_conn, job_id)
    assert (rq_job.get_status(), rq_job.worker_name) == ("started", AGENT)

    execution = Records(redis_conn, Keys()).as_json(job_id)["rq_execution"]
    assert lifecycle.end(Records(redis_conn, Keys()), job_id, outcome, rq_execution=execution)

    finished, failed = int(registry == "finished"), int(registry == "failed")
    assert rq_info_line(redis_url).endswith(f" 0, 0 executing, {finished} finished, {failed} failed")
    assert dashboard_counts(redis_conn) == {**NOTHING, registry: 1}
    assert rq_bridge.fetch(redis_conn, job_id).get_status() == registry
    assert run_leftovers(redis_conn) == []


def test_the_heartbeat_keeps_a_run_whose_rq_entry_lapsed_executing(redis_url, redis_conn):
    make_queue(redis_conn)
    job_id = claim_and_start(redis_conn)
    started = StartedJobRegistry("default", connection=redis_conn)
    for member in redis_conn.zrange(started.key, 0, -1):
        redis_conn.zadd(started.key, {member: time.time() - 1})  # as if no beat came for EXECUTION_TTL_S
    for index in redis_conn.keys("rq:worker:*"):
        redis_conn.expire(index, 5)

    rq_bridge.heartbeat(redis_conn, job_id, Records(redis_conn, Keys()).as_json(job_id)["rq_execution"])

    assert rq_info_line(redis_url).endswith(" 0, 1 executing, 0 finished, 0 failed")  # its cleanup ran
    (score,) = [s for _, s in redis_conn.zrange(started.key, 0, -1, withscores=True)]
    assert score > time.time() + rq_bridge.EXECUTION_TTL_S - 60
    assert all(redis_conn.ttl(index) > rq_bridge.EXECUTION_TTL_S for index in redis_conn.keys("rq:worker:*"))


def test_a_run_put_back_in_its_queue_is_counted_queued_and_leaves_nothing(redis_url, redis_conn):
    make_queue(redis_conn)
    job_id = claim_and_start(redis_conn)
    records = Records(redis_conn, Keys())

    assert lifecycle.put_back(records, job_id, records.load(job_id), reason=Reason.PREEMPTED)

    assert rq_info_line(redis_url).endswith(" 1, 0 executing, 0 finished, 0 failed")
    assert dashboard_counts(redis_conn) == {**NOTHING, "queued": 1}
    assert rq_bridge.rq_queue(redis_conn, "default").get_job_ids() == [job_id]
    assert run_leftovers(redis_conn) == []


def test_requeue_and_cancel_move_the_job_between_rq_queue_and_registries(redis_url, redis_conn):
    make_queue(redis_conn)
    job_id = claim_and_start(redis_conn)
    records = Records(redis_conn, Keys())
    failed = Outcome(State.FAILED, Reason.EXIT_CODE, exit_code=1)
    assert lifecycle.end(records, job_id, failed, rq_execution=records.as_json(job_id)["rq_execution"])

    lifecycle.requeue(redis_conn, Keys(), job_id)
    assert rq_info_line(redis_url).endswith(" 1, 0 executing, 0 finished, 0 failed")
    assert dashboard_counts(redis_conn) == {**NOTHING, "queued": 1}

    assert lifecycle.cancel(redis_conn, Keys(), job_id) == "canceled"
    assert rq_info_line(redis_url).endswith(" 0, 0 executing, 0 finished, 0 failed")
    assert dashboard_counts(redis_conn) == {**NOTHING, "canceled": 1}

    rq_bridge.delete_queue(redis_conn, "default")
    assert rq_info_line(redis_url) == ""
