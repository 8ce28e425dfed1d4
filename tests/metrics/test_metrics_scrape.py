"""``/metrics`` of a real ``launchbay agent`` process and of ``launchbay exporter``, read with
prometheus_client's text parser and checked against a known state: one job running on a GPU,
three queued, and a second agent whose capacity says one of its GPUs is quarantined.

GPUs come from the stand-in nvidia-smi (tests/agent/fixtures, the 4x H200 capture) and reach the
container in the queue's ``env_only`` GPU mode.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import BIN_DIR, REPO_ROOT, free_port, publish_agent_line
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore
from metrics_helpers import Scrape, documented_metrics, try_scrape

pytestmark = [pytest.mark.integration, pytest.mark.docker]

FIXTURES = REPO_ROOT / "tests" / "agent" / "fixtures"
MIB = 1 << 20
#: GPU 0..3 of the stand-in's h200x4 capture: memory used (MiB) and utilization (%).
H200X4 = {"0": (45662, 37), "1": (131470, 99), "2": (137255, 100), "3": (111082, 82)}
QUARANTINED_AGENT = {
    "agent_id": "gpu-host-2",
    "host": "gpu-host-2",
    "labels": {},
    "queues": ["metrics"],
    "cpus": 8.0,
    "memory_mib": 32000,
    "max_jobs": 4,
    "gpus": [
        {"id": "0", "uuid": "GPU-aaaa", "name": "NVIDIA A100-SXM4-80GB", "memory_total_mib": 81920,
         "memory_free_mib": 81000, "memory_used_mib": 920, "utilization_pct": 0, "temperature_c": 31,
         "health": "ok", "health_reason": ""},
        {"id": "1", "uuid": "GPU-bbbb", "name": "NVIDIA A100-SXM4-80GB", "memory_total_mib": 81920,
         "memory_free_mib": None, "memory_used_mib": None, "utilization_pct": None, "temperature_c": None,
         "health": "unhealthy", "health_reason": "xid 79: GPU has fallen off the bus"},
    ],
}  # fmt: skip


def wait_until(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


class Process:
    """A ``launchbay`` subprocess whose output goes to a file (read on failure)."""

    def __init__(self, args: List[str], env: Dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen([str(BIN_DIR / "launchbay"), *args], env=env, stdout=self.log, stderr=self.log)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.log.close()


@pytest.fixture
def processes():
    started: List[Process] = []

    def start(args: List[str], env: Dict[str, str], log_path: Path) -> Process:
        started.append(Process(args, env, log_path))
        return started[-1]

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def cleanup_containers(docker_client):
    yield
    for container in docker_client.containers.list(all=True, filters={"label": "launchbay.agent_id=metrics-agent"}):
        container.remove(force=True)


def scrape_when(url: str, ready, timeout_s: float = 90.0) -> Scrape:
    """Scrape until ``ready(scrape)`` holds (the agent claims and starts in its own time)."""

    def attempt():
        text = try_scrape(url)
        parsed = Scrape(text) if text is not None else None
        return parsed if parsed is not None and ready(parsed) else None

    return wait_until(attempt, timeout_s, f"{url} to show the expected state")


def test_agent_and_exporter_metrics_match_one_running_three_queued_and_a_quarantined_gpu(
    redis_url, redis_conn, base_image, tmp_path, processes, cleanup_containers
):
    QueueStore(redis_conn, Keys()).apply(QueueConfig(name="metrics", docker={"gpu_mode": "env_only"}))
    spec = {"name": "sleeper", "image": base_image, "command": ["sleep", "120"]}
    running = enqueue(spec, "metrics", resources={"gpus": 1}, conn=redis_conn, keys=Keys())
    agent_port = free_port()
    env = {
        **os.environ,
        "PATH": f"{FIXTURES}{os.pathsep}{os.environ.get('PATH', '')}",
        "LAUNCHBAY_FAKE_NVIDIA_SMI": "h200x4",
        "LAUNCHBAY_AGENT_HEARTBEAT_INTERVAL_S": "0.5",
    }
    agent = processes(
        ["agent", "--redis-url", redis_url, "-q", "metrics", "--agent-id", "metrics-agent", "--max-jobs", "1",
         "--state-dir", str(tmp_path / "state"), "--metrics-port", str(agent_port)],
        env,
        tmp_path / "agent.log",
    )  # fmt: skip
    agent_url = f"http://127.0.0.1:{agent_port}/metrics"
    seen = scrape_when(agent_url, lambda s: s.total("launchbay_agent_start_latency_seconds_count") == 1)
    gpu = Records(redis_conn, Keys()).as_json(running.id)["gpus"][0]
    queued = [enqueue(spec, "metrics", priority=p, conn=redis_conn, keys=Keys()) for p in ("high", "normal", "normal")]
    redis_conn.hset(Keys().job(queued[0].id), mapping={"submitter": "alice", "pending_reason": "resources"})

    assert_agent_view(seen, running.id, gpu)
    assert agent.proc.poll() is None, agent.output()

    _register(redis_conn, QUARANTINED_AGENT)
    exporter_port = free_port()
    exporter = processes(
        ["exporter", "--redis-url", redis_url, "--port", str(exporter_port)], env, tmp_path / "exporter.log"
    )
    fleet = scrape_when(f"http://127.0.0.1:{exporter_port}/metrics", lambda s: s.samples("launchbay_agents"))
    assert_queue_view(fleet, queued[0].id)
    assert exporter.proc.poll() is None, exporter.output()
    served = seen.metric_names() | fleet.metric_names()
    assert served == documented_metrics(), (served ^ documented_metrics(), "served vs docs/metrics.md")


def assert_agent_view(seen: Scrape, job_id: str, gpu: str) -> None:
    assert seen.value("launchbay_agent_jobs", state="running") == 1
    assert seen.value("launchbay_agent_jobs", state="starting") == 0
    assert seen.value("launchbay_agent_claims_total") == 1
    assert seen.types["launchbay_agent_claims"] == "counter"
    assert seen.value("launchbay_agent_claim_latency_seconds_count") == 1
    assert seen.value("launchbay_agent_claim_latency_seconds_bucket", le="+Inf") == 1
    assert seen.value("launchbay_agent_gpus") == 4
    assert seen.value("launchbay_agent_gpus_allocated") == 1
    assert seen.value("launchbay_agent_gpu_job", index=gpu) == 1
    assert seen.value("launchbay_agent_gpu_job", job_id=job_id) == 1
    assert [labels["index"] for labels, _ in seen.samples("launchbay_agent_gpu_job")] == [gpu]
    for index, (used_mib, util_pct) in H200X4.items():
        assert seen.value("launchbay_agent_gpu_allocated", index=index) == int(index == gpu)
        assert seen.value("launchbay_agent_gpu_memory_used_bytes", index=index) == used_mib * MIB
        assert seen.value("launchbay_agent_gpu_utilization_ratio", index=index) == util_pct / 100
        assert seen.value("launchbay_agent_gpu_memory_bytes", index=index, model="NVIDIA H200-141C") == 144384 * MIB
        assert seen.value("launchbay_agent_gpu_health", index=index, state="ok") == 1
    assert seen.value("launchbay_agent_gpu_job", index=gpu, uuid=_uuid_of(seen, gpu)) == 1
    assert seen.value("launchbay_agent_redis_up") == 1
    assert seen.value("launchbay_agent_docker_up") == 1
    assert seen.value("launchbay_agent_info", agent="metrics-agent", queues="metrics") == 1


def _uuid_of(seen: Scrape, index: str) -> str:
    return next(
        labels["uuid"] for labels, _ in seen.samples("launchbay_agent_gpu_allocated") if labels["index"] == index
    )


def _register(conn, capacity: Dict) -> None:
    keys = Keys()
    conn.sadd(keys.agents, capacity["agent_id"])
    conn.set(keys.agent_alive(capacity["agent_id"]), "1", ex=120)
    conn.set(keys.agent_capacity(capacity["agent_id"]), json.dumps(capacity))
    publish_agent_line(conn, capacity["agent_id"])


def assert_queue_view(fleet: Scrape, alice_job: str) -> None:
    assert fleet.value("launchbay_redis_up") == 1
    assert fleet.total("launchbay_queue_depth", queue="metrics") == 3
    assert fleet.value("launchbay_queue_depth", queue="metrics", priority="high", pending_reason="resources") == 1
    # The agent's pass writes "priority" for the normal jobs behind the high one; before it, "unknown".
    reasons = {labels["pending_reason"] for labels, _ in fleet.samples("launchbay_queue_depth")}
    assert fleet.total("launchbay_queue_depth", queue="metrics", priority="normal") == 2
    assert reasons <= {"resources", "priority", "unknown"}
    me = getpass.getuser()  # every job records its submitter: here the OS user, as no --user is given
    assert fleet.value("launchbay_jobs", queue="metrics", state="running", user=me) == 1
    assert fleet.value("launchbay_jobs", queue="metrics", state="queued", user="alice") == 1
    assert fleet.value("launchbay_jobs", queue="metrics", state="queued", user=me) == 2
    assert 0 < fleet.value("launchbay_queue_oldest_queued_age_seconds", queue="metrics") < 600
    assert fleet.value("launchbay_queue_paused", queue="metrics") == 0
    assert fleet.value("launchbay_agents", state="live") == 2
    assert fleet.value("launchbay_agents", state="lost") == 0
    assert fleet.value("launchbay_agent_live", agent="metrics-agent") == 1
    assert fleet.value("launchbay_gpus", agent="gpu-host-2", health="unhealthy") == 1
    assert fleet.value("launchbay_gpus", agent="gpu-host-2", health="ok") == 1
    assert fleet.value("launchbay_gpus", agent="metrics-agent", health="ok") == 4
    assert fleet.total("launchbay_gpus", agent="metrics-agent", health="unhealthy") == 0


def test_a_quarantined_gpu_and_a_drained_one_show_in_a_real_agents_metrics(redis_url, tmp_path, processes):
    """The stand-in's ecc-uncorrected capture: GPU 1 counts two uncorrectable ECC errors, so the agent
    quarantines it; then an operator drains GPU 0 through the CLI (the ``gpu_drain`` event, not the
    inventory timer, which is set far beyond the wait)."""
    env = {
        **os.environ,
        "PATH": f"{FIXTURES}{os.pathsep}{os.environ.get('PATH', '')}",
        "LAUNCHBAY_FAKE_NVIDIA_SMI": "ecc-uncorrected",
        "LAUNCHBAY_AGENT_KERNEL_LOG": "",
        "LAUNCHBAY_AGENT_INVENTORY_REFRESH_S": "3600",
    }
    port = free_port()
    agent = processes(
        ["agent", "--redis-url", redis_url, "-q", "metrics", "--agent-id", "gpu-agent",
         "--state-dir", str(tmp_path / "state"), "--metrics-port", str(port)],
        env,
        tmp_path / "agent.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    seen = scrape_when(url, lambda s: s.total("launchbay_agent_gpus") == 2)
    assert seen.value("launchbay_agent_gpu_health", index="1", state="unhealthy") == 1
    assert seen.value("launchbay_agent_gpu_health", index="1", state="ok") == 0
    assert seen.value("launchbay_agent_gpu_unhealthy_reason", index="1", reason="uncorrectable ECC errors: 2") == 1
    assert seen.value("launchbay_agent_gpu_health", index="0", state="ok") == 1
    assert [labels["index"] for labels, _ in seen.samples("launchbay_agent_gpu_unhealthy_reason")] == ["1"]

    drain = subprocess.run(
        [str(BIN_DIR / "launchbay"), "agent", "--agent-id", "gpu-agent", "--redis-url", redis_url, "--drain-gpu", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert drain.returncode == 0, drain.stderr
    seen = scrape_when(url, lambda s: s.total("launchbay_agent_gpu_health", index="0", state="drained") == 1)
    assert seen.value("launchbay_agent_gpu_unhealthy_reason", index="0", reason="drained by operator") == 1
    assert seen.value("launchbay_agent_gpu_health", index="1", state="unhealthy") == 1
    assert agent.proc.poll() is None, agent.output()
