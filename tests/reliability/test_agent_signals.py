"""SIGTERM at any point of an agent's life ends it cleanly: exit code 0, nothing registered.

A restart under load takes seconds (imports, the first Redis and Docker calls, nvidia-smi). A stop
asked for in that window used to hit Python's default action and end the process with -15; a
supervisor (systemd, docker stop, the chaos test) reads that as a crash.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from launchbay.queue_config.keys import Keys
from reliability_helpers import AgentProcess, wait_for

pytestmark = pytest.mark.integration

FAKE_NVIDIA_SMI = Path(__file__).resolve().parent.parent / "agent" / "fixtures" / "nvidia-smi"


def _slow_nvidia_smi(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in that says when it was called, then takes 3 s to answer (drivers do, at boot)."""
    marker = tmp_path / "nvidia-smi-called"
    script = tmp_path / "nvidia-smi"
    script.write_text(f'#!/bin/sh\ntouch "{marker}"\nsleep 3\nexec "{FAKE_NVIDIA_SMI}" "$@"\n')
    script.chmod(0o755)
    return script, marker


def _agent(redis_url: str, agent_id: str, tmp_path: Path, nvidia_smi: Path) -> AgentProcess:
    args = ["--redis-url", redis_url, "--agent-id", agent_id, "-q", "q", "--state-dir", str(tmp_path / "state")]
    env = {**os.environ, "LAUNCHBAY_AGENT_NVIDIA_SMI": str(nvidia_smi)}
    return AgentProcess(agent_id, args, env, tmp_path / f"{agent_id}.log")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_during_start_up_ends_the_agent_with_exit_code_0_before_it_serves(
    redis_url, redis_conn, tmp_path, signum
):
    nvidia_smi, marker = _slow_nvidia_smi(tmp_path)
    agent = _agent(redis_url, "early", tmp_path, nvidia_smi).start()
    try:
        wait_for(lambda: marker.exists() or not agent.running, timeout_s=60, what="the agent to probe its GPUs")
        assert agent.running, agent.output()
        sent_at = time.monotonic()
        agent.proc.send_signal(signum)
        code = agent.proc.wait(30)
    finally:
        agent.kill()
    output = agent.output()
    assert code == 0, output
    assert f"agent early stopped before serving ({signal.Signals(signum).name} during start-up)" in output
    assert not agent.serving(), output
    keys = Keys()
    assert redis_conn.exists(keys.agent("early"), keys.agent_alive("early")) == 0, "it registered without serving"
    assert time.monotonic() - sent_at < 15, "the stop waited for more than the GPU probe"


def test_a_serving_agent_stops_on_sigterm_with_exit_code_0(redis_url, tmp_path):
    agent = _agent(redis_url, "late", tmp_path, tmp_path / "absent").start()
    try:
        code = agent.terminate()  # waits until it serves, then SIGTERM
    finally:
        agent.kill()
    assert agent.serving() and code == 0, agent.output()
    assert "agent late stopped" in agent.output()
