"""Which queued job should this agent start next, and on which GPUs? Pure: no Redis, no Docker.

The agent reads a snapshot (the first jobs of each queue it serves, its capacity, its ledger) and
asks :func:`select`; the claim script then makes the answer true atomically or reports a lost race.
The issue-6 simulator calls :func:`select` directly.

Order: the agent's queues in the order given, inside a queue ``high`` before ``normal`` before
``low``; within a priority, fair share (the job of the user with the least recent usage,
``Policy.usage``, goes first; with no usage known, all users are equal), then the time the job was
queued less a credit for its length (``Policy.long_job_credit`` seconds per second of
``max_runtime``, as Slurm's multifactor job-size factor: long jobs start earlier so that they do not
run alone at the end), then queue position. The first job that fits starts.

Backfill with a reservation (EASY backfill, as Slurm's ``sched/backfill``): the first job in that
order that does not fit now is the *head*. Jobs behind it may start in its place while it waits,
but once the head has waited ``reserve_after_s`` it gets a reservation: the earliest moment it
fits when the running jobs end at ``claimed_at + max_runtime_s`` (a job with no max runtime never
ends as far as planning goes), and the resources it will take then. From then on a job behind the
head starts only if it ends before that moment, or if it leaves the head's reserved resources
untouched (it fits in what is left over at that moment). The head is then never delayed past its
reservation by a job started after it. Planning ignores the GPUs' live free memory, which no one
can predict; the head still needs it when its moment comes.

Jobs that could never fit this agent (labels, sizes, GPU models) are skipped and never become
the head: they are waiting for another agent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from launchbay.queue_config.agents import AllocationLike, free_capacity
from launchbay.queue_config.matching import CPU_EPSILON, Capacity, GpuInfo, Request, could_ever_fit, fit

PRIORITY_ORDER = {"high": 0, "normal": 1, "low": 2}
NEVER = math.inf


@dataclass(frozen=True)
class Candidate:
    """A queued job as placement sees it."""

    job_id: str
    queue: str
    request: Request
    queued_at: float
    constraints: Mapping[str, str] = field(default_factory=dict)
    max_runtime_s: Optional[int] = None
    priority: str = "normal"
    queue_rank: int = 0  # its queue's place among the agent's queues, 0 first
    position: int = 0  # its place in that queue
    submitter: str = "unknown"
    #: A multi-node job's member count: its request is per member, each member held by another agent.
    nodes: int = 1

    def order_key(self, policy: Optional[Policy] = None) -> Tuple[int, int, float, float, int, str]:
        policy = policy or Policy()
        usage = policy.usage.get(self.queue, {}).get(self.submitter, 0.0) if policy.usage else 0.0
        credit = policy.long_job_credit * (self.max_runtime_s or 0)
        rank = PRIORITY_ORDER.get(self.priority, 1)
        return (self.queue_rank, rank, usage, self.queued_at - credit, self.position, self.job_id)


@dataclass(frozen=True)
class Policy:
    """Placement knobs; ``reserve_after_s`` is how long the head job waits before it holds resources."""

    reserve_after_s: float = 300.0
    #: Seconds of waiting credited per second of ``max_runtime`` (0: plain FIFO within a user).
    long_job_credit: float = 0.5
    #: Fair share: ``{queue: {user: decayed usage / weight}}`` (queue_config/usage.py); empty: FIFO.
    usage: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    #: Jobs that, as the head, let nothing behind them start (a ``high`` job that preempted for its
    #: room: the freed resources must not go to the jobs behind it, its victims included).
    hold_for: frozenset = frozenset()


@dataclass(frozen=True)
class Decision:
    """Start ``job_id`` with these resources (the claim script's allocation)."""

    job_id: str
    queue: str
    cpus: float
    memory_mib: int
    gpus: Tuple[str, ...]
    max_runtime_s: Optional[int]
    backfilled: bool = False  # started ahead of a head job that waits
    user: str = ""  # the job's submitter, whose quota the claim counts it in


@dataclass(frozen=True)
class Reservation:
    """When the head job will fit (``start_at``, may be ``NEVER``), on which GPUs, and what it leaves over."""

    job_id: str
    start_at: float
    gpus: Tuple[str, ...]
    leftover: Capacity

    def allows(self, candidate: Candidate, free: Capacity, now: float) -> Optional[Tuple[str, ...]]:
        """The GPUs ``candidate`` may start on without delaying the head, or None."""
        ends_in_time = self.start_at != NEVER and candidate.max_runtime_s is not None
        if ends_in_time and now + candidate.max_runtime_s <= self.start_at:
            return fit(candidate.request, candidate.constraints, free)
        request = candidate.request
        left = self.leftover
        if left.slots < 1 or request.cpus > left.cpus + CPU_EPSILON or request.memory_mib > left.memory_mib:
            return None
        untouched = replace(free, gpus=tuple(g for g in free.gpus if g.id not in self.gpus))
        return fit(request, candidate.constraints, untouched)


def expected_end(alloc: AllocationLike) -> float:
    """``claimed_at + max_runtime_s``; ``NEVER`` when the job has no max runtime."""
    return NEVER if alloc.max_runtime_s is None else alloc.claimed_at + alloc.max_runtime_s


def ordered(candidates: Iterable[Candidate], policy: Optional[Policy] = None) -> List[Candidate]:
    policy = policy or Policy()
    return sorted(candidates, key=lambda c: c.order_key(policy))


def reserve(head: Candidate, capacity: Capacity, running: Sequence[AllocationLike], now: float) -> Reservation:
    """Plan the head job's start: release running jobs in order of expected end until it fits."""
    state = free_capacity(capacity, running)
    start_at = now
    by_end: Dict[float, List[AllocationLike]] = {}
    for alloc in running:
        by_end.setdefault(max(expected_end(alloc), now), []).append(alloc)
    ends = iter(sorted(by_end))
    gpus = fit(head.request, head.constraints, state, live=False)
    while gpus is None:
        start_at = next(ends, None)
        if start_at is None:  # cannot happen for a job that could ever fit; plan for never
            return Reservation(head.job_id, NEVER, (), Capacity(0.0, 0, 0, (), dict(capacity.labels)))
        for alloc in by_end[start_at]:
            state = state.with_gpus(_gpu_infos(capacity, alloc.gpus), alloc.cpus, alloc.memory_mib)
        gpus = fit(head.request, head.constraints, state, live=False)
    leftover = state.without(head.request.cpus, head.request.memory_mib, gpus)
    return Reservation(head.job_id, start_at, gpus, leftover)


def _gpu_infos(capacity: Capacity, gpu_ids: Iterable[str]) -> List[GpuInfo]:
    return [g for g in (capacity.gpu(i) for i in gpu_ids) if g is not None]


def _decision(candidate: Candidate, gpus: Tuple[str, ...], *, backfilled: bool) -> Decision:
    return Decision(
        job_id=candidate.job_id,
        queue=candidate.queue,
        cpus=candidate.request.cpus,
        memory_mib=candidate.request.memory_mib,
        gpus=tuple(gpus),
        max_runtime_s=candidate.max_runtime_s,
        backfilled=backfilled,
        user=candidate.submitter,
    )


def select(
    candidates: Iterable[Candidate],
    capacity: Capacity,
    running: Sequence[AllocationLike],
    now: float,
    policy: Optional[Policy] = None,
) -> Optional[Decision]:
    """The next job to start and its GPUs, or None when nothing may start now.

    ``capacity`` is everything the agent may hand out (with its labels and the GPUs' live figures),
    ``running`` the allocations in its ledger, ``now`` epoch seconds. Deterministic: the same
    inputs give the same answer.
    """
    policy = policy or Policy()
    return _select_ordered(ordered(candidates, policy), capacity, running, now, policy)


def _select_ordered(
    candidates: Sequence[Candidate], capacity: Capacity, running: Sequence[AllocationLike], now: float, policy: Policy
) -> Optional[Decision]:
    """:func:`select` for candidates already in :func:`ordered` order."""
    free = free_capacity(capacity, running)
    head: Optional[Candidate] = None
    reservation: Optional[Reservation] = None
    for candidate in candidates:
        if not could_ever_fit(candidate.request, candidate.constraints, capacity):
            continue
        if head is None:
            gpus = fit(candidate.request, candidate.constraints, free)
            if gpus is not None:
                return _decision(candidate, gpus, backfilled=False)
            head = candidate
            if candidate.job_id in policy.hold_for:
                return None  # it preempted for its room: nothing behind it starts before it does
            if now - candidate.queued_at >= policy.reserve_after_s:
                reservation = reserve(candidate, capacity, running, now)
            continue
        if reservation is None:
            gpus = fit(candidate.request, candidate.constraints, free)
        else:
            gpus = reservation.allows(candidate, free, now)
        if gpus is not None:
            return _decision(candidate, gpus, backfilled=True)
    return None


def claim_order(
    candidates: Iterable[Candidate],
    capacity: Capacity,
    running: Sequence[AllocationLike],
    now: float,
    policy: Optional[Policy] = None,
    *,
    limit: int,
) -> List[Decision]:
    """Up to ``limit`` decisions, best first: :func:`select`'s answer, then its answer were that job
    gone (taken by another agent), and so on. The claim script takes the first Redis still agrees to.
    """
    policy = policy or Policy()
    remaining = ordered(candidates, policy)
    decisions: List[Decision] = []
    while len(decisions) < limit:
        decision = _select_ordered(remaining, capacity, running, now, policy)
        if decision is None:
            break
        decisions.append(decision)
        remaining = [c for c in remaining if c.job_id != decision.job_id]
    return decisions


def head_reservation(
    candidates: Iterable[Candidate],
    capacity: Capacity,
    running: Sequence[AllocationLike],
    now: float,
    policy: Optional[Policy] = None,
) -> Optional[Reservation]:
    """The reservation :func:`select` holds for the head job now, if any (for status output and tests)."""
    policy = policy or Policy()
    free = free_capacity(capacity, running)
    for candidate in ordered(candidates, policy):
        if not could_ever_fit(candidate.request, candidate.constraints, capacity):
            continue
        if fit(candidate.request, candidate.constraints, free) is not None:
            return None
        if now - candidate.queued_at < policy.reserve_after_s:
            return None
        return reserve(candidate, capacity, running, now)
    return None
