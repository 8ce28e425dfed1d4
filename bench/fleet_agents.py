"""The fleet benchmark's agents: real agents, many to a process, with only Docker replaced by the fake runtime.

Each is ``agent/daemon.py``'s ``Agent`` built as ``launchbay agent`` builds it (``Agent(settings,
conn=..., runtime=...)``, then ``run()``): every service and thread it starts (claim cycle and its
``events`` and ``pending`` threads, housekeeping and the reaper, inventory and GPU health, engine
health, heartbeat, sweeps, the supervisor's job threads), with ``agent/runtime_fake.py``'s
``FakeRuntime`` for Docker, so a job's container is a timer (``--run-s``) that exits 0.

What differs from ``launchbay agent`` (and nothing else): an agent's main loop runs on a thread of
its own (OS name ``launchbay-loop``) rather than its process's main thread; no signal handlers;
logs at WARNING. Each agent has its own Redis connection pool, as each ``launchbay agent`` has. ``tests/bench`` checks that
the threads of the agents here are those of a real ``launchbay agent`` process, one set per agent.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

from launchbay.agent.basics import start_thread
from launchbay.agent.daemon import Agent
from launchbay.agent.runtime_fake import FakeProgram, FakeRuntime
from launchbay.agent.settings import AgentSettings
from launchbay.redis_connection.connect import connect

#: The OS name prefix of every thread an agent starts (``basics.start_thread``).
THREAD_PREFIX = "launchbay-"


def thread_names(pid: int) -> Counter:
    """How many threads of process ``pid`` have each OS name (``/proc/PID/task/TID/comm``)."""
    names: Counter = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names[(task / "comm").read_text().strip()] += 1
        except OSError:  # the thread ended
            continue
    return names


def build(url: str, settings: List[AgentSettings], run_s: float) -> List[Agent]:
    """The agents as ``launchbay agent`` builds one: its own connection (``connect``), then ``Agent(...)``."""
    return [Agent(s, conn=connect(url), runtime=FakeRuntime(default=FakeProgram(run_s=run_s))) for s in settings]


def serve(url: str, settings: List[AgentSettings], run_s: float, shared: Tuple[Any, ...]) -> None:
    """A worker process: build and run the agents, say ready, wait for ``stop``, stop them, report."""
    ready, stop, out = shared
    logging.basicConfig(level=logging.WARNING)
    agents = build(url, settings, run_s)
    loops = [start_thread("loop", agent.run) for agent in agents]
    ready.put({"agents": len(agents), "pid": os.getpid()})
    stop.wait()
    for agent in agents:
        agent.request_stop()
    for loop in loops:
        loop.join(timeout=30)
    out.put(report(agents))


def report(agents: List[Agent]) -> Dict[str, int]:
    totals: Dict[str, int] = {"claimed": 0, "lost_races": 0}
    for agent in agents:
        snapshot = agent.counters.snapshot()
        for name in totals:
            totals[name] += int(snapshot.get(name, 0))
    return totals
