"""The fleet benchmark runs the agent users run: its agents start the threads a real ``launchbay agent`` starts.

A real ``launchbay agent`` process (Docker as the machine has it) and a process of the benchmark's
agents (``bench/fleet_agents.py``, the fake runtime) serve one Redis; each thread an agent starts
has an OS name (``agent/basics.start_thread``), read from ``/proc/PID/task/TID/comm``. The set of
names must be the same, once per agent in the benchmark's process: a service added to the agent
but left out of the benchmark (or the reverse) fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
import redis
from conftest import BIN_DIR, REPO_ROOT
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore

pytestmark = [pytest.mark.integration]

BENCH_AGENTS = 2
PREFIX = "launchbay-"
#: The one thread the benchmark adds per agent: its main loop, which ``launchbay agent`` runs on its main thread.
BENCH_ONLY = "launchbay-loop"

# Builds the benchmark's agents as bench/fleet.py does, waits until each has beaten, prints its threads' names.
WORKER = textwrap.dedent(
    """
    import json, os, sys, tempfile, time
    from pathlib import Path
    sys.path.insert(0, {bench!r})
    import redis
    from fleet_agents import build, thread_names
    from launchbay.agent.basics import start_thread
    from launchbay.agent.settings import AgentSettings
    folder = Path(tempfile.mkdtemp())
    settings = [AgentSettings(agent_id=f"bench-{{i}}", host="h", queues=["q"], state_dir=folder / str(i))
                for i in range({count})]
    agents = build({url!r}, settings, 0.1)
    for agent in agents:
        start_thread("loop", agent.run)
    conn = redis.Redis.from_url({url!r})
    deadline = time.monotonic() + 60
    while not all(conn.hget(f"launchbay:agent:{{s.agent_id}}", "status") == b"healthy" for s in settings):
        assert time.monotonic() < deadline, "the benchmark's agents did not start"
        time.sleep(0.1)
    time.sleep(1)
    print(json.dumps(thread_names(os.getpid())))
    for agent in agents:
        agent.request_stop()
    """
)


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def agent_threads(names: Counter) -> Counter:
    return Counter({name: count for name, count in names.items() if name.startswith(PREFIX)})


def test_the_benchmark_agents_start_every_thread_a_real_agent_starts_and_no_other(redis_url, tmp_path):
    conn = redis.Redis.from_url(redis_url)
    QueueStore(conn, Keys()).apply(QueueConfig(name="q"))
    args = ["agent", "--redis-url", redis_url, "--agent-id", "real", "--state-dir", str(tmp_path / "real"), "-q", "q"]
    real = subprocess.Popen([str(BIN_DIR / "launchbay"), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: conn.hget(Keys().agent("real"), "status") == b"healthy", timeout_s=60, what="a real agent")
        sys.path.insert(0, str(REPO_ROOT / "bench"))
        from fleet_agents import thread_names

        produced = agent_threads(thread_names(real.pid))
    finally:
        real.terminate()
        real.wait(30)
    script = WORKER.format(bench=str(REPO_ROOT / "bench"), url=redis_url, count=BENCH_AGENTS)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    benched = agent_threads(Counter(json.loads(done.stdout.strip().splitlines()[-1])))

    assert produced, "a real agent names its threads launchbay-*"
    assert all(count == 1 for count in produced.values()), produced
    assert benched.pop(BENCH_ONLY) == BENCH_AGENTS, "one main loop per agent"
    assert set(benched) == set(produced), f"bench {sorted(benched)} vs launchbay agent {sorted(produced)}"
    assert all(count == BENCH_AGENTS for count in benched.values()), benched
