"""The Python API that the CLI is built on: ``launchbay.client``."""

from __future__ import annotations

import threading

import pytest
from launchbay.client import enqueue, get_job
from launchbay.queue_config.job import Reason, State
from queue_helpers import JOB_SPEC, apply_queues, play_agent, redis_snapshot, rq_job_ids

from launchbay.errors import NotFoundError, ValidationError


def test_enqueue_returns_a_handle_whose_status_is_the_record(redis_url, redis_conn):
    apply_queues(redis_conn)
    job = enqueue(
        JOB_SPEC,
        "gpu",
        overrides={"trainer": {"epochs": 2}},
        file_overrides={"config.yaml": {"depth": 3}},
        resources={"gpus": "H100:1", "memory": "32GiB"},
        max_runtime="2h",
        redis_url=redis_url,
    )
    status = job.status()
    assert status["state"] == "queued"
    assert status["run_config"] == {"trainer": {"learning_rate": 0.01, "epochs": 2}}
    assert status["file_overrides"] == {"config.yaml": {"depth": 3}}
    assert status["request"]["memory_mib"] == 32 * 1024
    assert status["max_runtime_s"] == 7200
    assert rq_job_ids(redis_conn, "gpu") == [job.id]
    assert get_job(job.id, redis_url=redis_url).status()["id"] == job.id


def test_a_refused_enqueue_raises_and_writes_nothing(redis_url, redis_conn):
    apply_queues(redis_conn)
    before = redis_snapshot(redis_conn)
    with pytest.raises(ValidationError, match="gpus: requested 9, queue 'gpu' allows at most 8"):
        enqueue(JOB_SPEC, "gpu", resources={"gpus": 9}, redis_url=redis_url)
    with pytest.raises(ValidationError, match="priority 'urgent' must be one of high, normal, low"):
        enqueue(JOB_SPEC, "gpu", priority="urgent", redis_url=redis_url)
    assert redis_snapshot(redis_conn) == before


def test_wait_returns_the_final_record_when_the_agent_ends_the_job(redis_url, redis_conn):
    apply_queues(redis_conn)
    job = enqueue(JOB_SPEC, "gpu", redis_url=redis_url)
    agent = threading.Thread(
        target=play_agent,
        args=(redis_conn, job.id),
        kwargs={"end": State.FAILED, "exit_code": 137, "reason": Reason.OOM_KILLED},
    )
    agent.start()
    final = job.wait(timeout_s=30)
    agent.join()
    assert (final["state"], final["reason"], final["exit_code"]) == ("failed", "oom_killed", 137)


def test_wait_with_a_timeout_raises_timeout_error_and_leaves_the_job_alone(redis_url, redis_conn):
    apply_queues(redis_conn)
    job = enqueue(JOB_SPEC, "gpu", redis_url=redis_url)
    with pytest.raises(TimeoutError, match=f"job {job.id} is still queued after 0.2s"):
        job.wait(timeout_s=0.2)
    assert job.state() == State.QUEUED


def test_logs_yield_the_lines_and_cancel_reports_what_happened(redis_url, redis_conn):
    apply_queues(redis_conn)
    done = enqueue(JOB_SPEC, "gpu", redis_url=redis_url)
    play_agent(redis_conn, done.id, lines=["a", "b"])
    assert list(done.logs()) == ["a", "b"]
    assert list(done.logs(follow=True)) == ["a", "b"]
    waiting = enqueue(JOB_SPEC, "gpu", redis_url=redis_url)
    assert waiting.cancel() == "canceled"
    assert waiting.requeue()["state"] == "queued"


def test_get_job_of_an_unknown_id_raises_not_found(redis_url):
    with pytest.raises(NotFoundError):
        get_job("nope", redis_url=redis_url)
