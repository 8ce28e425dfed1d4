"""Work an agent was killed in the middle of, finished deterministically (the chaos test finds these
windows only by chance): an end recorded but not mirrored, job folders left behind, and log lines
written while Redis was away."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from conftest import RedisServer
from launchbay.agent import logs
from launchbay.agent.daemon import Agent
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.runtime_fake import FakeRuntime
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.job import State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from reliability_helpers import agent_settings, eof_entries, log_lines, make_queue, put_job

pytestmark = pytest.mark.integration

AGENT_ID = "restarted"


def _ended_but_not_mirrored(conn, job_id: str) -> None:
    """What an agent leaves when SIGKILL hits between the end's transition and the rest of the end."""
    records = Records(conn, Keys())
    rq_bridge.rq_queue(conn, "rel").remove(job_id)  # the claim took it out of the RQ queue
    entry = LedgerEntry(job_id=job_id, queue="rel", cpus=0.0, memory_mib=0, gpus=(), claimed_at=time.time())
    conn.hset(Keys().agent_ledger(AGENT_ID), job_id, entry.to_json())
    assert records.transition(job_id, State.STARTING, allowed_from=[State.QUEUED], agent=AGENT_ID, attempts=1)
    records.update(job_id, rq_execution=rq_bridge.mark_started(conn, job_id, worker_name=AGENT_ID))
    assert records.transition(job_id, State.RUNNING, allowed_from=[State.STARTING], container="gone-now")
    conn.xadd(Keys().job_log(job_id), {"line": "the job's only line"})
    assert records.transition(job_id, State.FINISHED, allowed_from=[State.RUNNING], exit_code=0)


def test_an_agent_killed_right_after_recording_an_end_completes_it_and_cleans_up_when_it_starts_again(
    redis_conn, tmp_path
):
    make_queue(redis_conn, "rel")
    job_id = put_job(redis_conn, "rel")
    _ended_but_not_mirrored(redis_conn, job_id)
    settings = agent_settings(tmp_path, agent_id=AGENT_ID, queues=["rel"])
    stale = [settings.state_dir / "jobs" / name / "inputs" for name in (job_id, "an-older-job")]
    for folder in stale:
        folder.mkdir(parents=True)
        (folder / "run_config.json").write_text("{}")
    assert rq_bridge.fetch(redis_conn, job_id).get_status() == "started"

    assert Agent(settings, conn=redis_conn, runtime=FakeRuntime()).run(once=True) == 0

    assert rq_bridge.fetch(redis_conn, job_id).get_status() == "finished", "rq info no longer shows it started"
    assert log_lines(redis_conn, job_id) == ["the job's only line"]
    assert eof_entries(redis_conn, job_id) == ["finished"]
    assert redis_conn.ttl(Keys().job(job_id)) > 0 and redis_conn.ttl(Keys().job_log(job_id)) > 0
    assert redis_conn.hlen(Keys().agent_ledger(AGENT_ID)) == 0
    assert list((settings.state_dir / "jobs").iterdir()) == []


def test_a_job_that_ends_normally_has_its_record_and_log_expire_with_rqs_copy(redis_conn, tmp_path):
    make_queue(redis_conn, "rel")
    job_id = put_job(redis_conn, "rel")
    settings = agent_settings(tmp_path, agent_id=AGENT_ID, queues=["rel"])
    assert Agent(settings, conn=redis_conn, runtime=FakeRuntime()).run(once=True) == 0
    assert Records(redis_conn, Keys()).state(job_id) == State.FINISHED
    assert 0 < redis_conn.ttl(Keys().job(job_id)) <= rq_bridge.RESULT_TTL_S
    assert 0 < redis_conn.ttl(Keys().job_log(job_id)) <= rq_bridge.RESULT_TTL_S


@pytest.fixture
def restartable_redis(tmp_path, redis_server):
    server = RedisServer(tmp_path / "r", "--appendonly", "yes").start()
    yield server
    server.stop()


def test_log_lines_written_while_redis_is_away_wait_in_bounded_memory_and_arrive_once_it_is_back(
    restartable_redis, tmp_path, monkeypatch
):
    monkeypatch.setattr(logs, "MAX_PENDING_CHARS", 4000)
    conn = redis.Redis.from_url(restartable_redis.url)
    job_log = logs.JobLog(conn, "launchbay:job:away:log", tmp_path / "away.log", cap_bytes=1 << 20)
    lines = [f"line {i:04d} " + "x" * 90 for i in range(400)]  # about 40,000 characters
    restartable_redis.stop()
    producer = threading.Thread(target=lambda: [job_log.add_line(line) for line in lines], daemon=True)
    producer.start()
    pending_seen = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        pending_seen.append(job_log._pending_chars)
        time.sleep(0.05)
    blocked = producer.is_alive()

    restartable_redis.start()
    producer.join(30)
    job_log.close(eof="finished")

    assert blocked, "with Redis away and the buffer full, the reader waits instead of holding everything"
    assert max(pending_seen) <= 4000 + 2 * len(lines[0])
    written = [f[b"line"].decode() for _, f in conn.xrange("launchbay:job:away:log") if b"line" in f]
    assert written == lines, "every line once, in order"
    assert (tmp_path / "away.log").read_text().splitlines() == lines
