"""Victim choice for preemption (agent/preemption.py): fewest victims, youngest first, never equal or higher."""

from __future__ import annotations

from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.preemption import Running, choose
from launchbay.queue_config.matching import Capacity, GpuInfo, Request

NOW = 10_000.0


def host(gpu_count: int = 4, cpus: float = 16) -> Capacity:
    devices = tuple(GpuInfo(str(i), f"GPU-{i}", "NVIDIA H100", 81920, 81920) for i in range(gpu_count))
    return Capacity(cpus=cpus, memory_mib=65536, slots=8, gpus=devices)


def run(job_id: str, gpus, *, age_s: float, priority: str = "low", preemptible: bool = True, min_runtime_s: int = 0):
    alloc = LedgerEntry(job_id, "q", 1.0, 1024, tuple(gpus), claimed_at=NOW - age_s, max_runtime_s=None)
    return Running(alloc, priority, preemptible, min_runtime_s)


def want(gpus: int) -> Request:
    return Request(cpus=1, memory_mib=1024, gpus=gpus)


def test_two_gpus_free_the_two_youngest_one_gpu_jobs():
    running = [run("old", ["0"], age_s=900), run("mid", ["1"], age_s=600), run("new", ["2"], age_s=60)]
    running.append(run("newest", ["3"], age_s=10))
    chosen = choose("h", want(2), {}, "high", host(), running, NOW)
    assert chosen is not None
    assert chosen.victims == ("newest", "new")
    assert sorted(chosen.gpus) == ["2", "3"]


def test_one_wide_victim_beats_two_young_narrow_ones():
    running = [run("wide", ["0", "1"], age_s=5000), run("a", ["2"], age_s=5), run("b", ["3"], age_s=6)]
    chosen = choose("h", want(2), {}, "high", host(), running, NOW)
    assert chosen is not None and chosen.victims == ("wide",)


def test_never_equal_or_higher_priority_and_never_normal():
    for priority in ("high", "normal"):
        running = [run(f"r{i}", [str(i)], age_s=100, priority=priority) for i in range(4)]
        assert choose("h", want(1), {}, "high", host(), running, NOW) is None
    low = [run(f"r{i}", [str(i)], age_s=100) for i in range(4)]
    assert choose("n", want(1), {}, "normal", host(), low, NOW) is None
    assert choose("l", want(1), {}, "low", host(), low, NOW) is None


def test_jobs_younger_than_the_minimum_runtime_or_of_a_queue_without_preemption_are_spared():
    running = [
        run("young", ["0"], age_s=30, min_runtime_s=60),
        run("closed", ["1"], age_s=900, preemptible=False),
        run("ok", ["2"], age_s=900, min_runtime_s=60),
        run("high", ["3"], age_s=900, priority="high"),
    ]
    chosen = choose("h", want(1), {}, "high", host(), running, NOW)
    assert chosen is not None and chosen.victims == ("ok",)
    assert choose("h", want(2), {}, "high", host(), running, NOW) is None  # nothing stopped in vain


def test_nothing_is_stopped_when_the_job_fits_already():
    running = [run("a", ["0"], age_s=900)]
    assert choose("h", want(2), {}, "high", host(), running, NOW) is None


def test_cpus_count_too():
    running = [run(f"c{i}", [], age_s=100 + i) for i in range(4)]  # 4 CPUs of 4 held by CPU-only jobs
    chosen = choose("h", Request(cpus=2, memory_mib=1024), {}, "high", host(cpus=4), running, NOW)
    assert chosen is not None and chosen.victims == ("c0", "c1")
