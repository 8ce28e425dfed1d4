"""Issue 13, finding 10 (the smaller ones): each fails on the code before the fix.

- a job's terminal escape sequences reach ``launchbay status`` as text, not as commands;
- a queue config in Redis that is not JSON is one line from enqueue and ``queue list/show``;
- one malformed ledger entry does not stop claims, and the agent says so in its health;
- per-job log files are pruned once their job's record has expired;
- the launch form refuses JSON deeper and forms larger than the CLI accepts.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from launchbay.agent.claim import Claimer
from launchbay.agent.heartbeat import AgentStatus, Heartbeat
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.log_files import LOG_FILE_RETENTION_S
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity
from launchbay.ui.app import create_app
from security_helpers import AgentFleet, cli, make_queue, put_job
from test_control_support import agent_settings

pytestmark = [pytest.mark.integration]

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31mred"


def test_status_shows_a_jobs_escape_sequences_as_text(redis_url, redis_conn):
    make_queue(redis_conn, "sec")
    job_id = put_job(redis_conn, "sec")
    redis_conn.hset(Keys().job(job_id), mapping={"message": ESCAPES, "name": "n\x1b[8m"})
    shown = cli(redis_url, "status", job_id)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "\\x1b]0;owned\\x07" in shown.stdout.replace("\n", "")


def test_a_queue_config_that_is_not_json_is_one_line_everywhere(redis_url, redis_conn, tmp_path):
    make_queue(redis_conn, "sec")
    redis_conn.hset(Keys().queue("sec"), "config", "{not json")
    spec = tmp_path / "job.yaml"
    spec.write_text("name: t\nimage: x:1\n")
    for args in (["enqueue", str(spec), "-q", "sec"], ["queue", "list"], ["queue", "show", "sec"]):
        result = cli(redis_url, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr == "error: queue 'sec' as stored (re-apply its file): its config in Redis is not JSON\n"


def test_a_malformed_ledger_entry_is_skipped_by_claims_and_shown_in_the_agents_health(redis_url, redis_conn, tmp_path):
    make_queue(redis_conn, "default")
    redis_conn.hset(Keys().agent_ledger("agent-a"), "planted", "{not json")
    job_id = put_job(redis_conn, "default", cpus=1)
    claimer = Claimer(redis_conn, Keys(), agent_id="agent-a", host="host-a")
    entry = LedgerEntry(job_id, "default", 1.0, 0, (), claimed_at=time.time())
    assert claimer.claim(entry, Capacity(cpus=4.0, memory_mib=1024, slots=4, gpus=())).claimed

    # No beat follows this one: its TTL must outlast two CLI start-ups on a loaded 2-core machine.
    settings = agent_settings(tmp_path, heartbeat_ttl_s=30.0)
    beat = Heartbeat(
        redis_conn, Keys(), settings, status=AgentStatus(state="healthy"), capacity=lambda: {}, counters=lambda: {}
    )
    beat.beat()
    shown = cli(redis_url, "agents", "--json")
    assert json.loads(shown.stdout)[0]["ledger_problem"] == "unreadable ledger entries skipped: planted"
    assert "unreadable ledger entries skipped: planted" in cli(redis_url, "agents").stdout.replace("\n", " ")


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client)
    yield fleet
    fleet.close()


def test_an_agent_prunes_the_log_files_of_jobs_whose_records_expired(redis_conn, fleet):
    make_queue(redis_conn, "sec")
    logs = fleet.state_dir("pruner") / "logs"
    logs.mkdir(parents=True)
    old, fresh = logs / "old-job.log", logs / "fresh-job.log"
    for path in (old, fresh):
        path.write_text("output\n")
    expired = time.time() - LOG_FILE_RETENTION_S - 60
    os.utime(old, (expired, expired))

    agent = fleet.start("pruner", "--once", queues=("sec",))
    assert agent.proc.wait(120) == 0, agent.output()
    assert not old.exists() and fresh.exists()


def test_the_launch_form_refuses_json_deeper_and_forms_larger_than_the_cli(redis_conn):
    make_queue(redis_conn, "sec")
    enqueue({"name": "trainer", "image": "x:1"}, "sec", conn=redis_conn)  # known, not run: a JSON field
    client = create_app(redis_conn, keys=Keys()).test_client()
    deep = {"queue": "sec", "image": "x:1", "run_config:": '{"a": ' + "[" * 900 + "]" * 900 + "}"}
    refused = client.post("/launch/trainer", data=deep, headers={"Origin": "http://localhost"})
    assert refused.status_code == 422
    assert "nested deeper than 100 levels" in refused.get_data(as_text=True)

    huge = {"queue": "sec", "image": "x:1", "run_config:": '{"a": "' + "x" * (40 << 20) + '"}'}
    too_large = client.post("/launch/trainer", data=huge, headers={"Origin": "http://localhost"})
    assert too_large.status_code == 413
    assert redis_conn.zcard(Keys().queue_jobs("sec")) == 1  # only the first
