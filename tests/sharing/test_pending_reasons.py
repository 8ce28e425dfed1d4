"""Why a job waits, end to end: real Redis, ``launchbay agent`` processes, ``launchbay status --json``.

The first tests start no container (an agent that could never run the job, a queue no agent
serves, a paused queue); the last runs two ``sleep`` containers to hold GPUs, so it takes the
Docker lock like every container test. GPUs come from the stand-in nvidia-smi (h200x4, the agent
hands out two of them) in ``env_only`` mode.
"""

from __future__ import annotations

import os

import pytest
from launchbay.client import adhoc_spec, enqueue
from launchbay.queue_config.models import QueueConfig, parse_model
from launchbay.queue_config.store import QueueStore
from sharing_helpers import AgentFleet, cli, status_json, wait_for

pytestmark = [pytest.mark.integration]

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "agent", "fixtures")
GPU_ENV = {"PATH": f"{FIXTURES}{os.pathsep}{os.environ.get('PATH', '')}", "LAUNCHBAY_FAKE_NVIDIA_SMI": "h200x4"}


def apply(conn, name: str, **config) -> None:
    QueueStore(conn).apply(parse_model(QueueConfig, {"name": name, **config}, source=name))


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    agents = AgentFleet(redis_url, tmp_path, docker_client)
    yield agents
    agents.close()


def reason(redis_url: str, job_id: str, code: str, timeout_s: float = 30):
    return wait_for(
        lambda: (s := status_json(redis_url, job_id))["pending_reason"] == code and s,
        timeout_s=timeout_s,
        what=f"job {job_id} to wait with reason {code}",
    )


def test_no_agent_paused_and_never_fits(redis_conn, redis_url, fleet):
    apply(redis_conn, "nobody")
    apply(redis_conn, "cpuq")
    lonely = enqueue(adhoc_spec("busybox", ["true"]), "nobody", conn=redis_conn, user="carol").id
    status = reason(redis_url, lonely, "no_agent")
    assert status["pending_detail"] == "no live agent serves queue nobody"
    assert status["estimated_start"] is None and status["submitter"] == "carol"

    agent = fleet.start("cpu-only", queues=("cpuq",))  # no nvidia-smi on PATH: no GPUs
    agent.wait_serving()
    big = enqueue(adhoc_spec("busybox", ["true"]), "cpuq", conn=redis_conn, resources={"gpus": "A100:2"}).id
    status = reason(redis_url, big, "never_fits")
    assert "cpu-only" in status["pending_detail"] and "needs 2 GPU(s) matching 'A100'" in status["pending_detail"]
    assert status["state"] == "queued" and status["estimated_start"] is None

    assert cli(redis_url, "queue", "pause", "cpuq").returncode == 0
    status = reason(redis_url, big, "paused")
    assert "launchbay queue resume cpuq" in status["pending_detail"]
    assert cli(redis_url, "queue", "resume", "cpuq").returncode == 0
    reason(redis_url, big, "never_fits")

    listed = cli(redis_url, "list", "--user", "carol")
    assert lonely in listed.stdout and big not in listed.stdout and "no_agent" in listed.stdout


@pytest.mark.docker
def test_quota_resources_reserved_and_priority(redis_conn, redis_url, fleet, base_image):
    apply(redis_conn, "share", docker={"gpu_mode": "env_only"}, quotas={"users": {"alice": {"gpus": 1}}})
    env = {**GPU_ENV, "LAUNCHBAY_AGENT_RESERVE_AFTER_S": "0"}
    fleet.start("gpu-a", "--gpus", "0,1", queues=("share",), env=env).wait_serving()

    def job(user: str, gpus: int, **kwargs):
        spec = adhoc_spec(base_image, ["sleep", "300"])
        return enqueue(spec, "share", conn=redis_conn, resources={"gpus": gpus}, user=user, **kwargs)

    first = job("alice", 1, max_runtime="10m").id
    running = wait_for(lambda: (s := status_json(redis_url, first))["state"] == "running" and s, timeout_s=60)
    over = job("alice", 1)
    assert any("alice is at their quota" in note for note in over.notes), over.notes
    assert "gpus: 1 in use + 1 asked > quota 1" in reason(redis_url, over.id, "quota")["pending_detail"]

    wide = job("bob", 2).id  # both GPUs: waits for alice's first job, which ends within 10 minutes
    status = reason(redis_url, wide, "resources")
    assert "gpu-a has 1/2 GPUs busy" in status["pending_detail"] and first in status["pending_detail"]
    assert abs(status["estimated_start"] - (running["starting_at"] + 600)) < 2

    small = job("bob", 1).id  # one GPU is free, but held for the wide job ahead (no max runtime to backfill)
    status = reason(redis_url, small, "reserved")
    assert wide in status["pending_detail"]
    assert status_json(redis_url, over.id)["pending_reason"] == "quota"

    urgent = job("dave", 2, priority="high").id
    reason(redis_url, urgent, "resources")
    status = reason(redis_url, wide, "priority")
    assert urgent in status["pending_detail"]
    listed = cli(redis_url, "list", "-q", "share", "--json")
    by_id = {r["id"]: r for r in __import__("json").loads(listed.stdout)}
    assert by_id[small]["pending_reason"] == "priority" and by_id[first]["submitter"] == "alice"
    for job_id in (first, over.id, wide, small, urgent):
        cli(redis_url, "cancel", job_id)


@pytest.mark.docker
def test_two_agent_processes_never_run_more_than_a_users_quota(redis_conn, redis_url, fleet, base_image):
    apply(redis_conn, "race", docker={"gpu_mode": "env_only"}, quotas={"default": {"gpus": 2}})
    spec = adhoc_spec(base_image, ["sleep", "300"])
    jobs = [enqueue(spec, "race", conn=redis_conn, resources={"gpus": 1}, user="alice").id for _ in range(5)]
    for name, gpus in (("racer-1", "0,1"), ("racer-2", "2,3")):  # both start on the same backlog
        fleet.start(name, "--gpus", gpus, queues=("race",), env=GPU_ENV)
    seen = []

    def settled(waiting_on_quota: int):
        states = [status_json(redis_url, job_id) for job_id in jobs]
        active = [s for s in states if s["state"] in ("starting", "running")]
        seen.append(len(active))
        waiting = [s for s in states if s.get("pending_reason") == "quota"]
        return len(active) == 2 and len(waiting) == waiting_on_quota and states

    states = wait_for(lambda: settled(3), timeout_s=60, what="two of alice's jobs running, three waiting on her quota")
    assert max(seen) <= 2
    assert float(redis_conn.hget("launchbay:quota_usage:race:alice", "gpus")) == 2
    running = [s["id"] for s in states if s["state"] in ("starting", "running")]
    assert cli(redis_url, "cancel", running[0]).returncode == 0  # frees one GPU of her quota: one more starts
    states = wait_for(lambda: settled(2), timeout_s=60, what="another of alice's jobs started in the freed place")
    assert [s["state"] for s in states if s["id"] == running[0]] == ["canceled"]
    assert max(seen) <= 2
    for job_id in jobs:
        cli(redis_url, "cancel", job_id)
