"""Commands per job, step by step: Redis's MONITOR while one job goes from enqueue to released with one agent.

A private redis-server, one agent (``agent/daemon.py``'s ``Agent`` as ``launchbay agent`` builds it,
``fleet_agents.build``: every thread and service, Docker replaced by the fake runtime, a container
that exits 0 at once) and the client's ``enqueue`` on a connection of its own. A first job warms
things up (scripts loaded, queue config cached, the agent on its queue's idle list); then MONITOR
records every command Redis runs, Lua scripts' inner commands included (as INFO commandstats
counts them), while a second job goes from enqueue until the agent has released it and gone quiet.

The agent's periodic work is set far apart (heartbeat, the safety-net poll, the reaper and the
inventory by their settings; the pending thread's pass and the sweep driver's look, which run on a
timer whatever the jobs do, by their intervals), so that what is counted is what the job costs;
``bench/fleet.py``'s one-agent row counts the same job with that work running beside it (and INFO
commandstats, not MONITOR).

Steps, by markers in the order Redis ran the commands (the agent's threads run side by side, so a
command another thread ran at that moment counts in the step it fell in; the total is exact):
enqueue (to the wake-up it publishes), claim (to ``claim.lua`` and its inner commands), start (to the
``running`` transition), the run and end (to the release script), release (the rest).

    .venv/bin/python bench/commands_per_job.py [--json] [--show]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import queue
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

import redis
from _common import RedisServer, Row, apply_queues, at_most, emit, wait_until
from fleet_agents import build
from launchbay.agent.basics import start_thread
from launchbay.agent.settings import AgentSettings
from launchbay.client import enqueue
from launchbay.queue_config.lifecycle import CLAIM_LUA, TRANSITION_LUA
from launchbay.queue_config.quotas import RELEASE_LUA
from launchbay.sweeps import driver

QUEUE = "perjob"
SPEC = {"name": "bench-perjob", "image": "none", "command": ["true"]}
#: The issue's target (issue 24): commands per job with one agent.
TARGET = 40
#: What this tree needs today; tests/bench/test_commands_per_job.py fails when a job costs more.
BUDGET = 78
#: Quiet this long after the release: the agent has done what the job set off.
QUIET_S = 1.0
#: Far apart: the heartbeat, the safety-net poll, the reaper and the inventory do not run in the window.
SLOW_S = 600.0
STEPS = ("enqueue", "claim", "start", "end", "release")
_MARKER = "launchbay-commands-per-job"


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


def agent_settings(folder: Path) -> AgentSettings:
    return AgentSettings(
        agent_id="perjob",
        host="perjob-host",
        queues=[QUEUE],
        max_jobs=4,
        state_dir=folder / "agent",
        heartbeat_interval_s=SLOW_S,
        heartbeat_ttl_s=2 * SLOW_S,
        poll_interval_s=SLOW_S,
        reaper_interval_s=SLOW_S,
        inventory_refresh_s=SLOW_S,
    )


def watch(url: str, lines: queue.SimpleQueue[Dict[str, Any]], ready: threading.Event) -> None:
    """Every command Redis runs, into ``lines``, until our end marker."""
    conn = redis.Redis.from_url(url)
    with conn.monitor() as monitor:
        ready.set()
        for line in monitor.listen():
            lines.put(line)
            if line["command"] == f"ECHO {_MARKER}-end":
                return


def one_job(url: str, agent: Any, client: redis.Redis) -> str:
    """Enqueue one job and wait until the agent has released it (read from the agent, not from Redis)."""
    released = agent.counters.snapshot().get("finished", 0) + 1
    job_id = enqueue(SPEC, QUEUE, conn=client).id
    wait_until(lambda: agent.counters.snapshot().get("finished", 0) >= released, 30, f"job {job_id} to finish")
    wait_until(lambda: not agent.supervisor.running_job_ids(), 30, f"job {job_id} to be released")
    return job_id


def recorded(url: str, agent: Any) -> List[Dict[str, Any]]:
    """MONITOR's lines for one warm job: a first job, then the one recorded."""
    client = redis.Redis.from_url(url, single_connection_client=True)
    one_job(url, agent, client)
    time.sleep(QUIET_S)
    lines: queue.SimpleQueue[Dict[str, Any]] = queue.SimpleQueue()
    ready = threading.Event()
    watcher = threading.Thread(target=watch, args=(url, lines, ready), daemon=True)
    watcher.start()
    ready.wait(10)
    client.echo(f"{_MARKER}-begin")
    one_job(url, agent, client)
    seen: List[Dict[str, Any]] = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < QUIET_S:
        try:
            seen.append(lines.get(timeout=0.1))
            quiet_since = time.monotonic()
        except queue.Empty:
            pass
    client.echo(f"{_MARKER}-end")
    watcher.join(10)
    while not lines.empty():
        seen.append(lines.get())
    return seen


def steps(lines: List[Dict[str, Any]]) -> List[Tuple[str, str]]:
    """(step, command) for each command the job cost, from the enqueue on."""
    begin = next(i for i, line in enumerate(lines) if line["command"] == f"ECHO {_MARKER}-begin")
    claim, transition, release = _sha(CLAIM_LUA), _sha(TRANSITION_LUA), _sha(RELEASE_LUA)
    step, after_claim, out = "enqueue", False, []
    for line in lines[begin + 1 :]:
        command = line["command"]
        if command.startswith(f"ECHO {_MARKER}"):
            continue
        words = command.split()
        if after_claim and line.get("client_type") != "lua":  # claim.lua's inner commands are the claim's
            step, after_claim = "start", False
        if words[0] == "EVALSHA" and words[1] == transition and step == "start" and "running" not in words[4:5]:
            step = "end"
        elif words[0] == "EVALSHA" and words[1] == release:
            step = "release"
        out.append((step, command))
        if step == "enqueue" and line.get("client_type") == "lua" and words[0] == "PUBLISH":
            step = "claim"  # the enqueue's last command: its wake-up of the idle agent
        elif words[0] == "EVALSHA" and words[1] == claim:
            after_claim = True
    return out


def measure(show: bool = False) -> Dict[str, Any]:
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="lb-perjob-") as folder:
        conn = redis.Redis.from_url(server.url)
        apply_queues(conn, QUEUE)
        driver.LOOK_INTERVAL_S = driver.DRIVE_INTERVAL_S = SLOW_S  # the sweep driver's timer (no sweep here)
        (agent,) = build(server.url, [agent_settings(Path(folder))], 0.0)
        agent.claims.pending.interval_s = SLOW_S  # why queued jobs wait: a timer, and no job waits here
        loop = start_thread("loop", agent.run)
        try:
            wait_until(lambda: conn.lrange(f"launchbay:idle:{QUEUE}", 0, -1), 30, "the agent to offer itself")
            lines = recorded(server.url, agent)
        finally:
            agent.request_stop()
            loop.join(30)
    counted = steps(lines)
    if show:
        for step, command in counted:
            print(f"{step:8} {command[:160]}")
    per_step = Counter(step for step, _ in counted)
    return {
        "total": len(counted),
        "steps": {step: per_step.get(step, 0) for step in STEPS},
        "by_command": dict(Counter(command.split()[0] for _, command in counted).most_common()),
        "budget": BUDGET,
        "target": TARGET,
    }


def rows(result: Dict[str, Any]) -> List[Row]:
    per_step = ", ".join(f"{step} {count}" for step, count in result["steps"].items())
    return [
        at_most(
            "Redis commands per job, one agent (MONITOR)",
            [result["total"]],
            TARGET,
            target=f"<= {TARGET}",
            note=f"{per_step}; budget {BUDGET} (tests/bench/test_commands_per_job.py)",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    parser.add_argument("--show", action="store_true", help="list every command counted, with its step")
    options = parser.parse_args()
    result = measure(show=options.show and not options.json)
    emit(rows(result), result, options.json, "Commands per job: one agent, fake runtime, MONITOR")
    if options.show and options.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
