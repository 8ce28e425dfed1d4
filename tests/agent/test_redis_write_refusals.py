"""A Redis that is up but takes no writes (NOREPLICAS, READONLY, MASTERDOWN: a failover, or
``min-replicas-to-write`` unmet) is waited out by the agent, like a Redis that does not answer:
the job's end and its log lines are recorded once writes are accepted again, not dropped."""

from __future__ import annotations

import logging

import pytest
import redis
from conftest import RedisServer
from launchbay.agent.logs import JobLog
from launchbay.agent.runtime_fake import FakeProgram, FakeRuntime
from test_runtime_support import RuntimeHarness, poll

pytestmark = pytest.mark.integration


@pytest.fixture
def refusing_redis(tmp_path, redis_server):  # redis_server: skips (or fails in CI) without redis-server
    """A private redis-server (its settings are changed) and a switch that makes it refuse writes."""
    server = RedisServer(tmp_path / "redis").start()
    conn = redis.Redis(port=server.port)

    def refuse(on: bool) -> None:
        # No replica is connected, so with min-replicas-to-write 1 every write gets NOREPLICAS.
        conn.config_set("min-replicas-to-write", 1 if on else 0)

    yield conn, refuse
    server.stop()


def test_a_job_that_ends_while_redis_refuses_writes_is_recorded_once_it_accepts_them(refusing_redis, tmp_path, caplog):
    conn, refuse = refusing_redis
    harness = RuntimeHarness(conn, tmp_path)
    runtime = FakeRuntime()
    supervisor = harness.supervisor(runtime)
    record, alloc = harness.claimed_job("launchbay-test:fake", ["train"])
    job_id = record.id
    runtime.program(job_id, FakeProgram(run_s=600, output=["step 1"]))
    supervisor.start(record, alloc)
    poll(lambda: harness.log_lines(job_id) == ["step 1"], timeout_s=30, what="the job's output in its log")
    caplog.set_level(logging.WARNING, logger="launchbay.agent")

    refuse(True)
    runtime.finish(job_id)
    poll(lambda: "takes no writes" in caplog.text, timeout_s=30, what="the agent to meet the refusal")
    assert harness.records.as_json(job_id)["state"] == "running" and not harness.releases[job_id]
    refuse(False)

    ended = harness.wait_for_end(job_id, timeout_s=60)
    assert (ended["state"], ended["exit_code"]) == ("finished", 0)
    assert harness.log_entries(job_id) == [{"line": "step 1"}, {"eof": "finished"}]
    assert harness.releases[job_id] == 1
    assert runtime.containers == {}, "the container is removed once its end is recorded"
    assert "cannot record its end" not in caplog.text
    supervisor.wait_all(timeout_s=10)


def test_log_lines_written_while_redis_refuses_writes_reach_the_stream_once_it_accepts_them(
    refusing_redis, tmp_path, caplog
):
    conn, refuse = refusing_redis
    caplog.set_level(logging.WARNING, logger="launchbay.agent")
    log = JobLog(conn, "t:log", tmp_path / "logs" / "j.log", cap_bytes=1 << 20)
    log.add_line("before")
    log.flush()

    refuse(True)
    log.add_line("during")
    poll(lambda: "cannot write the log stream t:log" in caplog.text, timeout_s=30, what="the refused write")
    refuse(False)
    log.close(eof="finished")

    entries = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in conn.xrange("t:log")]
    assert entries == [{"line": "before"}, {"line": "during"}, {"eof": "finished"}]
    assert "lines are lost" not in caplog.text
