"""scripts/demo as the README tells a newcomer to run it: in a clean HOME, twice, then --stop.

The base image is the local one (LAUNCHBAY_BASE_IMAGE) and the registry is not tried
(LAUNCHBAY_DEMO_NO_PULL=1). Redis is the demo's zero-config private server under the clean HOME.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
import pytest
from conftest import REPO_ROOT
from demo_helpers import base_with_pip

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]

DEMO = REPO_ROOT / "scripts" / "demo"
SUMMARY = re.compile(
    r"^demo: job (?P<job>[A-Za-z0-9]+) finished in [0-9.]+ s; "
    r"overrides applied: trainer\.learning_rate=0\.05, config\.yaml:epochs=5$",
    re.M,
)
# Kept from the caller: where the set-up caches live and which engine to use; nothing of launchbay's own.
KEPT = ("LAUNCHBAY_SETUP_STATE", "LAUNCHBAY_DEBIAN_MIRROR")


def pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture
def demo_env(docker_client, base_image):
    # A short path: the private Redis listens on a unix socket under HOME, and sun_path is 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="lbdemo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAUNCHBAY_", "XDG_")) or k in KEPT}
    env.update(
        HOME=str(home),
        LAUNCHBAY_BASE_IMAGE=base_with_pip(docker_client, base_image),
        LAUNCHBAY_DEMO_NO_PULL="1",
    )
    jobs: list = []
    yield env, home, jobs
    subprocess.run([str(DEMO), "--stop"], env=env, capture_output=True, timeout=120)
    state = home / ".local" / "state" / "launchbay"
    for pidfile in (state / "demo" / "agent.pid", state / "redis" / "redis.pid"):
        if pid_alive(pidfile):
            os.kill(int(pidfile.read_text()), 9)
    for job in jobs:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"launchbay.job_id={job}"}, ignore_removed=True
        ):
            with contextlib.suppress(docker.errors.APIError):  # the agent may be removing it already
                container.remove(force=True)
    shutil.rmtree(home, ignore_errors=True)


def run_demo(env, *args: str, timeout_s: float = 1200) -> str:
    result = subprocess.run(
        [str(DEMO), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s
    )
    assert result.returncode == 0, result.stdout
    return result.stdout


def test_the_demo_runs_the_example_job_with_overrides_and_a_second_run_redoes_nothing(demo_env):
    env, home, jobs = demo_env

    first = run_demo(env)
    summary = SUMMARY.search(first)
    assert summary, first
    jobs.append(summary["job"])
    assert re.search(r"^  trainer\.learning_rate +0\.05 +<- override$", first, re.M), first
    assert re.search(r"^  epochs +5 +<- override$", first, re.M), first
    assert "epoch 5/5: loss" in first
    assert f"launchbay status {summary['job']}" in first and "scripts/demo --stop" in first
    assert (home / ".local" / "state" / "launchbay" / "redis" / "redis.sock").is_socket()

    second = run_demo(env, timeout_s=300)
    again = SUMMARY.search(second)
    assert again and again["job"] != summary["job"], second
    jobs.append(again["job"])
    assert "image launchbay-example-trainer:latest is up to date" in second
    assert re.search(r"agent demo-\S+ is running \(pid \d+", second), second
    for redone in ("docker build", "debootstrap", "starting agent", "downloading wheels", "docker pull"):
        assert redone not in second, f"the second run did {redone!r} again:\n{second}"

    stopped = run_demo(env, "--stop", timeout_s=120)
    assert "stopped the demo agent" in stopped and "stopped the local Redis" in stopped, stopped
    state = home / ".local" / "state" / "launchbay"
    assert not pid_alive(state / "redis" / "redis.pid")
    assert not (state / "demo" / "agent.pid").exists()
