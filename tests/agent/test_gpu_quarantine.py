"""A quarantined or drained GPU in a running agent (real Redis, the fake container runtime): jobs on a
GPU that fails end with reason ``gpu_failed`` and are requeued or failed as the queue says; an
operator's drain takes a GPU out of service without stopping its job; the CLI shows both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import pytest
from conftest import run_cli
from launchbay.agent.runtime_fake import FakeRuntime
from launchbay.queue_config.keys import Keys
from test_control_support import FAKE_NVIDIA_SMI, agent_settings, make_queue, put_job, record, wait_for
from test_daemon import AgentThread

pytestmark = pytest.mark.integration

#: PCI bus of each GPU of the h100x4 capture, as the kernel writes it in an XID line.
H100X4_BUS = {"0": "0000:18:00", "1": "0000:2a:00", "2": "0000:3b:00", "3": "0000:5d:00"}


def xid_line(gpu: str, xid: int = 79, what: str = "GPU has fallen off the bus.") -> str:
    return f"[ 9021.118240] NVRM: Xid (PCI:{H100X4_BUS[gpu]}): {xid}, pid='<unknown>', name=<unknown>, {what}\n"


def gpus_in_capacity(conn, agent_id: str = "agent-a") -> Dict[str, dict]:
    raw = conn.get(Keys().agent_capacity(agent_id))
    return {g["id"]: g for g in json.loads(raw)["gpus"]} if raw else {}


def log_lines(conn, job_id: str):
    return [f[b"line"].decode() for _, f in conn.xrange(Keys().job_log(job_id)) if b"line" in f]


@pytest.fixture
def start_agent(redis_conn):
    """An agent on a thread with the fake runtime; stopped and its fake containers removed afterwards."""
    started = []

    def start(settings):
        started.append(AgentThread(redis_conn, settings, FakeRuntime()))
        return started[-1]

    yield start
    for agent in started:
        agent.agent.request_stop(drain=False)
        agent.thread.join(30)
        agent.agent.supervisor.detach_all()
        for container_id in list(agent.runtime.containers):
            agent.runtime.remove(container_id)


@pytest.fixture
def h100x4(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "h100x4")
    kernel_log = tmp_path / "kmsg.txt"
    kernel_log.write_text("")
    return kernel_log


def test_a_job_whose_gpu_reports_an_xid_is_requeued_and_runs_on_a_healthy_gpu(
    redis_conn, tmp_path, start_agent, h100x4
):
    make_queue(redis_conn, retry={"on_gpu_failed": "requeue", "max_requeues": 1})
    start_agent(agent_settings(tmp_path, kernel_log=str(h100x4), inventory_refresh_s=0.2))
    job_id = put_job(redis_conn, gpus=1, env={"LAUNCHBAY_FAKE_RUN_S": "60"})
    first = wait_for(lambda: record(redis_conn, job_id).get("state") == "running" and record(redis_conn, job_id))
    (bad,) = first["gpus"]
    h100x4.write_text(xid_line(bad))
    wait_for(lambda: record(redis_conn, job_id).get("attempts") == 2, what="the job to be claimed again")
    wait_for(lambda: record(redis_conn, job_id).get("state") == "running", what="the job to run again")
    again = record(redis_conn, job_id)
    assert again["gpus"] != [bad]
    note = f"[launchbay] queued (gpu_failed): GPU {bad} became unhealthy (xid 79: GPU has fallen off the bus)"
    assert any(line.startswith(note) and "requeue 1 of 1" in line for line in log_lines(redis_conn, job_id))
    wait_for(lambda: gpus_in_capacity(redis_conn)[bad]["health"] == "unhealthy", what="the next heartbeat")
    assert gpus_in_capacity(redis_conn)[bad]["health_reason"] == "xid 79: GPU has fallen off the bus"


def test_with_on_gpu_failed_fail_the_job_fails_with_reason_gpu_failed(redis_conn, tmp_path, start_agent, h100x4):
    make_queue(redis_conn, retry={"on_gpu_failed": "fail"})
    start_agent(agent_settings(tmp_path, kernel_log=str(h100x4), inventory_refresh_s=0.2))
    job_id = put_job(redis_conn, gpus=2, env={"LAUNCHBAY_FAKE_RUN_S": "60"})
    running = wait_for(lambda: record(redis_conn, job_id).get("state") == "running" and record(redis_conn, job_id))
    h100x4.write_text(xid_line(running["gpus"][1], 48, "An uncorrectable double bit error (DBE) has been detected."))
    ended = wait_for(lambda: record(redis_conn, job_id).get("state") == "failed" and record(redis_conn, job_id))
    assert ended["reason"] == "gpu_failed"
    assert ended["message"] == f"GPU {running['gpus'][1]} became unhealthy (xid 48: double-bit ECC error)"


def test_a_drained_gpu_keeps_its_job_gets_no_new_one_and_comes_back(
    redis_url, redis_conn, tmp_path, start_agent, h100x4
):
    make_queue(redis_conn)
    start_agent(agent_settings(tmp_path, gpus=["0", "1"], inventory_refresh_s=30))  # the drain event wakes it
    long_job = put_job(redis_conn, gpus=1, env={"LAUNCHBAY_FAKE_RUN_S": "60"})
    running = wait_for(lambda: record(redis_conn, long_job).get("state") == "running" and record(redis_conn, long_job))
    (held,) = running["gpus"]
    other = "1" if held == "0" else "0"
    drained = run_cli("agent", "--agent-id", "agent-a", "--redis-url", redis_url, "--drain-gpu", held, "--json")
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout) == {"agent_id": "agent-a", "drained_gpus": [held], "agent_alive": True}
    wait_for(lambda: gpus_in_capacity(redis_conn)[held]["health"] == "drained", what="the drain to reach the agent")
    assert gpus_in_capacity(redis_conn)[held]["health_reason"] == "drained by operator"
    blocked = put_job(redis_conn, gpus=2, env={"LAUNCHBAY_FAKE_RUN_S": "0.1"})
    short = put_job(redis_conn, gpus=1, env={"LAUNCHBAY_FAKE_RUN_S": "0.1"})
    wait_for(lambda: record(redis_conn, short).get("state") == "finished", what="a job on the other GPU")
    assert record(redis_conn, short)["gpus"] == [other]
    assert record(redis_conn, long_job)["state"] == "running", "a drain does not stop the job on the GPU"
    assert record(redis_conn, blocked)["state"] == "queued"

    table = run_cli("agents", "--redis-url", redis_url)
    assert f"{held}:NVIDIA H100 80GB HBM3 (drained: drained by operator)" in table.stdout
    undrained = run_cli("agent", "--agent-id", "agent-a", "--redis-url", redis_url, "--undrain-gpu", held)
    assert undrained.returncode == 0 and "drained GPUs: none" in undrained.stdout
    wait_for(lambda: gpus_in_capacity(redis_conn)[held]["health"] == "ok", what="the GPU back in service")


def test_a_bad_gpu_name_is_one_line_and_exit_code_2(redis_url):
    result = run_cli("agent", "--agent-id", "agent-a", "--redis-url", redis_url, "--drain-gpu", "0;rm")
    assert result.returncode == 2
    assert "'0;rm' is not a GPU index (0, 1, ...) or UUID (GPU-...)" in result.stderr
    assert "Traceback" not in result.stderr


def test_launchbay_inventory_shows_each_gpus_health_and_reason(redis_url, redis_conn, tmp_path):
    redis_conn.sadd(Keys().agent_drained_gpus("agent-a"), "0")
    env = {"LAUNCHBAY_FAKE_NVIDIA_SMI": "ecc-uncorrected", "LAUNCHBAY_AGENT_NVIDIA_SMI": str(FAKE_NVIDIA_SMI)}
    args = ("inventory", "--agent-id", "agent-a", "--redis-url", redis_url)
    result = run_cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(g["health"], g["health_reason"]) for g in report["gpus"]] == [
        ("drained", "drained by operator"),
        ("unhealthy", "uncorrectable ECC errors: 2"),
    ]
    assert report["free"]["gpus"] == []
    text = run_cli(*args, env=env).stdout
    assert "unhealthy: uncorrectable ECC errors: 2" in text and "drained: drained by operator" in text
