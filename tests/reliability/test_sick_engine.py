"""Issue 13, finding 5: a half-sick Docker engine must not turn the agent into a black hole.

The engine is a fake (``fake_docker.FakeDockerSocket``): a unix socket that answers some Docker API
calls and hangs on the others, as the sick engines of the issue did. Each test measures how long
the agent took to say so; docs/reliability.md ("A sick Docker engine") quotes the figures.

Before the fix the agent trusted ``/_ping`` alone: (a) it kept claiming jobs that each waited 120 s
and then failed ``docker_unavailable``; (b) it said ``healthy`` and claimed nothing; (c) it stayed
``starting`` for 2 minutes and took 112 s to stop on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from fake_docker import FakeDockerSocket
from reliability_helpers import FAST_BEATS, AgentProcess, cli, make_queue, put_job, record, wait_for

pytestmark = [pytest.mark.integration]

#: Generous for a loaded 2-core CI machine; the figures measured are far below (docs/reliability.md).
SAYS_SO_WITHIN_S = 20.0
STOPS_WITHIN_S = 10.0


@pytest.fixture
def socket_dir():
    folder = Path(tempfile.mkdtemp(prefix="lb-fake-docker-", dir="/tmp"))  # unix socket paths are short
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def engine(socket_dir):
    engines = []

    def make(*answers: str) -> FakeDockerSocket:
        engines.append(FakeDockerSocket(socket_dir / "docker.sock", answers=answers))
        return engines[-1]

    yield make
    for fake in engines:
        fake.close()


@pytest.fixture
def agents():
    started = []
    yield started
    for agent in started:
        if agent.running:
            agent.proc.kill()
            agent.proc.wait(30)


def start_agent(agents, redis_url: str, tmp_path: Path, fake: FakeDockerSocket, agent_id: str) -> AgentProcess:
    args = ["--redis-url", redis_url, "--agent-id", agent_id, "--state-dir", str(tmp_path / agent_id), "-q", "sick"]
    env = {**os.environ, **FAST_BEATS, "LAUNCHBAY_AGENT_DOCKER_HOST": fake.url}
    agent = AgentProcess(agent_id, args, env, tmp_path / f"{agent_id}.log").start()
    agents.append(agent)
    return agent


def agent_entry(redis_url: str, agent_id: str) -> Optional[Dict[str, Any]]:
    listed = cli(redis_url, "agents", "--json")
    assert listed.returncode == 0, listed.stderr
    return next((a for a in json.loads(listed.stdout) if a["agent_id"] == agent_id), None)


def unhealthy(redis_url: str, agent_id: str, because: str = "did not answer within") -> Optional[Dict[str, Any]]:
    """The agent's entry once it says ``unhealthy`` with a Docker problem that contains ``because``."""
    entry = agent_entry(redis_url, agent_id)
    ok = entry and entry["status"] == "unhealthy" and because in (entry.get("docker_problem") or "")
    return entry if ok else None


def sigterm_exit_s(agent: AgentProcess) -> float:
    began = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    agent.proc.wait(60)
    return time.monotonic() - began


def test_an_engine_that_hangs_on_image_inspect_makes_the_agent_unhealthy_and_fails_no_job(
    redis_url, redis_conn, tmp_path, engine, agents
):
    fake = engine("ping", "version", "list")
    make_queue(redis_conn, "sick")
    jobs = [put_job(redis_conn, "sick") for _ in range(3)]
    began = time.monotonic()
    agent = start_agent(agents, redis_url, tmp_path, fake, "sick-inspect")
    entry = wait_for(
        lambda: unhealthy(redis_url, "sick-inspect", "image inspect"), timeout_s=SAYS_SO_WITHIN_S, what=agent.output()
    )
    print(f"\nengine hanging on image inspect: unhealthy after {time.monotonic() - began:.1f} s")
    assert "image inspect did not answer" in entry["docker_problem"]
    assert "image inspect did not answer" in cli(redis_url, "agents").stdout

    stopped_in = sigterm_exit_s(agent)
    print(f"engine hanging on image inspect: SIGTERM ended the agent in {stopped_in:.1f} s")
    assert stopped_in < STOPS_WITHIN_S
    records = [record(redis_conn, job_id) for job_id in jobs]
    assert sum(int(r.get("attempts") or 0) for r in records) <= 1, records  # claimed at most one
    assert [r["state"] for r in records] == ["queued"] * 3, records  # none failed, none kept
    assert ("POST", "/containers/create") not in fake.calls  # no container was ever made for a job


def test_an_engine_that_answers_only_ping_makes_the_agent_unhealthy_and_it_claims_nothing(
    redis_url, redis_conn, tmp_path, engine, agents
):
    fake = engine("ping")
    make_queue(redis_conn, "sick")
    job_id = put_job(redis_conn, "sick")
    began = time.monotonic()
    agent = start_agent(agents, redis_url, tmp_path, fake, "sick-ping")
    entry = wait_for(lambda: unhealthy(redis_url, "sick-ping"), timeout_s=SAYS_SO_WITHIN_S, what=agent.output())
    print(f"\nengine answering only ping: unhealthy after {time.monotonic() - began:.1f} s: {entry['docker_problem']}")
    assert "did not answer within" in entry["docker_problem"]
    assert entry["docker"] == "down"
    stopped_in = sigterm_exit_s(agent)
    print(f"engine answering only ping: SIGTERM ended the agent in {stopped_in:.1f} s")
    assert stopped_in < STOPS_WITHIN_S
    assert (record(redis_conn, job_id)["state"], record(redis_conn, job_id).get("attempts") or 0) == ("queued", 0)


def test_an_engine_that_answers_nothing_is_reported_at_start_up_and_sigterm_stops_the_agent(
    redis_url, redis_conn, tmp_path, engine, agents
):
    fake = engine()
    make_queue(redis_conn, "sick")
    began = time.monotonic()
    agent = start_agent(agents, redis_url, tmp_path, fake, "sick-silent")
    wait_for(
        lambda: "the Docker engine is not fit to run jobs" in agent.output(),
        timeout_s=SAYS_SO_WITHIN_S,
        what=agent.output(),
    )
    said_in = time.monotonic() - began
    print(f"\nsilent engine: start-up said so after {said_in:.1f} s")
    assert "did not answer within" in agent.output()
    entry = wait_for(lambda: unhealthy(redis_url, "sick-silent"), timeout_s=SAYS_SO_WITHIN_S, what=agent.output())
    assert entry["docker"] == "down"
    stopped_in = sigterm_exit_s(agent)
    print(f"silent engine: SIGTERM ended the agent in {stopped_in:.1f} s")
    assert stopped_in < STOPS_WITHIN_S
    assert agent.proc.returncode == 0, agent.output()
