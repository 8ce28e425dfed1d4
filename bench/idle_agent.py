"""Idle agent: CPU time and peak memory of ``launchbay agent`` serving 3 empty queues.

The agent is started as users start it (``launchbay agent -q a -q b -q c``, default settings:
heartbeat every 3 s, fallback poll and reaper every 5 s, inventory every 10 s) against a private
Redis, and left alone until its status is ``healthy``. Then its process and any children
(nvidia-smi probes) are sampled with psutil every second for the window (60 s; 20 s with
``--quick``): CPU time (user + system, children included) and RSS (the process plus its live
children). The CPU row shows 5-second windows; it is judged on the mean over the whole window.

    .venv/bin/python bench/idle_agent.py [--seconds 60] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List

import psutil
import redis
from _common import AgentProcess, RedisServer, Row, apply_queues, at_most, emit

QUEUES = ("idle-a", "idle-b", "idle-c")
CPU_TARGET_PCT = 1.0
RSS_TARGET_MB = 100.0
WINDOW_S = 5


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in proc.children(recursive=True):
        try:
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
        except psutil.Error:
            continue
    return total


def rss_mb(proc: psutil.Process) -> float:
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total / 1e6


def measure(seconds: int) -> Dict[str, Any]:
    with RedisServer() as server:
        apply_queues(redis.Redis.from_url(server.url), *QUEUES)
        with AgentProcess(server.url, QUEUES, agent_id="bench-idle") as agent:
            proc = psutil.Process(agent.proc.pid)
            began_cpu, began = cpu_seconds(proc), time.monotonic()
            cpu, rss, window_cpu, window_began = [], [], began_cpu, began
            while time.monotonic() - began < seconds:
                time.sleep(1.0)
                rss.append(rss_mb(proc))
                now = time.monotonic()
                if now - window_began >= WINDOW_S - 0.01:
                    used = cpu_seconds(proc)
                    cpu.append(100 * (used - window_cpu) / (now - window_began))
                    window_cpu, window_began = used, now
            mean_pct = 100 * (cpu_seconds(proc) - began_cpu) / (time.monotonic() - began)
    return {
        "seconds": seconds,
        "queues": list(QUEUES),
        "cpu_pct_windows": cpu,
        "cpu_pct_mean": mean_pct,
        "rss_mb_samples": rss,
    }


def rows(result: Dict[str, Any]) -> List[Row]:
    seconds = result["seconds"]
    return [
        at_most(
            f"idle agent: CPU (% of a core), {seconds} s",
            result["cpu_pct_windows"],
            CPU_TARGET_PCT,
            judged=result["cpu_pct_mean"],
            target=f"mean < {CPU_TARGET_PCT:g}%",
            note=f"mean over the {seconds} s: {result['cpu_pct_mean']:.2f}%; min/median/max over {WINDOW_S}-s windows",
        ),
        at_most(
            f"idle agent: RSS (MB), {seconds} s",
            result["rss_mb_samples"],
            RSS_TARGET_MB,
            judged=max(result["rss_mb_samples"]),
            target=f"peak < {RSS_TARGET_MB:g} MB",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, help="how long to watch (default 60, 20 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a 20-second window")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    result = measure(options.seconds or (20 if options.quick else 60))
    emit(rows(result), result, options.json, f"Idle agent, 3 empty queues, {result['seconds']} s")


if __name__ == "__main__":
    main()
