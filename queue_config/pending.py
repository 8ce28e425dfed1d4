"""Why a queued job waits: a stable code, one line for people, and when it may start.

:func:`explain` is pure: given a queued job, the live agents that matter (their capacity JSON and
ledger), the queue's paused flag and the submitter's quota and usage, it answers a
:class:`Pending`. Agents' passes write it onto the records (``agent/pending_pass.py`` through
``lifecycle.set_pending``); :func:`fleet` and :func:`current` let a reader (status, list) answer
for a queue no agent serves, where no pass could have written anything.

Codes (stable; scripts rely on them), in the order they are checked:

=============  ==================================================================
paused         the queue is paused (``launchbay queue resume``)
no_agent       no live agent serves the queue
never_fits     no live agent serving it could ever run it; names the largest and what it lacks
quota          starting it would take its submitter over the queue's quota
priority       jobs of higher priority ahead of it in its queue wait too
reserved       it would fit now, but the resources are held for an older job ahead of it
resources      waiting for resources; names what holds them
=============  ==================================================================

``estimated_start`` (epoch seconds) is when the running jobs' ``max_runtime`` guarantees enough
frees on some agent (Slurm's ``squeue --start``); None where a job in the way has no max runtime,
or for paused, no_agent, never_fits and quota.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import redis
from launchbay.queue_config import agents as agent_view
from launchbay.queue_config.agents import LedgerEntry, free_capacity
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity, Request, fit, misfit_reason
from launchbay.queue_config.quotas import ask_of, over_quota

PAUSED, NO_AGENT, NEVER_FITS, QUOTA = "paused", "no_agent", "never_fits", "quota"
PRIORITY, RESERVED, RESOURCES = "priority", "reserved", "resources"
CODES = (PAUSED, NO_AGENT, NEVER_FITS, QUOTA, PRIORITY, RESERVED, RESOURCES)
#: A job waiting for one of these holds nothing back for the jobs behind it.
NOT_IN_THE_WAY = frozenset({PAUSED, NO_AGENT, NEVER_FITS, QUOTA})
PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}


@dataclass(frozen=True)
class Pending:
    reason: str
    detail: str
    estimated_start: Optional[float] = None

    def fields(self) -> Dict[str, Any]:
        """As the record stores them (``job.PENDING_FIELDS``)."""
        return {"pending_reason": self.reason, "pending_detail": self.detail, "estimated_start": self.estimated_start}


@dataclass(frozen=True)
class AgentView:
    """One live agent as :func:`explain` reads it: its capacity JSON and its ledger."""

    capacity: Mapping[str, Any]
    entries: Sequence[LedgerEntry]

    @property
    def agent_id(self) -> str:
        return str(self.capacity.get("agent_id") or "")

    def total(self) -> Capacity:
        total = Capacity.from_capacity_json(self.capacity)
        sick = {str(g.get("id")) for g in self.capacity.get("gpus") or [] if (g.get("health") or "ok") != "ok"}
        return Capacity(
            total.cpus, total.memory_mib, total.slots, tuple(g for g in total.gpus if g.id not in sick), total.labels
        )


@dataclass(frozen=True)
class Ahead:
    """A job waiting ahead of the one explained, in the same queue."""

    job_id: str
    priority: str


def explain(
    record: JobRecord,
    agents: Sequence[AgentView],
    *,
    paused: bool,
    ahead: Sequence[Ahead] = (),
    quota: Optional[Mapping[str, float]] = None,
    usage: Optional[Mapping[str, float]] = None,
    user: str = "",
    now: float,
) -> Pending:
    """Why ``record`` (a queued job) waits; ``agents`` are the live ones (any queue), ``ahead`` the waiting
    jobs before it in its queue, ``quota``/``usage`` its submitter's (``user``: whom its key names, see
    ``acl.submitter_of``) limits and what they hold."""
    queue = record.queue
    if paused:
        return Pending(PAUSED, f"queue {queue} is paused; `launchbay queue resume {queue}` lets it start")
    serving = [a for a in agents if agent_view.serves(dict(a.capacity), queue)]
    if not serving:
        return Pending(NO_AGENT, f"no live agent serves queue {queue}")
    request = Request.from_dict(record.request)
    constraints = record.constraints
    misfits = {a.agent_id: misfit_reason(request, constraints, a.total()) for a in serving}
    if all(misfits.values()):
        largest = max(serving, key=lambda a: agent_view.size_key(dict(a.capacity)))
        return Pending(NEVER_FITS, f"fits no live agent; the largest, {largest.agent_id}: {misfits[largest.agent_id]}")
    over = over_quota(quota or {}, usage or {}, ask_of(request.__dict__))
    if over:
        return Pending(QUOTA, f"over {user or 'the user'}'s quota in queue {queue} ({over})")
    fitting = [a for a in serving if misfits[a.agent_id] is None]
    start = estimated_start(request, constraints, fitting, now)
    mine = PRIORITY_RANK.get(record.priority, 1)
    higher = [a.job_id for a in ahead if PRIORITY_RANK.get(a.priority, 1) < mine]
    if higher:
        return Pending(
            PRIORITY, f"behind {len(higher)} higher-priority job(s) in queue {queue}, first {higher[0]}", start
        )
    fits_now = any(
        fit(request, constraints, free_capacity(a.total(), a.entries), live=False) is not None for a in fitting
    )
    if fits_now and ahead:
        return Pending(RESERVED, f"fits now, but resources are held for job {ahead[0].job_id} ahead of it", start)
    return Pending(RESOURCES, "waiting for resources: " + busy_detail(request, fitting), start)


def busy_detail(request: Request, fitting: Sequence[AgentView]) -> str:
    """What holds the resources on the agents that could run the job, e.g. ``gpu-1: 2/2 GPUs (jobs a, b)``."""
    parts = []
    for view in fitting[:3]:
        total = view.total()
        used_gpus = sum(len(e.gpus) for e in view.entries)
        used_cpus = sum(e.cpus for e in view.entries)
        what = f"{used_gpus}/{len(total.gpus)} GPUs" if request.gpus else f"{used_cpus:g}/{total.cpus:g} CPUs"
        jobs = ", ".join(e.job_id for e in list(view.entries)[:3]) or "none"
        parts.append(f"{view.agent_id} has {what} busy (jobs {jobs})")
    return "; ".join(parts) or "every agent that fits it is busy"


def estimated_start(
    request: Request, constraints: Mapping[str, str], fitting: Sequence[AgentView], now: float
) -> Optional[float]:
    """The earliest time some agent certainly has room, from its jobs' ``claimed_at + max_runtime_s``."""
    best: Optional[float] = None
    for view in fitting:
        total = view.total()
        state = free_capacity(total, view.entries)
        if fit(request, constraints, state, live=False) is not None:
            return now
        for end, entry in sorted((_end(e), e) for e in view.entries if _end(e) is not None):
            gpus = [g for g in total.gpus if g.id in set(entry.gpus)]
            state = state.with_gpus(gpus, entry.cpus, entry.memory_mib)
            if fit(request, constraints, state, live=False) is not None:
                best = max(end, now) if best is None else min(best, max(end, now))  # type: ignore[type-var]
                break
    return best


def _end(entry: LedgerEntry) -> Optional[float]:
    return None if entry.max_runtime_s is None else entry.claimed_at + entry.max_runtime_s


# -- the read side: for readers that find no pass wrote a reason ----------------------------------


def fleet(conn: redis.Redis, keys: Keys) -> List[AgentView]:
    """Every live agent with its ledger, from the fleet summary (one read for many :func:`explain` calls)."""
    now_ms, lines = agent_view.read_summary(conn, keys)
    return [
        AgentView({**line.capacity, "agent_id": line.capacity.get("agent_id") or line.agent_id}, line.entries)
        for line in lines
        if line.alive(now_ms) and line.capacity is not None
    ]


def current(conn: redis.Redis, keys: Keys, record: JobRecord, views: Optional[List[AgentView]] = None) -> JobRecord:
    """``record`` with its pending fields as people should see them now.

    A queued job whose queue is paused or served by no live agent gets that reason whatever an
    earlier pass wrote (no pass runs for it); otherwise the record's own fields stand, and a queued
    job without any (enqueued a moment ago) gets ``estimated_start: null`` and an empty reason.
    """
    if record.state is not State.QUEUED:
        return record
    queue = record.queue
    views = fleet(conn, keys) if views is None else views
    if conn.hget(keys.queue(queue), "paused") == b"1":
        pending = explain(record, views, paused=True, now=0.0)
    elif not any(agent_view.serves(dict(v.capacity), queue) for v in views):
        pending = explain(record, views, paused=False, now=0.0)
    else:
        unset = {"pending_reason": None, "pending_detail": None, "estimated_start": None}
        return JobRecord.from_fields(record.id, {**unset, **record.fields})
    return JobRecord.from_fields(record.id, {**record.fields, **pending.fields()})
