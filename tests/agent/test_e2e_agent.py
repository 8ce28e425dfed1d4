"""``launchbay agent`` as a real process against a real Redis and the test Docker engine.

GPUs come from the stand-in nvidia-smi (tests/agent/fixtures) on PATH and reach the containers in
``env_only`` mode, so the jobs can print what they were given without a GPU on the test machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import docker
import pytest
from conftest import BIN_DIR
from launchbay.agent.runtime import AGENT_ID_LABEL
from launchbay.queue_config.keys import Keys
from test_control_support import FIXTURES, make_queue, put_job, record, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.docker]

TERMINAL = {"finished", "failed", "canceled"}
FAST_BEATS = {
    "LAUNCHBAY_AGENT_HEARTBEAT_INTERVAL_S": "0.5",
    "LAUNCHBAY_AGENT_HEARTBEAT_TTL_S": "3",
    "LAUNCHBAY_AGENT_LOST_GRACE_S": "3",
    "LAUNCHBAY_AGENT_REAPER_INTERVAL_S": "0.5",
    "LAUNCHBAY_AGENT_INVENTORY_REFRESH_S": "2",
    "LAUNCHBAY_AGENT_STOP_GRACE_S": "2",
}


class AgentProcess:
    """One ``launchbay agent`` process and its stderr log file."""

    def __init__(self, args: List[str], env: Dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(BIN_DIR / "launchbay"), "agent", *args], env=env, stdout=self.log, stderr=self.log
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.log.close()


@pytest.fixture
def agents(redis_url, tmp_path, docker_client):
    """Starts agent processes; kills them and removes their containers afterwards, pass or fail."""
    started: List[AgentProcess] = []
    agent_ids: set = set()

    def start(agent_id: str, *extra: str, queue: str = "e2e") -> AgentProcess:
        env = {
            **os.environ,
            **FAST_BEATS,
            "PATH": f"{FIXTURES}{os.pathsep}{os.environ.get('PATH', '')}",
            "LAUNCHBAY_FAKE_NVIDIA_SMI": "h200x4",
        }
        args = [
            "--redis-url",
            redis_url,
            "-q",
            queue,
            "--agent-id",
            agent_id,
            "--state-dir",
            str(tmp_path / agent_id),
            *extra,
        ]
        agent = AgentProcess(args, env, tmp_path / f"{agent_id}.log")
        started.append(agent)
        agent_ids.add(agent_id)
        return agent

    yield start
    for agent in started:
        agent.stop()
    for agent_id in agent_ids:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{AGENT_ID_LABEL}={agent_id}"}, ignore_removed=True
        ):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: a removal the agent started is in progress
                    raise


def log_lines(conn, job_id: str) -> List[str]:
    return [fields[b"line"].decode() for _, fields in conn.xrange(Keys().job_log(job_id)) if b"line" in fields]


def state_of(conn, job_id: str) -> Optional[str]:
    return record(conn, job_id).get("state")


def wait_until_printed(conn, job_id: str, line: str, agent: AgentProcess) -> None:
    """Wait for the job to print ``line``; if it ends first, fail with its record and the agent's log."""
    wait_for(
        lambda: line in log_lines(conn, job_id) or state_of(conn, job_id) in TERMINAL,
        timeout_s=90,
        what=f"job {job_id} to print {line!r}",
    )
    assert line in log_lines(conn, job_id), (record(conn, job_id), agent.output())


def python(source: str) -> List[str]:
    return ["python3", "-c", source]


def test_gpu_jobs_see_the_gpus_they_were_given_and_never_share_one(redis_conn, base_image, agents):
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"})
    show = "import os, time; print('CUDA=' + os.environ['CUDA_VISIBLE_DEVICES']); time.sleep(1)"
    job_ids = [put_job(redis_conn, "e2e", gpus=1 + i % 2, image=base_image, command=python(show)) for i in range(5)]
    agent = agents("e2e-gpu", "--max-jobs", "4", "--once")
    assert agent.proc.wait(150) == 0, agent.output()
    spans: Dict[str, list] = {}
    for job_id in job_ids:
        rec = record(redis_conn, job_id)
        assert rec["state"] == "finished", (rec, agent.output())
        assert f"CUDA={','.join(rec['gpus'])}" in log_lines(redis_conn, job_id)
        for gpu in rec["gpus"]:
            spans.setdefault(gpu, []).append((rec["starting_at"], rec["finished_at"]))
    for gpu, windows in spans.items():
        windows.sort()
        assert all(later[0] >= earlier[1] for earlier, later in zip(windows, windows[1:])), f"GPU {gpu} shared"


def test_an_agent_killed_mid_job_and_restarted_adopts_the_job_which_finishes_once(redis_conn, base_image, agents):
    make_queue(redis_conn, "e2e")
    job_id = put_job(
        redis_conn,
        "e2e",
        image=base_image,
        command=python("import time; print('begin', flush=True); time.sleep(5); print('done')"),
    )
    first = agents("e2e-restart")
    wait_until_printed(redis_conn, job_id, "begin", first)
    container = record(redis_conn, job_id)["container"]
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    second = agents("e2e-restart")
    wait_for(lambda: state_of(redis_conn, job_id) in TERMINAL, timeout_s=60, what="the adopted job to end")
    rec = record(redis_conn, job_id)
    assert rec["state"] == "finished", second.output()
    assert rec["attempts"] == 1 and rec["container"] == container, "adopted, not started again"
    assert log_lines(redis_conn, job_id).count("done") == 1
    assert log_lines(redis_conn, job_id).count("begin") == 1


def test_two_agents_over_100_trivial_container_jobs_run_each_exactly_once(redis_conn, base_image, agents):
    make_queue(redis_conn, "e2e")
    job_ids = [put_job(redis_conn, "e2e", image=base_image, command=["true"]) for _ in range(100)]
    started = time.monotonic()
    pair = [agents(name, "--max-jobs", "4", "--once") for name in ("e2e-a", "e2e-b")]
    for agent in pair:
        assert agent.proc.wait(240) == 0, agent.output()
    records = [record(redis_conn, j) for j in job_ids]
    assert {r["state"] for r in records} == {"finished"}
    assert {r["attempts"] for r in records} == {1}
    claimed = {
        name: json.loads(redis_conn.hget(Keys().agent(name), "counters"))["claimed"] for name in ("e2e-a", "e2e-b")
    }
    assert sum(claimed.values()) == 100, claimed
    assert time.monotonic() - started < 240


def test_json_logs_are_one_json_object_per_line(redis_conn, agents):
    make_queue(redis_conn, "e2e")
    agent = agents("e2e-json", "--once", "--json-logs")
    assert agent.proc.wait(60) == 0, agent.output()
    lines = [json.loads(line) for line in agent.output().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any("agent e2e-json serving e2e" in line["message"] for line in lines)


def test_sigterm_stops_claiming_and_leaves_the_running_container_for_the_next_agent(
    redis_conn, base_image, agents, docker_client
):
    make_queue(redis_conn, "e2e")
    job_id = put_job(
        redis_conn, "e2e", image=base_image, command=python("import time; print('begin', flush=True); time.sleep(60)")
    )
    agent = agents("e2e-term")
    wait_until_printed(redis_conn, job_id, "begin", agent)
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(30) == 0, agent.output()
    container = docker_client.containers.get(record(redis_conn, job_id)["container"])
    assert container.status == "running"
    assert state_of(redis_conn, job_id) == "running"
    assert redis_conn.hget(Keys().agent("e2e-term"), "status") == b"stopping"
    assert (
        "SIGTERM: stopping: no new jobs; 1 running job(s) keep running for the next start of agent e2e-term to adopt"
    ) in agent.output()


def test_sigterm_with_drain_set_as_the_systemd_unit_does_waits_for_the_running_job(
    redis_conn, base_image, agents, monkeypatch
):
    # agent/launchbay-agent.service sets LAUNCHBAY_AGENT_DRAIN=true, so `systemctl stop` drains.
    monkeypatch.setenv("LAUNCHBAY_AGENT_DRAIN", "true")
    make_queue(redis_conn, "e2e")
    job_id = put_job(
        redis_conn, "e2e", image=base_image, command=python("import time; print('begin', flush=True); time.sleep(4)")
    )
    agent = agents("e2e-drain")
    wait_until_printed(redis_conn, job_id, "begin", agent)
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(60) == 0, agent.output()
    assert state_of(redis_conn, job_id) == "finished"
    output = agent.output()
    assert (
        "SIGTERM: draining: no new jobs; waiting for 1 running job(s) to end (another SIGTERM stops waiting)" in output
    )
    assert output.index("draining") < output.index(f"job {job_id} finished") < output.index("agent e2e-drain stopped")


def test_a_job_whose_gpu_reports_an_xid_mid_run_is_requeued_and_finishes_on_a_healthy_gpu(
    redis_conn, base_image, agents, tmp_path, docker_client
):
    # GPU 0 of the h200x4 capture sits on PCI bus 18; the kernel log is a file the test writes into.
    kernel_log = tmp_path / "kmsg.txt"
    kernel_log.write_text("")
    config = tmp_path / "agent.yaml"
    config.write_text(f"kernel_log: {kernel_log}\n")
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"}, retry={"on_gpu_failed": "requeue"})
    show = (
        "import os, time; gpu = os.environ['CUDA_VISIBLE_DEVICES']; print('on GPU ' + gpu, flush=True); "
        "time.sleep(300 if gpu == '0' else 0)"
    )
    job_id = put_job(redis_conn, "e2e", gpus=1, image=base_image, command=python(show))
    agent = agents("e2e-xid", "--config", str(config))
    wait_until_printed(redis_conn, job_id, "on GPU 0", agent)  # placement takes the lowest free index
    first_container = record(redis_conn, job_id)["container"]
    kernel_log.write_text(
        "[ 9021.118240] NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
    )
    wait_for(lambda: state_of(redis_conn, job_id) == "finished", timeout_s=120, what="the requeued job to finish")
    rec = record(redis_conn, job_id)
    assert rec["attempts"] == 2 and rec["gpus"] != ["0"], agent.output()
    lines = log_lines(redis_conn, job_id)
    assert lines[0] == "on GPU 0" and lines[-1] == f"on GPU {rec['gpus'][0]}"
    assert any(
        line.startswith("[launchbay] queued (gpu_failed): GPU 0 became unhealthy (xid 79: GPU has fallen off the bus)")
        for line in lines
    ), lines
    # The capacity JSON is rewritten on the agent's next heartbeat, which may come after the job's end.
    wait_for(
        lambda: json.loads(redis_conn.get(Keys().agent_capacity("e2e-xid")))["gpus"][0]["health"] == "unhealthy",
        timeout_s=30,
        what="the capacity JSON to show GPU 0 unhealthy",
    )
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(first_container)
