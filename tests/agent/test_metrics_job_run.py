"""Metrics through the job runner (JobSupervisor on the FakeRuntime, real Redis): streamed while the
job runs, the summary recorded at its end, both expiring with the job, kept across an agent restart.

The fake container does not run code, so the test writes the job's ``metrics.jsonl`` and
``summary.json`` into its output folder on the agent's host, as the SDK would through the mount.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from launchbay.agent.runtime_fake import FakeProgram, FakeRuntime
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.keys import Keys
from test_runtime_support import RuntimeHarness, poll

IMAGE = "launchbay-test:fake"


@pytest.fixture
def harness(redis_conn, tmp_path):
    return RuntimeHarness(redis_conn, tmp_path, stop_grace_s=0.5)


def metric_steps(conn, job_id):
    return [json.loads(f[b"m"]) for _id, f in conn.xrange(Keys().job_metrics(job_id)) if b"m" in f]


def output_dir(harness, job_id):
    return harness.state_dir / "jobs" / job_id / "output"


def start_running(harness, supervisor, runtime):
    record, alloc = harness.claimed_job(IMAGE, ["train"])
    runtime.program(record.id, FakeProgram(run_s=120))
    supervisor.start(record, alloc)
    harness.wait_for_state(record.id, "running")
    return record.id, alloc


def end_container(runtime, job_id):
    runtime.container_for(job_id).ends_at = time.monotonic()


def test_steps_stream_while_running_and_the_summary_lands_in_the_record(harness, redis_conn):
    runtime = FakeRuntime()
    supervisor = harness.supervisor(runtime)
    job_id, _ = start_running(harness, supervisor, runtime)
    with open(output_dir(harness, job_id) / "metrics.jsonl", "a") as handle:
        for n in range(3):
            handle.write(json.dumps({"_step": n, "_timestamp": 1.0, "_runtime": 1.0, "loss": 1.0 / (n + 1)}) + "\n")
    poll(lambda: len(metric_steps(redis_conn, job_id)) == 3, timeout_s=10, what="steps while the job runs")
    assert harness.records.as_json(job_id)["state"] == "running"
    (output_dir(harness, job_id) / "summary.json").write_text(json.dumps({"loss": 0.333, "best_acc": 0.9}))

    end_container(runtime, job_id)
    record = harness.wait_for_end(job_id)
    supervisor.wait_all(timeout_s=10)

    assert record["state"] == "finished"
    assert record["summary"] == {"loss": 0.333, "best_acc": 0.9}
    assert [s["_step"] for s in metric_steps(redis_conn, job_id)] == [0, 1, 2]
    assert 0 < redis_conn.ttl(Keys().job_metrics(job_id)) <= rq_bridge.RESULT_TTL_S


def test_a_fifo_for_metrics_does_not_hold_the_job_and_is_noted_in_its_log(harness, redis_conn):
    runtime = FakeRuntime()
    supervisor = harness.supervisor(runtime)
    job_id, _ = start_running(harness, supervisor, runtime)
    os.mkfifo(output_dir(harness, job_id) / "metrics.jsonl")

    end_container(runtime, job_id)
    record = harness.wait_for_end(job_id)
    supervisor.wait_all(timeout_s=10)

    assert record["state"] == "finished" and "summary" not in record
    assert any("metrics.jsonl" in line and "not a regular file" in line for line in harness.log_lines(job_id))


def test_an_adopting_agent_carries_on_without_sending_a_step_twice(harness, redis_conn):
    runtime = FakeRuntime()
    first = harness.supervisor(runtime)
    job_id, alloc = start_running(harness, first, runtime)
    path = output_dir(harness, job_id) / "metrics.jsonl"
    path.write_text("".join(json.dumps({"_step": n, "x": n}) + "\n" for n in range(2)))
    poll(lambda: len(metric_steps(redis_conn, job_id)) == 2, timeout_s=10, what="two steps")
    first.detach_all()
    with open(path, "a") as handle:
        handle.write(json.dumps({"_step": 2, "x": 2}) + "\n")

    (container,) = runtime.list_managed("runtime-test-agent")
    second = harness.supervisor(runtime)
    second.adopt(container, alloc)
    poll(lambda: len(metric_steps(redis_conn, job_id)) == 3, timeout_s=10, what="the third step")
    end_container(runtime, job_id)
    harness.wait_for_end(job_id)
    second.wait_all(timeout_s=10)

    assert [s["_step"] for s in metric_steps(redis_conn, job_id)] == [0, 1, 2]


def test_a_requeued_job_starts_a_fresh_metrics_stream(harness, redis_conn):
    runtime = FakeRuntime()
    supervisor = harness.supervisor(runtime)
    record, alloc = harness.claimed_job(IMAGE, ["train"])
    redis_conn.xadd(Keys().job_metrics(record.id), {"m": json.dumps({"_step": 7, "old": 1})})
    runtime.program(record.id, FakeProgram(run_s=0.2))
    supervisor.start(record, alloc)
    harness.wait_for_end(record.id)
    supervisor.wait_all(timeout_s=10)

    assert metric_steps(redis_conn, record.id) == []


def test_a_requeued_job_whose_container_never_starts_keeps_no_steps_of_its_earlier_attempt(harness, redis_conn):
    runtime = FakeRuntime()
    supervisor = harness.supervisor(runtime)
    runtime.missing_images.add("nowhere/nothing:1")
    record, alloc = harness.claimed_job("nowhere/nothing:1", ["train"])
    redis_conn.xadd(Keys().job_metrics(record.id), {"m": json.dumps({"_step": 7, "old": 1})})
    supervisor.start(record, alloc)

    assert harness.wait_for_end(record.id)["reason"] == "image_pull_failed"
    supervisor.wait_all(timeout_s=10)
    assert metric_steps(redis_conn, record.id) == []
