"""Packing: a discrete-event simulation that drives the agent's own placement policy on a simulated host.

The host is one agent with 8 GPUs of one model, 64 CPUs and 512 GiB (``--gpus``, ``--cpus``,
``--memory-gib``) and the agent's default ``max_jobs``, ``lookahead`` and ``reserve_after_s``. At every
arrival and every job end the simulated agent does what ``ClaimCycle.run_pass`` does: it hands the
first ``lookahead`` queued jobs, its capacity and its running allocations (``LedgerEntry``, with
``claimed_at`` and ``max_runtime_s``) to ``launchbay.agent.placement.select`` with the simulated
clock as ``now``, starts the answer, and asks again until the answer is None. Fits, GPU choice,
backfill and reservations are therefore exactly the agent's code. Between events nothing can
start: a reservation only ever holds jobs back, and the agent also acts only when woken.

Baselines: strict FIFO is the same ``select`` shown only the head of the queue (it starts when it
fits, nothing passes it); the ideal bound on the makespan is max(total GPU time / GPUs, last
arrival + its runtime).

Targets: makespan within 10% of the bound; GPU utilization (GPU time / (GPUs x makespan)) at
least 1.2 x FIFO's; 8-GPU jobs' mean wait at most 1.5 x their mean wait under FIFO; no job waiting
more than 2 x its FIFO wait + 600 s.

Users (bench/fairshare.py): a generated trace where one user floods and two submit steadily, run
with fair share (usage kept as the agent keeps it) and under strict FIFO; each user's GPU-hours
over the busy period against their max-min fair share (Jain's index >= 0.95) and the steady users'
median wait (<= 0.5 x FIFO's).

    .venv/bin/python bench/simulate.py [TRACE.csv] [--json]
    TRACE.csv columns: job_id,submit_s,gpus,cpus,memory_gib,runtime_s,max_runtime_s
"""

from __future__ import annotations

import argparse
import csv
import heapq
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _common import BENCH_DIR, Row, at_least, at_most, emit
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.placement import Candidate, Policy, select
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config.matching import Capacity, GpuInfo, Request
from launchbay.queue_config.sharing import decayed
from launchbay.queue_config.usage import billing

DEFAULT_TRACE = BENCH_DIR / "traces" / "seed7-500.csv"
AGENT_DEFAULTS = AgentSettings.model_fields
GPU_NAME = "NVIDIA H100 80GB HBM3"
GPU_MEMORY_MIB = 81559
WAIT_SLACK_S = 600
END, ARRIVAL = 0, 1  # at the same moment, jobs end before new ones arrive


@dataclass(frozen=True)
class TraceJob:
    job_id: str
    submit_s: float
    gpus: int
    cpus: float
    memory_gib: float
    runtime_s: float
    max_runtime_s: Optional[int]
    user: str = "unknown"

    def candidate(self, position: int) -> Candidate:
        request = Request(cpus=self.cpus, memory_mib=int(self.memory_gib * 1024), gpus=self.gpus)
        return Candidate(
            self.job_id,
            "sim",
            request,
            queued_at=self.submit_s,
            max_runtime_s=self.max_runtime_s,
            position=position,
            submitter=self.user,
        )


@dataclass
class Schedule:
    """When each job started and ended, and on which GPUs."""

    starts: Dict[str, float] = field(default_factory=dict)
    ends: Dict[str, float] = field(default_factory=dict)
    gpus: Dict[str, Tuple[str, ...]] = field(default_factory=dict)


def load_trace(path: Path) -> List[TraceJob]:
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    jobs = [
        TraceJob(
            r["job_id"],
            float(r["submit_s"]),
            int(r["gpus"]),
            float(r["cpus"]),
            float(r["memory_gib"]),
            float(r["runtime_s"]),
            int(float(r["max_runtime_s"])) if r.get("max_runtime_s") else None,
        )
        for r in rows
    ]
    return sorted(jobs, key=lambda j: j.submit_s)


def host(gpus: int, cpus: float, memory_gib: float) -> Capacity:
    devices = tuple(
        GpuInfo(str(i), f"GPU-sim-{i}", GPU_NAME, GPU_MEMORY_MIB, 0, GPU_MEMORY_MIB, 0) for i in range(gpus)
    )
    return Capacity(cpus, int(memory_gib * 1024), AGENT_DEFAULTS["max_jobs"].default, devices)


def simulate(
    jobs: Sequence[TraceJob],
    capacity: Capacity,
    policy: Policy,
    lookahead: int,
    usage: Optional[UsageBook] = None,
) -> Schedule:
    """Run the trace through ``select``; ``lookahead`` 1 is strict FIFO. With ``usage``, fair share:
    each job's GPU- and CPU-seconds are added to its user's usage when it ends, as the agent does."""
    by_id = {job.job_id: job for job in jobs}
    events = [(job.submit_s, ARRIVAL, index, job.job_id) for index, job in enumerate(jobs)]
    heapq.heapify(events)
    queue: List[Candidate] = []
    running: Dict[str, LedgerEntry] = {}
    schedule = Schedule()
    while events:
        now = events[0][0]
        while events and events[0][0] == now:
            _, kind, index, job_id = heapq.heappop(events)
            if kind == END:
                ended = running.pop(job_id)
                if usage is not None:
                    usage.add(by_id[job_id], ended.claimed_at, now)
            else:
                queue.append(by_id[job_id].candidate(index))
        while queue:
            if usage is not None:
                policy = replace(policy, usage={"sim": usage.billing(now)})
            decision = select(queue[:lookahead], capacity, list(running.values()), now, policy)
            if decision is None:
                break
            check_fits(decision.gpus, decision.cpus, capacity, running)
            job = by_id[decision.job_id]
            running[job.job_id] = LedgerEntry(
                job.job_id,
                "sim",
                decision.cpus,
                decision.memory_mib,
                decision.gpus,
                claimed_at=now,
                max_runtime_s=decision.max_runtime_s,
            )
            queue = [c for c in queue if c.job_id != job.job_id]
            schedule.starts[job.job_id], schedule.gpus[job.job_id] = now, decision.gpus
            schedule.ends[job.job_id] = now + job.runtime_s
            heapq.heappush(events, (now + job.runtime_s, END, 0, job.job_id))
    if queue:
        raise RuntimeError(f"{len(queue)} jobs never started, e.g. {queue[0].job_id}")
    return schedule


@dataclass
class UsageBook:
    """Each user's decayed GPU- and CPU-seconds, as ``launchbay:usage:<queue>`` keeps them (usage.py)."""

    half_life_s: float
    figures: Dict[str, Tuple[float, float, float]] = field(default_factory=dict)  # user -> (gpu_s, cpu_s, at)

    def add(self, job: TraceJob, started: float, now: float) -> None:
        gpu_s, cpu_s, at = self.figures.get(job.user, (0.0, 0.0, now))
        keep = decayed(1.0, now - at, self.half_life_s)
        seconds = now - started
        self.figures[job.user] = (gpu_s * keep + job.gpus * seconds, cpu_s * keep + job.cpus * seconds, now)

    def billing(self, now: float) -> Dict[str, float]:
        return billing(
            {
                user: {"gpu_s": decayed(g, now - at, self.half_life_s), "cpu_s": decayed(c, now - at, self.half_life_s)}
                for user, (g, c, at) in self.figures.items()
            },
            {},
        )


def check_fits(gpus: Sequence[str], cpus: float, capacity: Capacity, running: Dict[str, LedgerEntry]) -> None:
    """The simulation's own guard: the policy never hands out a GPU twice or more CPUs than there are."""
    taken = {g for entry in running.values() for g in entry.gpus}
    if taken & set(gpus) or sum(e.cpus for e in running.values()) + cpus > capacity.cpus + 1e-9:
        raise AssertionError(f"the policy over-committed the host: GPUs {gpus} with {sorted(taken)} taken")


@dataclass(frozen=True)
class Summary:
    makespan_s: float
    utilization: float
    utilization_to_last_arrival: float  # while jobs still arrive: packing without the final drain
    waits_s: Dict[str, float]

    def mean_wait(self, jobs: Sequence[TraceJob]) -> float:
        return statistics.fmean(self.waits_s[j.job_id] for j in jobs) if jobs else 0.0


def summarize(jobs: Sequence[TraceJob], schedule: Schedule, gpus: int) -> Summary:
    makespan = max(schedule.ends.values())
    gpu_time = sum(j.gpus * j.runtime_s for j in jobs)
    waits = {j.job_id: schedule.starts[j.job_id] - j.submit_s for j in jobs}
    last = max(j.submit_s for j in jobs)
    busy = sum(j.gpus * max(0.0, min(schedule.ends[j.job_id], last) - schedule.starts[j.job_id]) for j in jobs)
    return Summary(makespan, gpu_time / (gpus * makespan), busy / (gpus * last) if last else 1.0, waits)


def ideal_bound_s(jobs: Sequence[TraceJob], gpus: int) -> float:
    last = max(jobs, key=lambda j: j.submit_s)
    return max(sum(j.gpus * j.runtime_s for j in jobs) / gpus, last.submit_s + last.runtime_s)


def measure(trace: Path, gpus: int, cpus: float, memory_gib: float, reserve_after_s: float, lookahead: int) -> Dict:
    jobs = load_trace(trace)
    capacity = host(gpus, cpus, memory_gib)
    policy = Policy(reserve_after_s=reserve_after_s)
    backfill = summarize(jobs, simulate(jobs, capacity, policy, lookahead), gpus)
    fifo = summarize(jobs, simulate(jobs, capacity, policy, 1), gpus)
    widest = [j for j in jobs if j.gpus == max(job.gpus for job in jobs)]
    return {
        "trace": str(trace),
        "jobs": len(jobs),
        "host": {"gpus": gpus, "cpus": cpus, "memory_gib": memory_gib},
        "reserve_after_s": reserve_after_s,
        "lookahead": lookahead,
        "bound_s": ideal_bound_s(jobs, gpus),
        "widest_gpus": widest[0].gpus if widest else 0,
        "gpus_by_job": {j.job_id: j.gpus for j in jobs},
        "backfill": _summary_dict(backfill, jobs, widest),
        "fifo": _summary_dict(fifo, jobs, widest),
    }


def _summary_dict(summary: Summary, jobs: Sequence[TraceJob], widest: Sequence[TraceJob]) -> Dict[str, Any]:
    waits = sorted(summary.waits_s.values())
    return {
        "makespan_s": summary.makespan_s,
        "utilization": summary.utilization,
        "utilization_to_last_arrival": summary.utilization_to_last_arrival,
        "mean_wait_s": summary.mean_wait(jobs),
        "p95_wait_s": waits[int(0.95 * (len(waits) - 1))],
        "max_wait_s": waits[-1],
        "widest_mean_wait_s": summary.mean_wait(widest),
        "waits_s": summary.waits_s,
    }


def rows(result: Dict[str, Any]) -> List[Row]:
    bf, fifo, bound, widest = result["backfill"], result["fifo"], result["bound_s"], result["widest_gpus"]
    wide_waits = [w / 60 for j, w in bf["waits_s"].items() if result["gpus_by_job"][j] == widest]
    over = {j: w / (2 * fifo["waits_s"][j] + WAIT_SLACK_S) for j, w in bf["waits_s"].items()}
    late = sorted(j for j, r in over.items() if r > 1)
    return [
        at_most(
            "packing: makespan (h), backfill",
            [bf["makespan_s"] / 3600],
            1.10,
            baseline=bound / 3600,
            ratio=bf["makespan_s"] / bound,
            target="ratio to ideal bound <= 1.10",
        ),
        Row(
            "packing: makespan (h), strict FIFO",
            [fifo["makespan_s"] / 3600],
            baseline=bound / 3600,
            ratio=fifo["makespan_s"] / bound,
            note="baseline",
        ),
        at_least(
            "packing: GPU utilization (%)",
            [100 * bf["utilization"]],
            1.2,
            baseline=100 * fifo["utilization"],
            ratio=bf["utilization"] / fifo["utilization"],
            target="ratio to FIFO >= 1.2",
        ),
        at_most(
            f"packing: {widest}-GPU jobs' wait (min)",
            wide_waits,
            1.5,
            baseline=fifo["widest_mean_wait_s"] / 60,
            ratio=bf["widest_mean_wait_s"] / fifo["widest_mean_wait_s"],
            target="mean, ratio to FIFO <= 1.5",
            note="min/median/max over those jobs; baseline and ratio compare the means",
        ),
        at_most(
            "packing: wait / (2 x FIFO wait + 600 s)",
            list(over.values()),
            1.0,
            ratio=max(over.values()),
            target="max over jobs <= 1.0",
            note=f"{len(late)} job(s) over" + (f": {', '.join(late[:5])}" if late else ""),
        ),
    ]


def comparison(result: Dict[str, Any]) -> str:
    """The two policies and the bound side by side (hours, minutes)."""
    columns = [
        ("makespan h", lambda s: f"{s['makespan_s'] / 3600:.1f}"),
        ("GPU util", lambda s: f"{100 * s['utilization']:.1f}%"),
        ("util to last arrival", lambda s: f"{100 * s['utilization_to_last_arrival']:.1f}%"),
        ("mean wait m", lambda s: f"{s['mean_wait_s'] / 60:.1f}"),
        ("p95 wait m", lambda s: f"{s['p95_wait_s'] / 60:.1f}"),
        ("max wait m", lambda s: f"{s['max_wait_s'] / 60:.1f}"),
        (f"{result['widest_gpus']}-GPU wait m", lambda s: f"{s['widest_mean_wait_s'] / 60:.1f}"),
    ]
    lines = ["".ljust(24) + "".join(name.rjust(len(name) + 2) for name, _ in columns)]
    lines.append("ideal bound".ljust(24) + f"{result['bound_s'] / 3600:.1f}".rjust(len(columns[0][0]) + 2))
    for label, summary in (("strict FIFO", result["fifo"]), ("backfill (agent policy)", result["backfill"])):
        lines.append(label.ljust(24) + "".join(show(summary).rjust(len(name) + 2) for name, show in columns))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", type=Path, default=DEFAULT_TRACE, help=f"default {DEFAULT_TRACE.name}")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs of the simulated host (default 8)")
    parser.add_argument("--cpus", type=float, default=64, help="CPUs of the simulated host (default 64)")
    parser.add_argument("--memory-gib", type=float, default=512, help="memory of the simulated host (default 512)")
    parser.add_argument(
        "--reserve-after-s",
        type=float,
        default=AGENT_DEFAULTS["reserve_after_s"].default,
        help="the agent setting (default: the agent's default)",
    )
    parser.add_argument(
        "--lookahead",
        type=int,
        default=AGENT_DEFAULTS["lookahead"].default,
        help="the agent setting (default: the agent's default)",
    )
    parser.add_argument("--quick", action="store_true", help="accepted for bench/run; the simulation is the same")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    result = measure(
        options.trace, options.gpus, options.cpus, options.memory_gib, options.reserve_after_s, options.lookahead
    )
    title = (
        f"Packing: {result['jobs']} jobs from {options.trace.name} on {options.gpus} GPUs, {options.cpus:g} CPUs; "
        f"reserve_after_s {options.reserve_after_s:g}, lookahead {options.lookahead}"
    )
    if not options.json:
        print(title)
        print(comparison(result))
        print()
    users = fairshare.measure(
        options.gpus, options.cpus, options.memory_gib, options.reserve_after_s, options.lookahead
    )
    shown = {k: v for k, v in result.items() if k != "gpus_by_job"}
    shown["users"] = users
    shown["backfill"], shown["fifo"] = (
        {k: v for k, v in result[name].items() if k != "waits_s"} for name in ("backfill", "fifo")
    )
    emit(rows(result) + fairshare.rows(users), shown, options.json, "Judged against the targets:")


import fairshare  # noqa: E402  (it imports this module's simulation)

if __name__ == "__main__":
    main()
