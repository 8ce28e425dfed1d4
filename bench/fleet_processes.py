"""Idle agents as separate ``launchbay agent`` processes: Redis commands per agent with 2 and with 16 of them.

``bench/fleet.py`` packs many agents into a few processes; this runs each as users do, one
``launchbay agent`` process per agent (Docker as the machine has it), against one redis-server
with the same idle scene (three queued jobs no agent can run, one open sweep whose trial cannot run
either). Once every agent has beaten and the waiting jobs have their reason, INFO commandstats over
``--idle-s`` gives the Redis commands per second per agent. Target: 16 agents within 1.3x of 2.

    .venv/bin/python bench/fleet_processes.py [--sizes 2,16] [--idle-s 15] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import redis
from _common import AgentProcess, RedisServer, Row, apply_queues, at_most, emit, wait_until
from fleet import QUEUE, delta, idle_scene, redis_counters, settled

TARGET_RATIO = 1.3


def measure(size: int, idle_s: float) -> Dict[str, Any]:
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="lb-fleet-procs-") as folder:
        conn = redis.Redis.from_url(server.url)
        apply_queues(conn, QUEUE)
        waiting = idle_scene(conn, Path(folder))
        with contextlib.ExitStack() as stack:
            for n in range(size):
                stack.enter_context(AgentProcess(server.url, [QUEUE], agent_id=f"proc-{n:02d}", max_jobs=4))
            wait_until(lambda: settled(conn, size, waiting), 300, f"{size} agents to settle", every_s=0.5)
            start = redis_counters(conn)
            time.sleep(idle_s)  # the phase's length is the measurement
            idle = delta(start, redis_counters(conn))
    per_s = idle["commands"] / idle["at"]
    return {
        "agents": size,
        "idle_commands_s": per_s,
        "idle_commands_s_per_agent": per_s / size,
        "idle_core_share": idle["cpu_s"] / idle["at"],
        "idle_by_name_s": {k[4:]: round(v / idle["at"], 2) for k, v in idle.items() if k.startswith("cmd_") and v},
    }


def rows(sizes: List[Dict[str, Any]]) -> List[Row]:
    out = [
        Row(
            f"agent processes, {s['agents']} idle: Redis commands/s per agent",
            [s["idle_commands_s_per_agent"]],
            note=f"whole fleet {s['idle_commands_s']:.0f} commands/s, Redis {100 * s['idle_core_share']:.2f}% of a core",
        )
        for s in sizes
    ]
    small, large = sizes[0], sizes[-1]
    ratio = large["idle_commands_s_per_agent"] / small["idle_commands_s_per_agent"]
    out.append(
        at_most(
            f"agent processes idle: commands/s per agent, {large['agents']} vs {small['agents']}",
            [large["idle_commands_s_per_agent"]],
            TARGET_RATIO,
            baseline=small["idle_commands_s_per_agent"],
            ratio=ratio,
            judged=ratio,
            target=f"ratio <= {TARGET_RATIO:g}",
            note="separate `launchbay agent` processes, real Docker; three unrunnable jobs and one open sweep",
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,16", help="numbers of agent processes, comma-separated")
    parser.add_argument("--idle-s", type=float, default=15.0, help="length of the measured idle phase")
    parser.add_argument("--quick", action="store_true", help="a 10 s idle phase")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    idle_s = 10.0 if options.quick else options.idle_s
    sizes = [measure(int(s), idle_s) for s in options.sizes.split(",")]
    emit(rows(sizes), {"sizes": sizes, "idle_s": idle_s}, options.json, "Idle agents as separate processes")


if __name__ == "__main__":
    main()
