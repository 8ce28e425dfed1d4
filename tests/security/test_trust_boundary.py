"""Issue 23: what a submitter writes in her own job records is input, never authority.

Every attack here is done as docs/security.md's submitter role allows: ``alice`` logs in to Redis
as herself (``launchbay acl``'s rules) and rewrites fields of her own ``alice_*`` job hashes
straight in Redis, behind the client. A real agent (in a thread, logged in as the agent role, with
the fake container runtime: Docker adds nothing to what the agent believes) then runs the queue.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List

import pytest
import redis
from launchbay.agent.runtime_fake import FakeProgram, FakeRuntime
from launchbay.client import adhoc_spec, enqueue
from launchbay.queue_config import usage
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore
from security_helpers import cli, wait_for
from test_control_support import agent_settings
from test_daemon import AgentThread
from test_redis_roles import ROOT_PASSWORD, conn_of, roles_redis, url_of  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration]

KEYS = Keys()


def _root(server) -> redis.Redis:
    return redis.Redis(port=server.port, username="root", password=ROOT_PASSWORD)


def _states(root: redis.Redis, job_ids: List[str]) -> Dict[str, Dict[str, Any]]:
    fields = ("state", "reason", "message")
    return {j: dict(zip(fields, (v.decode() if v else None for v in root.hmget(KEYS.job(j), fields)))) for j in job_ids}


@pytest.fixture
def agent_of(tmp_path):
    started: List[AgentThread] = []

    def start(server, program: FakeProgram) -> AgentThread:
        settings = agent_settings(tmp_path, queues=["sec"], poll_interval_s=0.2)
        started.append(AgentThread(conn_of(server, "launchbay-agent"), settings, FakeRuntime(default=program)))
        return started[-1]

    yield start
    for agent in started:
        agent.stop(timeout_s=30)


def _alice_jobs(server, count: int, **kwargs: Any) -> List[str]:
    alice = conn_of(server, "alice")
    return [enqueue(adhoc_spec("x:1", ["true"]), "sec", conn=alice, **kwargs).id for _ in range(count)]


def test_a_forged_submitter_neither_escapes_a_quota_of_one_nor_bills_another_user(roles_redis, agent_of):  # noqa: F811
    admin = conn_of(roles_redis, "launchbay-admin")
    QueueStore(admin, KEYS).apply(
        QueueConfig.model_validate({"name": "sec", "quotas": {"default": {"jobs": 1}}, "fair_share": {}})
    )
    jobs = _alice_jobs(roles_redis, 4, resources={"cpus": 1})
    alice = conn_of(roles_redis, "alice")
    for job_id, other in zip(jobs[1:], ("bob", "carol", "dave")):
        alice.hset(KEYS.job(job_id), "submitter", other)  # her own hash: the role allows it
    root = _root(roles_redis)
    agent_of(roles_redis, FakeProgram(run_s=1.5))

    wait_for(lambda: _states(root, jobs[:1])[jobs[0]]["state"] == "running", what="alice's first job running")
    alice.hset(KEYS.job(jobs[0]), "submitter", "bob")  # while it runs: bill its time to bob
    waits = wait_for(lambda: root.hget(KEYS.job(jobs[1]), "pending_detail"), what="a pending reason for a forged job")
    assert waits.decode().startswith("over alice's quota"), waits  # the reason names whose quota holds it
    running = []
    for _ in range(20):  # a second of claim passes: never more than her quota at once
        running.append(sum(s["state"] in ("starting", "running") for s in _states(root, jobs).values()))
        time.sleep(0.05)
    assert max(running) == 1, running
    # What everyone is shown: whose the job is by its key, not the rewritten field.
    shown = json.loads(cli(url_of(roles_redis, "bob"), "status", jobs[1], "--json").stdout)
    assert shown["submitter"] == "alice", shown
    listed = cli(url_of(roles_redis, "bob"), "list", "--user", "bob", "--json")
    assert json.loads(listed.stdout or "[]") == [], listed.stdout

    wait_for(lambda: all(s["state"] in ("finished", "failed") for s in _states(root, jobs).values()), timeout_s=30)
    ended = _states(root, jobs)
    assert ended[jobs[0]]["state"] == "finished"
    for job_id in jobs[1:]:  # claimed in turn under alice's quota, and refused: the field is not believed
        assert ended[job_id]["reason"] == "refused", ended[job_id]
        assert "its id belongs to 'alice'" in ended[job_id]["message"]
    billed = usage.read(root, KEYS, "sec", now=time.time(), half_life_s=86400)
    assert set(billed) == {"alice"} and billed["alice"]["cpu_s"] > 1.0, billed


HOSTILE = [
    ("request", lambda r: {**r, "gpus": 4}, "gpus: requested 4, queue 'sec' allows at most 1"),
    ("spec", lambda s: {**s, "docker": {"privileged": True}}, "docker option 'privileged' may not be set"),
    ("max_runtime_s", lambda _: None, "max_runtime: none, queue 'sec' allows at most 3600 s"),
    ("priority", lambda _: "urgent", "priority 'urgent' is none of high, normal, low"),
    ("run_config", lambda _: {"token": "${secret:HF}"}, "a secret reference is allowed only in a field"),
    ("run_config", lambda _: {"lr": float("inf")}, "overrides"),
    ("run_config", lambda _: {"epochs": 3}, "key 'epochs' is under no include prefix (lr)"),
    ("request", lambda r: {**r, "memory_mib": 0}, "its request leaves out memory_mib = 256, queue 'sec'"),
]


def test_a_claimed_record_rewritten_after_enqueue_is_refused_and_nothing_else_is_touched(
    roles_redis,  # noqa: F811
    agent_of,
    monkeypatch,
):
    monkeypatch.setenv("HF_TOKEN_T23", "t23-secret-value")  # the agent in this process reads the queue's secret
    admin = conn_of(roles_redis, "launchbay-admin")
    QueueStore(admin, KEYS).apply(
        QueueConfig.model_validate(
            {
                "name": "sec",
                "limits": {"gpus": 1, "max_runtime": "1h"},
                "default_resources": {"memory": "256MiB"},
                "secrets": {"HF": {"env": "HF_TOKEN_T23"}},
            }
        )
    )
    # What the job's last run recorded (an agent writes it): the overrides it accepts.
    QueueStore(conn_of(roles_redis, "launchbay-agent"), KEYS).record_inputs(
        "x-1", {"run_config": {"include": ["lr"]}}, "r"
    )
    jobs = _alice_jobs(roles_redis, len(HOSTILE) + 1)
    alice = conn_of(roles_redis, "alice")
    for job_id, (field, change, _) in zip(jobs, HOSTILE):
        stored = alice.hget(KEYS.job(job_id), field)
        value = change(json.loads(stored) if field != "priority" else stored)
        if value is None:
            alice.hdel(KEYS.job(job_id), field)
        else:
            alice.hset(KEYS.job(job_id), field, value if isinstance(value, str) else json.dumps(value))
    root = _root(roles_redis)
    agent_of(roles_redis, FakeProgram(run_s=0.05))

    wait_for(lambda: all(s["state"] in ("finished", "failed") for s in _states(root, jobs).values()), timeout_s=30)
    ended = _states(root, jobs)
    for job_id, (field, _, expected) in zip(jobs, HOSTILE):
        assert ended[job_id]["reason"] == "refused", (field, ended[job_id])
        assert expected in ended[job_id]["message"], (field, ended[job_id]["message"])
    assert ended[jobs[-1]]["state"] == "finished", ended[jobs[-1]]  # the untouched job beside them runs
    assert [j for j in jobs[:-1] if root.hget(KEYS.job(j), "container")] == [], "a refused job got a container"
