"""Placement: queue order, first fit, backfill, and the head job's reservation (agent/placement.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st
from launchbay.agent.placement import (
    NEVER,
    Candidate,
    Policy,
    claim_order,
    free_capacity,
    head_reservation,
    reserve,
    select,
)
from launchbay.queue_config.matching import CPU_EPSILON, Capacity, GpuInfo, Request, fit

NOW = 10_000.0


@dataclass(frozen=True)
class Running:
    job_id: str
    cpus: float
    memory_mib: int
    gpus: Tuple[str, ...]
    claimed_at: float
    max_runtime_s: Optional[int]


def gpus(count: int, name: str = "NVIDIA H200-141C") -> Tuple[GpuInfo, ...]:
    return tuple(
        GpuInfo(id=str(i), uuid=f"GPU-{i}", name=name, memory_total_mib=144384, memory_free_mib=144000)
        for i in range(count)
    )


def host(cpus: float = 8, memory_mib: int = 32768, slots: int = 8, gpu_count: int = 4, **labels: str) -> Capacity:
    return Capacity(cpus=cpus, memory_mib=memory_mib, slots=slots, gpus=gpus(gpu_count), labels=dict(labels))


def job(
    job_id: str, *, waited_s: float = 0.0, runtime_s: Optional[int] = None, position: int = 0, **request
) -> Candidate:
    return Candidate(
        job_id=job_id,
        queue=request.pop("queue", "default"),
        request=Request(**request),
        queued_at=NOW - waited_s,
        max_runtime_s=runtime_s,
        position=position,
    )


def test_the_first_job_in_queue_order_that_fits_starts():
    decision = select([job("a", cpus=1, position=0), job("b", cpus=1, position=1)], host(), [], NOW)
    assert decision.job_id == "a" and not decision.backfilled


def test_queues_come_in_the_agents_order_and_high_priority_first_within_a_queue():
    candidates = [
        Candidate("low", "gpu", Request(), NOW, priority="low", queue_rank=0, position=0),
        Candidate("normal", "gpu", Request(), NOW, priority="normal", queue_rank=0, position=1),
        Candidate("high", "gpu", Request(), NOW, priority="high", queue_rank=0, position=2),
        Candidate("cpu-high", "cpu", Request(), NOW, priority="high", queue_rank=1, position=0),
    ]
    assert select(candidates, host(), [], NOW).job_id == "high"
    assert select(candidates[:2] + candidates[3:], host(), [], NOW).job_id == "normal"


def test_jobs_that_could_never_fit_this_agent_are_skipped_and_do_not_block():
    candidates = [
        Candidate("elsewhere", "default", Request(), NOW - 10_000, constraints={"zone": "us"}),
        job("too-big", gpus=8, waited_s=10_000, position=1),
        job("small", cpus=1, position=2),
    ]
    assert select(candidates, host(zone="eu"), [], NOW).job_id == "small"


def test_a_small_job_backfills_past_a_head_job_that_does_not_fit_yet():
    running = [Running("r", 0, 0, ("0", "1"), NOW - 10, None)]
    candidates = [job("head", gpus=4, waited_s=5), job("small", gpus=1, position=1)]
    decision = select(candidates, host(), running, NOW, Policy(reserve_after_s=300))
    assert decision.job_id == "small" and decision.backfilled


def test_after_reserve_after_s_the_head_blocks_jobs_that_would_delay_it():
    # GPUs 0,1 run a job that never ends (no max runtime): the head needs all four GPUs.
    running = [Running("r", 0, 0, ("0", "1"), NOW - 10, None)]
    candidates = [job("head", gpus=4, waited_s=600), job("small", gpus=1, runtime_s=60, position=1)]
    assert select(candidates, host(), running, NOW, Policy(reserve_after_s=300)) is None
    reservation = head_reservation(candidates, host(), running, NOW, Policy(reserve_after_s=300))
    assert reservation.job_id == "head" and reservation.start_at == NEVER


def test_a_job_that_ends_before_the_heads_reservation_may_start():
    running = [Running("r", 0, 0, ("0", "1"), NOW - 100, 400)]  # ends at NOW + 300
    candidates = [
        job("head", gpus=4, waited_s=600),
        job("long", gpus=1, runtime_s=3600, position=1),
        job("short", gpus=1, runtime_s=200, position=2),
    ]
    # No credit for length here: with it, "long" (1 h) would rank ahead of the head (waited 10 min).
    decision = select(candidates, host(), running, NOW, Policy(reserve_after_s=300, long_job_credit=0))
    assert decision.job_id == "short" and decision.gpus in (("2",), ("3",))


def test_a_job_that_leaves_the_heads_reserved_resources_untouched_may_start():
    running = [Running("r", 4, 0, ("0", "1"), NOW - 100, 400)]
    candidates = [
        job("head", gpus=2, cpus=6, waited_s=600),  # will take GPUs 0,1 and 6 of 8 CPUs at NOW+300
        job("cpu-only", cpus=2, position=1),  # no GPUs, fits in the 2 CPUs the head leaves over
    ]
    decision = select(candidates, host(), running, NOW, Policy(reserve_after_s=300))
    assert decision.job_id == "cpu-only"


def test_the_reservation_is_the_earliest_moment_the_head_fits():
    running = [
        Running("a", 0, 0, ("0",), NOW - 10, 100),  # ends NOW+90
        Running("b", 0, 0, ("1",), NOW - 10, 1000),  # ends NOW+990
        Running("c", 0, 0, ("2",), NOW - 10, 50),  # ends NOW+40
    ]
    head = job("head", gpus=2, waited_s=600)
    reservation = reserve(head, host(), running, NOW)
    assert reservation.start_at == NOW + 40  # c frees GPU 2, which joins the idle GPU 3
    assert reservation.gpus == ("2", "3")


def test_selection_is_deterministic():
    candidates = [job(f"j{i}", gpus=1 + i % 2, cpus=1, position=i) for i in range(6)]
    first = select(candidates, host(), [], NOW)
    assert all(select(list(reversed(candidates)), host(), [], NOW) == first for _ in range(5))


def test_the_claim_order_is_what_select_picks_as_each_earlier_choice_is_taken_by_another_agent():
    head = job("head", gpus=4, cpus=1, position=0, waited_s=600, runtime_s=3600)
    candidates = [head, *(job(f"j{i}", gpus=1, cpus=1, position=i, runtime_s=60) for i in range(1, 6))]
    running = [Running("r", 1.0, 0, ("0",), NOW - 10, 100)]  # GPU 0 busy for 90 s more: the head waits
    order = claim_order(candidates, host(), running, NOW, Policy(reserve_after_s=300), limit=8)
    assert [d.job_id for d in order] == ["j1", "j2", "j3", "j4", "j5"]
    assert all(d.backfilled for d in order)  # each ends before the head's reservation
    assert [d.gpus for d in order] == [("1",), ("1",), ("1",), ("1",), ("1",)]  # each alone on a free host
    remaining = list(candidates)
    for decision in order:
        assert select(remaining, host(), running, NOW, Policy(reserve_after_s=300)) == decision
        remaining = [c for c in remaining if c.job_id != decision.job_id]
    assert claim_order(candidates, host(), running, NOW, limit=2) == order[:2]
    assert claim_order([head], host(), running, NOW, limit=8) == []


# -- properties ---------------------------------------------------------------------------------------

models = st.sampled_from(["NVIDIA H200-141C", "NVIDIA A100-SXM4-80GB"])


@st.composite
def hosts(draw) -> Capacity:
    gpu_list = tuple(
        GpuInfo(id=str(i), uuid=f"GPU-{i}", name=draw(models), memory_total_mib=81920, memory_free_mib=81920)
        for i in range(draw(st.integers(0, 6)))
    )
    return Capacity(
        cpus=float(draw(st.integers(1, 16))),
        memory_mib=draw(st.integers(1, 8)) * 1024,
        slots=draw(st.integers(1, 6)),
        gpus=gpu_list,
    )


@st.composite
def candidates(draw) -> List[Candidate]:
    out = []
    for i in range(draw(st.integers(1, 10))):
        request = Request(
            cpus=draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0])),
            memory_mib=draw(st.sampled_from([0, 512, 1024, 4096])),
            gpus=draw(st.integers(0, 3)),
            gpu_model=draw(st.sampled_from(["", "H200", "A100", "H200|A100"])),
        )
        out.append(
            Candidate(
                job_id=f"job{i}",
                queue="default",
                request=request,
                queued_at=NOW - draw(st.sampled_from([0.0, 100.0, 1000.0])),
                max_runtime_s=draw(st.sampled_from([None, 30, 300, 3000])),
                priority=draw(st.sampled_from(["high", "normal", "low"])),
                position=i,
            )
        )
    return out


def admit_all(pending: List[Candidate], capacity: Capacity, running: list, policy: Policy) -> list:
    """Call select until it says no, admitting each decision as the agent would."""
    admitted = []
    pending = list(pending)
    while True:
        decision = select(pending, capacity, running, NOW, policy)
        if decision is None:
            return admitted
        alloc = Running(decision.job_id, decision.cpus, decision.memory_mib, decision.gpus, NOW, decision.max_runtime_s)
        running.append(alloc)
        admitted.append((decision, next(c for c in pending if c.job_id == decision.job_id)))
        pending = [c for c in pending if c.job_id != decision.job_id]


@settings(max_examples=300, deadline=None)
@given(capacity=hosts(), pending=candidates(), reserve_after_s=st.sampled_from([0.0, 500.0]))
def test_placement_never_over_allocates_or_gives_a_gpu_twice(capacity, pending, reserve_after_s):
    running: list = []
    admitted = admit_all(pending, capacity, running, Policy(reserve_after_s=reserve_after_s))
    assert sum(a.cpus for a in running) <= capacity.cpus + CPU_EPSILON
    assert sum(a.memory_mib for a in running) <= capacity.memory_mib
    assert len(running) <= capacity.slots
    handed_out = [g for a in running for g in a.gpus]
    assert len(handed_out) == len(set(handed_out))
    names = {g.id: g.name for g in capacity.gpus}
    for decision, candidate in admitted:
        assert len(decision.gpus) == candidate.request.gpus
        assert len({names[g] for g in decision.gpus}) <= 1, "one model per job"


@settings(max_examples=300, deadline=None)
@given(capacity=hosts(), pending=candidates(), data=st.data())
def test_the_head_job_is_never_delayed_past_its_reservation(capacity, pending, data):
    # Some jobs run already, admitted in an earlier pass with known or unknown ends.
    running: list = []
    admit_all(pending[: len(pending) // 2], capacity, running, Policy(reserve_after_s=1e9))
    for i, alloc in enumerate(running):
        running[i] = Running(
            alloc.job_id,
            alloc.cpus,
            alloc.memory_mib,
            alloc.gpus,
            NOW - 50,
            data.draw(st.sampled_from([None, 100, 400])),
        )
    rest = [c for c in pending if c.job_id not in {a.job_id for a in running}]
    policy = Policy(reserve_after_s=0.0)  # every head holds a reservation
    reservation = head_reservation(rest, capacity, running, NOW, policy)
    before = list(running)
    admitted = admit_all(rest, capacity, running, policy)
    if reservation is None or any(d.job_id == reservation.job_id for d, _ in admitted):
        return
    head = next(c for c in rest if c.job_id == reservation.job_id)
    # At the reserved moment: every job expected to end by then has ended; the head must fit.
    if reservation.start_at == NEVER:
        still = [a for a in running if a not in before]  # no end is soon enough: none may be in the way
    else:
        still = [a for a in running if a.max_runtime_s is None or a.claimed_at + a.max_runtime_s > reservation.start_at]
    at_start = free_capacity(capacity, still)
    assert fit(head.request, head.constraints, at_start, live=False) is not None


def test_a_long_job_ranks_ahead_of_a_shorter_one_queued_a_little_earlier():
    # Slurm multifactor's idea, with length as the size: a 4 h job gets 2 h of waiting credited.
    candidates = [
        job("short", gpus=4, runtime_s=600, waited_s=600),
        job("long", gpus=4, runtime_s=4 * 3600, position=1),
    ]
    assert select(candidates, host(), [], NOW).job_id == "long"
    assert select(candidates, host(), [], NOW, Policy(long_job_credit=0)).job_id == "short"


def test_fair_share_puts_the_user_with_less_usage_first_within_a_priority_only():
    flood = [Candidate(f"f{i}", "q", Request(cpus=1), NOW - 100, position=i, submitter="ann") for i in range(5)]
    steady = Candidate("s0", "q", Request(cpus=1), NOW, position=5, submitter="bob")
    urgent = Candidate("h0", "q", Request(cpus=1), NOW, position=6, priority="high", submitter="ann")
    policy = Policy(usage={"q": {"ann": 5000.0, "bob": 10.0}})
    assert [c.job_id for c in claim_order([*flood, steady], host(), [], NOW, policy, limit=2)] == ["s0", "f0"]
    assert select([*flood, steady, urgent], host(), [], NOW, policy).job_id == "h0"
    assert select([*flood, steady], host(), [], NOW).job_id == "f0"  # no usage known: FIFO


def test_nothing_starts_ahead_of_a_held_head_job():
    running = [Running("victim", 0, 0, ("0", "1"), NOW - 100, None)]  # still stopping
    candidates = [job("urgent", gpus=4, position=0), job("small", gpus=1, position=1)]
    assert select(candidates, host(), running, NOW).job_id == "small"  # plain backfill
    assert select(candidates, host(), running, NOW, Policy(hold_for=frozenset({"urgent"}))) is None
