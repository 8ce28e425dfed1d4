"""Users sharing one host: does fair share give each user their share, and the steady users short waits?

The trace (:func:`users_trace`, seeded): user ``flood`` submits ``flood_jobs`` 1-GPU jobs in the
first minute; users ``steady-1`` and ``steady-2`` each submit a 1- or 2-GPU job every 15 minutes
for ``hours`` hours. The host and the agent's policy are simulate.py's; fair share keeps usage as
the agent does (added when a job ends, half-life 1 day).

Busy period: from the first submission to the steady users' last one (all three users want the
host throughout). Each user's fair share of the GPU time in it is max-min fair (water-filling: no
user gets more than they asked for, the rest is split evenly), where what a steady user asks for is
the GPU time of their jobs submitted in it (clipped at its end). Jain's index over
``received / fair share`` is 1.0 when every user got exactly their share.

Targets: Jain's index >= 0.95 with fair share; the steady users' median wait <= 0.5 x their median
wait under strict FIFO.
"""

from __future__ import annotations

import random
import statistics
from typing import Any, Dict, List, Sequence

from _common import Row, at_least, at_most
from launchbay.agent.placement import Policy
from launchbay.queue_config.sharing import DEFAULT_HALF_LIFE_S
from simulate import Schedule, TraceJob, UsageBook, host, simulate

STEADY = ("steady-1", "steady-2")
FLOOD = "flood"


def users_trace(flood_jobs: int = 56, hours: float = 12.0, seed: int = 11) -> List[TraceJob]:
    rng = random.Random(seed)
    jobs = []
    for i in range(flood_jobs):
        runtime = rng.randint(3600, 4 * 3600)
        jobs.append(TraceJob(f"f{i:04d}", rng.uniform(0, 60), 1, 8, 32, runtime, 2 * runtime, FLOOD))
    for user in STEADY:
        t = rng.uniform(0, 900)
        while t < hours * 3600:
            runtime = rng.randint(600, 1800)
            jobs.append(TraceJob(f"{user}-{int(t)}", t, rng.choice((1, 2)), 8, 32, runtime, 2 * runtime, user))
            t += 900
    return sorted(jobs, key=lambda j: j.submit_s)


def water_fill(demand: Dict[str, float], capacity: float) -> Dict[str, float]:
    """Max-min fair shares of ``capacity``: no one above their demand, the rest split evenly."""
    share: Dict[str, float] = {}
    left, users = capacity, sorted(demand, key=demand.get)
    for index, user in enumerate(users):
        share[user] = min(demand[user], left / (len(users) - index))
        left -= share[user]
    return share


def jain(values: Sequence[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def shares(jobs: Sequence[TraceJob], schedule: Schedule, gpus: int) -> Dict[str, Dict[str, float]]:
    """Per user over the busy period: GPU-hours received, their fair share, and the ratio."""
    end = max(j.submit_s for j in jobs if j.user in STEADY)
    got: Dict[str, float] = {}
    demand: Dict[str, float] = {}
    for job in jobs:
        start, stop = schedule.starts[job.job_id], schedule.ends[job.job_id]
        got[job.user] = got.get(job.user, 0.0) + job.gpus * max(0.0, min(stop, end) - min(start, end))
        if job.submit_s < end:
            demand[job.user] = demand.get(job.user, 0.0) + job.gpus * min(job.runtime_s, end - job.submit_s)
    fair = water_fill(demand, gpus * end)
    return {u: {"gpu_h": got[u] / 3600, "fair_gpu_h": fair[u] / 3600, "ratio": got[u] / fair[u]} for u in sorted(got)}


def steady_median_wait_s(jobs: Sequence[TraceJob], schedule: Schedule) -> float:
    return statistics.median(schedule.starts[j.job_id] - j.submit_s for j in jobs if j.user in STEADY)


def measure(gpus: int, cpus: float, memory_gib: float, reserve_after_s: float, lookahead: int) -> Dict[str, Any]:
    jobs = users_trace()
    capacity = host(gpus, cpus, memory_gib)
    policy = Policy(reserve_after_s=reserve_after_s)
    fair = simulate(jobs, capacity, policy, lookahead, UsageBook(DEFAULT_HALF_LIFE_S))
    fifo = simulate(jobs, capacity, policy, 1)
    return {
        "jobs": len(jobs),
        "fair_share": {"shares": shares(jobs, fair, gpus), "steady_median_wait_s": steady_median_wait_s(jobs, fair)},
        "fifo": {"shares": shares(jobs, fifo, gpus), "steady_median_wait_s": steady_median_wait_s(jobs, fifo)},
    }


def rows(result: Dict[str, Any]) -> List[Row]:
    fair, fifo = result["fair_share"], result["fifo"]
    fair_jain = jain([s["ratio"] for s in fair["shares"].values()])
    fifo_jain = jain([s["ratio"] for s in fifo["shares"].values()])
    users = ", ".join(f"{u} {s['gpu_h']:.0f}/{s['fair_gpu_h']:.0f}" for u, s in fair["shares"].items())
    out = [
        at_least(
            "users: Jain's index of GPU-h / fair share",
            [fair_jain],
            0.95,
            baseline=fifo_jain,
            judged=fair_jain,
            target=">= 0.95 (baseline: FIFO)",
            note=f"GPU-h received / fair share over the busy period: {users}",
        ),
        at_most(
            "users: steady users' median wait (min)",
            [fair["steady_median_wait_s"] / 60],
            0.5,
            baseline=fifo["steady_median_wait_s"] / 60,
            ratio=fair["steady_median_wait_s"] / fifo["steady_median_wait_s"],
            target="ratio to FIFO <= 0.5",
        ),
    ]
    for user, figures in fair["shares"].items():
        out.append(
            Row(
                f"users: {user} GPU-h / fair share",
                [figures["gpu_h"]],
                baseline=figures["fair_gpu_h"],
                ratio=figures["ratio"],
                note="information",
            )
        )
    return out
