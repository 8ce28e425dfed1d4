"""JobSupervisor on the FakeRuntime and a real Redis: every way a job can end, released exactly once."""

from __future__ import annotations

import json
import time

import pytest
from launchbay.agent.runtime_fake import FakeProgram, FakeRuntime
from test_runtime_support import RuntimeHarness, poll

IMAGE = "launchbay-test:fake"


@pytest.fixture
def harness(redis_conn, tmp_path):
    return RuntimeHarness(redis_conn, tmp_path, stop_grace_s=0.5)


@pytest.fixture
def runtime():
    return FakeRuntime()


@pytest.fixture
def supervisor(harness, runtime):
    sup = harness.supervisor(runtime)
    yield sup
    sup.wait_all(timeout_s=10)


def run_job(harness, supervisor, runtime, program=None, **job):
    record, alloc = harness.claimed_job(IMAGE, ["train"], **job)
    if program is not None:
        runtime.program(record.id, program)
    supervisor.start(record, alloc)
    return record.id


def test_a_job_that_exits_zero_is_finished_and_released_once(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, FakeProgram(output=["hello", "world"]))

    record = harness.wait_for_end(job_id)

    assert record["state"] == "finished"
    assert record["exit_code"] == 0
    assert record.get("reason") is None
    assert record["container"].startswith("fake")
    assert harness.log_entries(job_id) == [{"line": "hello"}, {"line": "world"}, {"eof": "finished"}]
    assert harness.releases[job_id] == 1
    assert runtime.containers == {}, "the container is removed once its end is recorded"
    # The job thread forgets the job just after the release the harness waited for.
    poll(lambda: job_id not in supervisor.running_job_ids(), timeout_s=5, what="the supervisor to forget the job")


def test_the_released_event_is_published_after_the_release(harness, supervisor, runtime, redis_conn):
    pubsub = redis_conn.pubsub()
    pubsub.subscribe(harness.keys.events)
    poll(lambda: pubsub.get_message(timeout=0.1), timeout_s=5, what="the subscription")

    run_job(harness, supervisor, runtime)

    message = poll(lambda: pubsub.get_message(timeout=0.1), timeout_s=10, what="a released event")
    assert json.loads(message["data"]) == {"type": "released", "agent": "runtime-test-agent"}
    pubsub.close()


def test_a_non_zero_exit_fails_with_the_code_and_the_last_line(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, FakeProgram(exit_code=3, output=["loss=nan", "giving up"]))

    record = harness.wait_for_end(job_id)

    assert (record["state"], record["reason"], record["exit_code"]) == ("failed", "exit_code", 3)
    assert record["message"] == "exited with code 3; last output: giving up"
    assert harness.log_lines(job_id)[-1] == "[launchbay] failed (exit_code): exited with code 3; last output: giving up"


def test_the_job_env_can_script_the_fake_container(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, env={"LAUNCHBAY_FAKE_EXIT_CODE": "5", "LAUNCHBAY_FAKE_RUN_S": "0"})

    assert harness.wait_for_end(job_id)["exit_code"] == 5


def test_an_oom_kill_fails_as_oom_killed(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, FakeProgram(oom=True), memory_mib=64)

    record = harness.wait_for_end(job_id)

    assert (record["state"], record["reason"], record["exit_code"]) == ("failed", "oom_killed", 137)
    assert "64 MiB" in record["message"]


def test_a_job_past_its_max_runtime_is_stopped_and_fails_as_timeout(harness, supervisor, runtime):
    began = time.monotonic()
    job_id = run_job(harness, supervisor, runtime, FakeProgram(run_s=60), max_runtime_s=1)

    record = harness.wait_for_end(job_id, timeout_s=10)

    assert (record["state"], record["reason"]) == ("failed", "timeout")
    assert time.monotonic() - began < 1 + 0.5 + 8  # prompt, not the 60 s the job asked for
    assert "max_runtime of 1 s" in record["message"]


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, FakeProgram(run_s=60, ignores_sigterm=True), max_runtime_s=1)

    record = harness.wait_for_end(job_id, timeout_s=10)

    assert (record["reason"], record["exit_code"]) == ("timeout", 137)


def test_cancel_stops_the_container_and_records_canceled_by_user(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, FakeProgram(run_s=60))
    harness.wait_for_state(job_id, "running")

    began = time.monotonic()
    supervisor.cancel(job_id)
    record = harness.wait_for_end(job_id, timeout_s=15)

    assert (record["state"], record["reason"]) == ("canceled", "canceled_by_user")
    assert time.monotonic() - began < 10  # prompt, not the 60 s the job asked for
    assert harness.log_entries(job_id)[-1] == {"eof": "canceled"}
    assert harness.releases[job_id] == 1


def test_a_cancel_requested_before_the_start_means_no_container(harness, supervisor, runtime, redis_conn):
    record, alloc = harness.claimed_job(IMAGE, ["train"])
    harness.records.update(record.id, cancel_requested="1")

    supervisor.start(record, alloc)
    ended = harness.wait_for_end(record.id)

    assert (ended["state"], ended["reason"]) == ("canceled", "canceled_by_user")
    assert runtime.removed == [] and runtime.containers == {}


def test_a_missing_image_fails_the_job_and_the_next_job_still_runs(harness, supervisor, runtime):
    runtime.missing_images.add("nowhere/nothing:1")
    record, alloc = harness.claimed_job("nowhere/nothing:1", ["train"])
    supervisor.start(record, alloc)

    failed = harness.wait_for_end(record.id)
    next_job = run_job(harness, supervisor, runtime)

    assert (failed["state"], failed["reason"]) == ("failed", "image_pull_failed")
    assert "nowhere/nothing:1" in failed["message"]
    assert harness.wait_for_end(next_job)["state"] == "finished"


def test_a_container_docker_refuses_to_start_fails_as_container_failed(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, FakeProgram(start_error='exec: "train": executable file not found'))

    record = harness.wait_for_end(job_id)

    assert (record["state"], record["reason"]) == ("failed", "container_failed")
    assert "executable file not found" in record["message"]
    assert harness.releases[job_id] == 1


def test_an_unknown_queue_fails_the_job_without_taking_the_supervisor_down(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, queue="gone")

    record = harness.wait_for_end(job_id)

    assert (record["state"], record["reason"]) == ("failed", "container_failed")
    assert harness.releases[job_id] == 1


def test_a_job_already_canceled_elsewhere_keeps_that_end(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, FakeProgram(run_s=0.5))
    harness.wait_for_state(job_id, "running")
    assert harness.records.transition(job_id, "failed", allowed_from=("running",), reason="agent_lost")

    poll(lambda: harness.releases[job_id], timeout_s=10, what="the release")

    assert harness.records.as_json(job_id)["reason"] == "agent_lost"
    assert harness.log_entries(job_id)[-1] == {"eof": "failed"}


def test_the_engine_going_away_with_the_container_fails_as_docker_unavailable(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, FakeProgram(run_s=60))
    harness.wait_for_state(job_id, "running")

    runtime.engine_down = True
    poll(lambda: runtime.refused_calls >= 2, timeout_s=5, what="the watcher to notice the outage")
    runtime.lose(runtime.container_for(job_id).container_id)
    runtime.engine_down = False
    record = harness.wait_for_end(job_id, timeout_s=15)

    assert (record["state"], record["reason"]) == ("failed", "docker_unavailable")
    assert "went away" in record["message"]


def test_a_short_engine_outage_does_not_end_a_running_job(harness, supervisor, runtime):
    job_id = run_job(harness, supervisor, runtime, FakeProgram(run_s=1.5, output=["one"]))
    harness.wait_for_state(job_id, "running")

    runtime.engine_down = True
    poll(lambda: runtime.refused_calls >= 2, timeout_s=5, what="the watcher to notice the outage")
    runtime.engine_down = False
    record = harness.wait_for_end(job_id, timeout_s=15)

    assert record["state"] == "finished"
    assert harness.log_lines(job_id) == ["one"], "the output is not copied twice after the outage"


def test_detach_leaves_the_container_and_a_new_supervisor_adopts_it(harness, runtime):
    first = harness.supervisor(runtime)
    record, alloc = harness.claimed_job(IMAGE, ["train"])
    runtime.program(record.id, FakeProgram(run_s=5.0, output=["a", "b"]))
    first.start(record, alloc)
    harness.wait_for_state(record.id, "running")
    poll(lambda: len(harness.log_lines(record.id)) == 2, timeout_s=5, what="the output")

    first.detach_all()
    assert first.running_job_ids() == set()
    assert harness.releases[record.id] == 0, "a detached job keeps its resources"
    (container,) = runtime.list_managed("runtime-test-agent")
    second = harness.supervisor(runtime)
    second.adopt(container, alloc)
    ended = harness.wait_for_end(record.id)

    assert ended["state"] == "finished"
    assert harness.log_entries(record.id) == [{"line": "a"}, {"line": "b"}, {"eof": "finished"}]
    assert harness.releases[record.id] == 1
    assert runtime.containers == {}


def test_an_adopted_container_of_a_job_that_ended_meanwhile_is_removed(harness, runtime):
    first = harness.supervisor(runtime)
    record, alloc = harness.claimed_job(IMAGE, ["train"])
    runtime.program(record.id, FakeProgram(run_s=60))
    first.start(record, alloc)
    harness.wait_for_state(record.id, "running")
    first.detach_all()
    harness.records.transition(record.id, "failed", allowed_from=("running",), reason="agent_lost")

    (container,) = runtime.list_managed("runtime-test-agent")
    harness.supervisor(runtime).adopt(container, alloc)
    poll(lambda: harness.releases[record.id], timeout_s=10, what="the release")

    assert harness.records.as_json(record.id)["reason"] == "agent_lost"
    assert runtime.containers == {}


def test_wait_all_returns_when_every_job_ended(harness, supervisor, runtime):
    ids = [run_job(harness, supervisor, runtime, FakeProgram(run_s=0.2)) for _ in range(3)]

    supervisor.wait_all(timeout_s=10)

    assert supervisor.running_job_ids() == set()
    assert all(harness.records.state(job_id).value == "finished" for job_id in ids)
    assert all(harness.releases[job_id] == 1 for job_id in ids)


def test_starting_the_same_job_twice_is_refused(harness, supervisor, runtime):
    record, alloc = harness.claimed_job(IMAGE, ["train"])
    runtime.program(record.id, FakeProgram(run_s=0.5))
    supervisor.start(record, alloc)

    with pytest.raises(ValueError, match="already running"):
        supervisor.start(record, alloc)


def test_an_engine_failing_before_the_container_starts_puts_the_job_back_not_failed(harness, runtime, redis_conn):
    """Issue 13, finding 5: the engine's fault is not the job's; it goes back to the front of its queue."""
    troubles = []
    supervisor = harness.supervisor(runtime, engine_trouble=troubles.append)
    runtime.engine_down = True
    job_id = run_job(harness, supervisor, runtime)
    poll(lambda: harness.releases[job_id], timeout_s=15, what="the job to be released")
    supervisor.wait_all(timeout_s=10)

    record = harness.records.as_json(job_id)
    assert record["state"] == "queued", record
    assert record.get("reason") is None and record.get("agent") is None
    assert harness.releases[job_id] == 1
    assert troubles and "cannot be reached" in troubles[0]
    assert any("put back in its queue" in line for line in harness.log_lines(job_id))
    assert runtime.containers == {}
