"""The Docker engine stopped and started under a running agent.

The test runs a second, private dockerd of its own (socket, data root, exec root, pid file, no
bridge, no iptables) so the engine the other tests share is never touched, and copies the base
image into it. While that engine is down the agent stays up, says it is unhealthy
(``launchbay agents``, ``launchbay agent --check``), claims nothing, and resumes when the engine is
back; the job whose container died with the engine ends with reason ``docker_unavailable``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time

import pytest
from conftest import BIN_DIR, require
from reliability_helpers import (
    AgentFleet,
    PrivateDockerd,
    agents_json,
    log_lines,
    make_queue,
    put_job,
    record,
    state_of,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

#: The engine stays down at least this long, several agent passes.
DOWN_S = 6.0


@pytest.fixture
def private_dockerd(docker_client, base_image):
    require(shutil.which("dockerd") is not None, "dockerd is not installed (apt-get install docker.io)")
    engine = PrivateDockerd()
    try:
        engine.start()
        engine.load_image(base_image)
        yield engine
    finally:
        engine.close()


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client, private_dockerd):
    fleet = AgentFleet(redis_url, tmp_path, docker_client, env={"LAUNCHBAY_AGENT_DOCKER_HOST": private_dockerd.url})
    yield fleet
    fleet.close()


def ticking(seconds: int) -> list:
    source = f"""
        import time
        for i in range({seconds * 4}):
            print(f"tick {{i}}", flush=True)
            time.sleep(0.25)
    """
    return ["python3", "-c", textwrap.dedent(source)]


def health_check(private_dockerd, redis_url: str) -> subprocess.CompletedProcess:
    """``launchbay agent --check`` on the agent's settings (its Docker engine is the private one)."""
    return subprocess.run(
        [str(BIN_DIR / "launchbay"), "agent", "--check", "--redis-url", redis_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LAUNCHBAY_AGENT_DOCKER_HOST": private_dockerd.url},
    )


def test_an_agent_outlives_a_docker_engine_restart_claims_nothing_meanwhile_and_resumes(
    redis_conn, redis_url, base_image, fleet, private_dockerd, capsys
):
    make_queue(redis_conn, "dk")
    doomed = put_job(redis_conn, "dk", image=base_image, command=ticking(120))
    agent = fleet.start("dk-agent", queues=("dk",))
    wait_for(lambda: len(log_lines(redis_conn, doomed)) >= 2, timeout_s=60, what=f"the job to run\n{agent.output()}")
    healthy_check = health_check(private_dockerd, redis_url)

    stopped_at, stopped_wall = time.monotonic(), time.time()
    private_dockerd.stop()
    stop_s = time.monotonic() - stopped_at
    waiting = put_job(redis_conn, "dk", image=base_image, command=["echo", "after the restart"])
    status = wait_for(
        lambda: next((a for a in agents_json(redis_url) if a["status"] == "unhealthy"), None),
        timeout_s=30,
        what="the agent to say it is unhealthy",
    )
    unhealthy_check = health_check(private_dockerd, redis_url)
    time.sleep(max(0.0, DOWN_S - (time.monotonic() - stopped_at)))
    claimed_while_down = json.loads(redis_conn.hget("launchbay:agent:dk-agent", "counters"))["claimed"]
    state_while_down = state_of(redis_conn, waiting)
    alive_while_down = agent.running

    restarted_at = time.monotonic()
    private_dockerd.start()
    wait_for(lambda: state_of(redis_conn, doomed) == "failed", timeout_s=60, what=f"the end\n{agent.output()}")
    ended_after_s = record(redis_conn, doomed)["failed_at"] - stopped_wall
    wait_for(
        lambda: state_of(redis_conn, waiting) == "finished", timeout_s=60, what=f"the waiting job\n{agent.output()}"
    )
    resumed_after_s = time.monotonic() - restarted_at
    with capsys.disabled():
        print(
            f"\ndocker restart: engine stop took {stop_s:.1f} s; agent unhealthy while down, 0 claims; job whose "
            f"container died recorded failed {ended_after_s:.1f} s after the engine began to stop; "
            f"the queued job finished {resumed_after_s:.1f} s after the engine was back"
        )

    assert healthy_check.returncode == 0 and "docker: ok" in healthy_check.stdout
    assert (status["agent_id"], status["docker"], status["alive"]) == ("dk-agent", "down", True)
    assert unhealthy_check.returncode == 1 and "docker: unreachable" in unhealthy_check.stdout
    assert alive_while_down and agent.running
    assert "Traceback" not in agent.output(), "an engine going away is a one-line log message, not a crash report"
    assert (claimed_while_down, state_while_down) == (1, "queued"), "nothing claimed while the engine was down"
    ended = record(redis_conn, doomed)
    assert (ended["reason"], ended["exit_code"]) == ("docker_unavailable", 143), ended
    assert ended["message"] == (
        "the Docker engine stopped while the job ran, and its container with it (exit code 143)"
    )
    assert log_lines(redis_conn, waiting) == ["after the restart"]
    wait_for(lambda: agents_json(redis_url)[0]["status"] == "healthy", timeout_s=15, what="healthy again")
    # The agent frees a job's ledger entry after its end is recorded and its container removed.
    wait_for(lambda: redis_conn.hlen("launchbay:agent:dk-agent:ledger") == 0, timeout_s=10, what="the ledger to empty")
    assert private_dockerd.client().containers.list(all=True, ignore_removed=True) == [], (
        "nothing left on the private engine"
    )
