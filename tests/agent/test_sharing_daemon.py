"""Preemption and fair share through the real agent loop, real Redis and the fake runtime.

(The same end to end with real Docker and agents as processes is tests/agent/test_e2e_sharing.py.)
"""

from __future__ import annotations

import threading
from typing import List

import pytest
from launchbay.agent.daemon import Agent
from launchbay.agent.runtime_fake import FakeProgram, FakeRuntime
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from test_control_support import agent_settings, make_queue, put_job, record, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def run_agent(redis_conn):
    agents: List[Agent] = []

    def start(settings, runtime):
        agent = Agent(settings, conn=redis_conn, runtime=runtime)
        threading.Thread(target=agent.run, daemon=True).start()
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.request_stop(drain=False)
        agent.supervisor.detach_all()


def test_a_high_job_preempts_the_two_youngest_low_jobs_which_run_again(redis_conn, tmp_path, run_agent, monkeypatch):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "h200x4")
    make_queue(redis_conn, preemption={"enabled": True, "grace": 1})
    runtime = FakeRuntime(default=FakeProgram(run_s=0.5))
    old = put_job(redis_conn, gpus=1, priority="low", env={"LAUNCHBAY_FAKE_RUN_S": "30"})
    run_agent(agent_settings(tmp_path), runtime)
    wait_for(lambda: record(redis_conn, old).get("state") == "running", what="the first low job runs")
    young = [put_job(redis_conn, gpus=1, priority="low", env={"LAUNCHBAY_FAKE_RUN_S": "3"}) for _ in range(2)]
    wait_for(lambda: all(record(redis_conn, j).get("state") == "running" for j in young), what="low jobs run")
    urgent = put_job(redis_conn, gpus=3, priority="high")  # 1 GPU free of 4: two victims make room
    wait_for(lambda: record(redis_conn, urgent).get("state") == "finished", what="the high job ran")
    for job_id in young:
        wait_for(lambda: record(redis_conn, job_id).get("state") == "finished", what="the victim ran again")  # noqa: B023
        rec = record(redis_conn, job_id)
        assert rec["attempts"] == 2 and rec["preemptions"] == 1 and rec.get("reason") is None
        assert rec["starting_at"] > record(redis_conn, urgent)["starting_at"]  # the room went to the high job
    assert record(redis_conn, old).get("attempts") == 1  # the oldest one was spared


def test_the_user_with_less_usage_starts_before_a_flooding_user(redis_conn, tmp_path, run_agent):
    make_queue(redis_conn)
    records = Records(redis_conn, Keys())
    flood = [put_job(redis_conn, cpus=1) for _ in range(12)]
    steady = [put_job(redis_conn, cpus=1) for _ in range(3)]
    for job_id in flood:
        records.update(job_id, submitter="ann")
    for job_id in steady:
        records.update(job_id, submitter="bob")
    run_agent(agent_settings(tmp_path, max_jobs=1), FakeRuntime(default=FakeProgram(run_s=0.1)))
    wait_for(lambda: all(record(redis_conn, j).get("state") == "finished" for j in flood + steady), timeout_s=60)
    started = {j: float(record(redis_conn, j)["starting_at"]) for j in flood + steady}
    sixth = sorted(started[j] for j in flood)[5]
    assert all(started[j] < sixth for j in steady)
