"""Which running jobs a waiting ``high`` job may stop on this agent. Pure: no Redis, no Docker.

Rules (the queue's ``preemption`` option, docs/sharing.md): only a ``high`` job preempts, and
only jobs of lower priority (``low``; never ``normal`` or ``high``, never an equal priority), of a
queue that allows preemption, that have run at least ``min_runtime_before_preempt``. Of the sets of
such jobs whose resources, given back, let the waiting job fit on this one agent, the one with the
fewest jobs wins; among sets of one size, the youngest jobs (latest claimed) go first, so the
least work is lost. None when no set is enough: nothing is stopped in vain.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple

from launchbay.queue_config.agents import AllocationLike, free_capacity
from launchbay.queue_config.matching import Capacity, Request, fit

#: Priorities a waiting job may preempt, by its own priority.
MAY_PREEMPT = {"high": frozenset({"low"})}
#: The most running jobs considered as victims (sets grow as 2^n; an agent runs a few jobs).
MAX_CONSIDERED = 16


@dataclass(frozen=True)
class Running:
    """A running job as preemption sees it: its allocation, priority, and its queue's rules."""

    alloc: AllocationLike
    priority: str
    preemptible: bool  # its queue has preemption enabled
    min_runtime_s: int = 0


@dataclass(frozen=True)
class Preemption:
    """Stop ``victims`` (job ids, youngest first) so that the waiting job fits on ``gpus``."""

    job_id: str
    victims: Tuple[str, ...]
    gpus: Tuple[str, ...]


def eligible(waiting_priority: str, running: Sequence[Running], now: float) -> list:
    """The running jobs the waiting job may stop, youngest first."""
    allowed = MAY_PREEMPT.get(waiting_priority, frozenset())
    chosen = [
        r for r in running if r.preemptible and r.priority in allowed and now - r.alloc.claimed_at >= r.min_runtime_s
    ]
    chosen.sort(key=lambda r: (-r.alloc.claimed_at, r.alloc.job_id))
    return chosen[:MAX_CONSIDERED]


def choose(
    job_id: str,
    request: Request,
    constraints: Mapping[str, str],
    waiting_priority: str,
    capacity: Capacity,
    running: Sequence[Running],
    now: float,
) -> Optional[Preemption]:
    """The fewest, youngest victims that make room for the waiting job, or None."""
    if fit(request, constraints, free_capacity(capacity, [r.alloc for r in running]), live=False) is not None:
        return None  # it fits already: nothing to stop
    candidates = eligible(waiting_priority, running, now)
    for size in range(1, len(candidates) + 1):
        for victims in itertools.combinations(candidates, size):
            stopped = {v.alloc.job_id for v in victims}
            rest = [r.alloc for r in running if r.alloc.job_id not in stopped]
            gpus = fit(request, constraints, free_capacity(capacity, rest), live=False)
            if gpus is not None:
                return Preemption(job_id, tuple(v.alloc.job_id for v in victims), tuple(gpus))
    return None
