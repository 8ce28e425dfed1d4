"""SIGTERM at any point of an agent's life ends it cleanly: exit code 0, nothing registered.

A restart under load takes seconds (imports, the first Redis and Docker calls, nvidia-smi). A stop
asked for in that window used to hit Python's default action and end the process with -15; a
supervisor (systemd, docker stop, the chaos test) reads that as a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN_DIR
from launchbay.queue_config.keys import Keys
from reliability_helpers import wait_for

pytestmark = pytest.mark.integration

FAKE_NVIDIA_SMI = Path(__file__).resolve().parent.parent / "agent" / "fixtures" / "nvidia-smi"


def _slow_nvidia_smi(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in that says when it was called, then takes 3 s to answer (drivers do, at boot)."""
    marker = tmp_path / "nvidia-smi-called"
    script = tmp_path / "nvidia-smi"
    script.write_text(f'#!/bin/sh\ntouch "{marker}"\nsleep 3\nexec "{FAKE_NVIDIA_SMI}" "$@"\n')
    script.chmod(0o755)
    return script, marker


def _agent_argv(redis_url: str, agent_id: str, tmp_path: Path) -> list:
    state = str(tmp_path / "state")
    return [
        str(BIN_DIR / "launchbay"),
        "agent",
        "--redis-url",
        redis_url,
        "--agent-id",
        agent_id,
        "-q",
        "q",
        "--state-dir",
        state,
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_during_start_up_ends_the_agent_with_exit_code_0_before_it_serves(
    redis_url, redis_conn, tmp_path, signum
):
    nvidia_smi, marker = _slow_nvidia_smi(tmp_path)
    env = {**os.environ, "LAUNCHBAY_AGENT_NVIDIA_SMI": str(nvidia_smi)}
    proc = subprocess.Popen(
        _agent_argv(redis_url, "early", tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, timeout_s=60, what="the agent to probe its GPUs")
        assert proc.poll() is None, proc.communicate()[0]
        sent_at = time.monotonic()
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert f"agent early stopped before serving ({signal.Signals(signum).name} during start-up)" in output
    assert "serving" not in output.replace("before serving", "")
    keys = Keys()
    assert redis_conn.exists(keys.agent("early"), keys.agent_alive("early")) == 0, "it registered without serving"
    assert time.monotonic() - sent_at < 15, "the stop waited for more than the GPU probe"


def test_a_serving_agent_stops_on_sigterm_with_exit_code_0(redis_url, tmp_path):
    proc = subprocess.Popen(
        _agent_argv(redis_url, "late", tmp_path),
        env={**os.environ, "LAUNCHBAY_AGENT_NVIDIA_SMI": str(tmp_path / "absent")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "agent late serving" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    assert "agent late stopped" in output, output
