"""Reading the queues and claiming jobs: the agent's only two conversations about queued work.

:class:`QueueReader` reads, for each queue the agent serves (in order, paused queues skipped), the
first ``lookahead`` job ids of its RQ queue and their records, and the agent's ledger: two pipelined
round trips, in which a job already seen costs only its state fields (read by ``job.waiting``, not
as a whole ``JobRecord``: that is once per listed job per pass), a job seen before that this agent
could never run (its capacity could not hold it) nothing, and a job seen for the first time what
placement needs of it (``job.QueuedJob``, one third of a ``JobRecord``'s cost). :class:`ClaimPass` asks
placement for the jobs it would take from that snapshot, best first, and :class:`Claimer` runs
``claim.lua`` on them, which re-checks each against Redis as it is *now* and claims the first it
still may (out of the RQ queue, allocation into the ledger, record to ``starting``). Jobs other
agents took since the read are lost races settled inside that one call. The pass keeps its read
after a claim (its own ledger it updates itself) and reads again only when the read has nothing
left to offer.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Sequence, Tuple

import redis
from launchbay.agent.ledger import LedgerEntry, decode_entries
from launchbay.agent.placement import Candidate, Decision, Policy, claim_order
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.acl import UNKNOWN_SUBMITTER
from launchbay.queue_config.job import PLACEMENT_FIELDS, WAITING_FIELDS, QueuedJob, waiting
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import ClaimScript
from launchbay.queue_config.matching import Capacity, Request, could_ever_fit
from launchbay.queue_config.quotas import Quotas, limits_json

from launchbay.errors import RedisUnavailableError
from launchbay.text import as_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """Queued jobs the agent could take, in queue order, and what its ledger holds."""

    candidates: List[Candidate]
    running: List[LedgerEntry]


#: The most queued jobs this agent can never run that a read looks past, per queue.
MAX_LOOK_PAST = 1024
#: Candidates handed to one claim.lua call: enough for the agents racing on one queue head.
CLAIM_BATCH = 8


@dataclass(frozen=True)
class ClaimResult:
    claimed: bool
    why: str  # "claimed", or the check the first candidate failed (see claim.lua)
    index: int = 0  # the candidate claimed (0-based); with none claimed, how many were tried


@functools.lru_cache(maxsize=1024)
def _warn_unreadable(job_id: str, problem: str) -> None:
    """Once per job and problem (cached), not on every pass while the job sits in its queue."""
    log.warning("job %s has an unreadable record (%s); skipping it", job_id, problem, extra={"job_id": job_id})


def _sane(request: Request) -> Request:
    """The request, if every amount is a finite number >= 0: a negative one would credit the ledger."""
    amounts = (request.cpus, request.memory_mib, request.gpus, request.gpu_memory_mib)
    if not all(math.isfinite(amount) and amount >= 0 for amount in amounts):
        raise ValueError(f"resource amounts must be finite and not negative, got {amounts}")
    return request


#: What placement needs of a queued record that does not change while it waits:
#: (request, queued_at, constraints, max_runtime_s, priority, submitter, nodes).
Parsed = Tuple[Request, float, Dict[str, str], Optional[int], str, str, int]


def _parse(job_id: str, queue: str, values: Sequence[Any]) -> Optional[Parsed]:
    """What a record (an HMGET of :data:`PLACEMENT_FIELDS`) says of the job, whatever its state; None
    when it cannot be used at all."""
    queued = QueuedJob.from_values(job_id, PLACEMENT_FIELDS, values)
    if queued.queue not in ("", queue):
        return None
    try:
        if queued.unreadable:
            raise ValueError(f"unreadable fields: {', '.join(queued.unreadable)}")
        request = _sane(Request.from_dict(queued.request))
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        # Anyone with write access to Redis can write a record: one bad record must not stop the pass.
        _warn_unreadable(job_id, str(exc))
        return None
    constraints = {str(k): str(v) for k, v in queued.constraints.items()}
    # whose it is: the key's owner (``QueuedJob.submitter``), not the field
    submitter = queued.submitter or UNKNOWN_SUBMITTER
    return (
        request,
        queued.queued_at,
        constraints,
        queued.max_runtime_s,
        queued.priority,
        submitter,
        max(1, queued.nodes),
    )


def _candidate(job_id: str, queue: str, rank: int, position: int, parsed: Parsed) -> Candidate:
    request, queued_at, constraints, max_runtime, priority, submitter, nodes = parsed
    return Candidate(
        job_id, queue, request, queued_at, constraints, max_runtime, priority, rank, position, submitter, nodes
    )


class QueueReader:
    """Reads snapshots for one agent, keeping what it parsed of each listed job between reads.

    A read costs two pipelined round trips: the queues' first ``lookahead`` ids (and whether each
    queue is paused), then the ledger and, per listed job, either its whole record (first sight) or
    only its :data:`job.WAITING_FIELDS`. A job whose ``queued_at`` moved is read whole again (a third round
    trip, rare). Only the jobs of the latest read are kept, so memory stays within the lookahead.
    """

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        agent_id: str,
        queues: Sequence[str],
        lookahead: int,
        *,
        config_seen: Optional[Callable[[str, Optional[bytes]], None]] = None,
    ) -> None:
        self.conn = conn
        #: told each queue's stored config JSON as read (``agent/queue_configs.py``)
        self.config_seen = config_seen
        self.keys = keys
        self.agent_id = agent_id
        self.queues = list(queues)
        self.lookahead = lookahead
        #: queue -> its quotas, as of the latest read
        self.quotas: Dict[str, Quotas] = {}
        #: (job id, queue) -> (queued_at as stored, what was parsed then, None if unusable)
        self._known: Dict[Tuple[str, str], Tuple[Optional[str], Optional[Parsed]]] = {}
        #: (job id, queue) -> whether it waited (queued, no cancel asked for), as of the latest read
        self._live: Dict[Tuple[str, str], bool] = {}
        #: queue -> how many listed jobs this agent could never run (read past them next time)
        self._look_past: Dict[str, int] = {}
        self._window_past: Dict[str, int] = {}
        #: whether a queue's window came back full in the latest read (more jobs may wait behind it)
        self.more_behind = False

    def read(self, could_run: Optional[Callable[[Candidate], bool]] = None) -> Snapshot:
        """The first ``lookahead`` queued jobs of each served queue that is not paused, and the ledger.

        With ``could_run`` (whether this agent could ever run a job), jobs it never could do not
        count against the lookahead: a queue whose head is full of them (a constraint no agent
        matches) is read further, up to :data:`MAX_LOOK_PAST` of them, so they do not starve
        the jobs behind them.
        """
        for _ in range(MAX_LOOK_PAST // max(1, self.lookahead) + 2):
            snapshot, full = self._read(could_run)
            self.more_behind = bool(full)
            if could_run is None:
                return snapshot
            blocked = Counter(c.queue for c in snapshot.candidates if not could_run(c))
            self._look_past = {q: min(count, MAX_LOOK_PAST) for q, count in blocked.items()}
            if not any(self._look_past.get(q, 0) > self._window_past.get(q, 0) for q in full):
                return snapshot  # no full window hid runnable jobs behind ones this agent cannot run
        return snapshot

    def _never_runs(self, job: Tuple[str, int, int, str], could_run: Optional[Callable[[Candidate], bool]]) -> bool:
        """Whether ``job`` (queue, rank, position, id), read before, is one this agent could never run."""
        queue, rank, position, job_id = job
        seen = self._known.get((job_id, queue))
        if could_run is None or seen is None or seen[1] is None:
            return False
        return not could_run(_candidate(job_id, queue, rank, position, seen[1]))

    def _read(self, could_run: Optional[Callable[[Candidate], bool]] = None) -> Tuple[Snapshot, List[str]]:
        """One read; also the queues whose window came back full (there may be more behind).

        A job seen before that ``could_run`` says this agent could never run is not read again while it
        stays listed: nothing its record says could make this agent claim it (what it asks for is kept
        from its first read), and whether it still waits matters only to an agent that could run it."""
        self._window_past = dict(self._look_past)
        windows = {queue: self.lookahead + self._window_past.get(queue, 0) for queue in self.queues}
        with self.conn.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                pipe.hmget(self.keys.queue(queue), ("paused", "config"))
                pipe.lrange(rq_bridge.rq_queue(self.conn, queue).key, 0, windows[queue] - 1)
            replies = pipe.execute()
        listed, full = [], []
        self.quotas = {queue: quotas_of(config) for queue, (_, config) in zip(self.queues, replies[0::2])}
        for queue, (_, config) in zip(self.queues, replies[0::2]):
            if self.config_seen is not None:
                self.config_seen(queue, config)
        for rank, (queue, (paused, _), ids) in enumerate(zip(self.queues, replies[0::2], replies[1::2])):
            if paused != b"1":
                listed += [(queue, rank, position, as_text(job_id)) for position, job_id in enumerate(ids)]
                if len(ids) >= windows[queue]:
                    full.append(queue)
        passed = {job for job in listed if self._never_runs(job, could_run)}
        read = [job for job in listed if job not in passed]
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.agent_ledger(self.agent_id))
            for queue, _, _, job_id in read:
                pipe.hmget(
                    self.keys.job(job_id), WAITING_FIELDS if (job_id, queue) in self._known else PLACEMENT_FIELDS
                )
            ledger_raw, *replies = pipe.execute()
        known = {(job_id, queue): self._known[(job_id, queue)] for queue, _, _, job_id in passed}
        # queued, and no cancel asked for
        live = {(job_id, queue): self._live.get((job_id, queue), True) for queue, _, _, job_id in passed}
        stale = []
        for (queue, _, _, job_id), values in zip(read, replies):
            key = (job_id, queue)
            waits, queued_at = waiting(values[: len(WAITING_FIELDS)])  # PLACEMENT_FIELDS begin with them
            if key not in self._known:
                known[key] = (queued_at, _parse(job_id, queue, values))
            elif queued_at != self._known[key][0]:
                stale.append(key)  # queued again since: read it whole
                continue
            else:
                known[key] = self._known[key]
            live[key] = waits
        self._read_whole(stale, known, live)
        self._known, self._live = known, live
        candidates = []
        for queue, rank, position, job_id in listed:
            parsed = known[(job_id, queue)][1]
            if parsed is not None and live[(job_id, queue)]:
                candidates.append(_candidate(job_id, queue, rank, position, parsed))
        return Snapshot(candidates=candidates, running=list(decode_entries(ledger_raw).values())), full

    def _read_whole(
        self, stale: List[Tuple[str, str]], known: Dict[Tuple[str, str], Any], live: Dict[Tuple[str, str], bool]
    ) -> None:
        """Read the jobs queued again since they were parsed whole again, into ``known`` and ``live``."""
        if not stale:
            return
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id, _ in stale:
                pipe.hmget(self.keys.job(job_id), PLACEMENT_FIELDS)
            for (job_id, queue), values in zip(stale, pipe.execute()):
                live[(job_id, queue)], queued_at = waiting(values[: len(WAITING_FIELDS)])
                known[(job_id, queue)] = (queued_at, _parse(job_id, queue, values))


@functools.lru_cache(maxsize=64)
def _parse_quotas(raw: bytes) -> Quotas:
    try:
        return Quotas.model_validate((json.loads(raw) or {}).get("quotas") or {})
    except (ValueError, TypeError, AttributeError):
        return Quotas()  # an unreadable config was refused by ``queue apply``; nothing to enforce


def quotas_of(config: Optional[bytes]) -> Quotas:
    """The quotas in a queue's stored config JSON (parsed once per distinct config)."""
    return _parse_quotas(config) if config else Quotas()


def read_snapshot(conn: redis.Redis, keys: Keys, agent_id: str, queues: Sequence[str], lookahead: int) -> Snapshot:
    """One read with nothing kept from before (:class:`QueueReader` keeps parsed records between reads)."""
    return QueueReader(conn, keys, agent_id, queues, lookahead).read()


def ledger_entry(decision: Decision, claimed_at: float) -> LedgerEntry:
    return LedgerEntry(
        job_id=decision.job_id,
        queue=decision.queue,
        cpus=decision.cpus,
        memory_mib=decision.memory_mib,
        gpus=tuple(decision.gpus),
        claimed_at=claimed_at,
        max_runtime_s=decision.max_runtime_s,
        user=decision.user,
    )


#: Quotas by queue name, as :class:`QueueReader` read them (None: no quotas).
QuotaMap = Optional[Mapping[str, Quotas]]


def _limits(quotas: QuotaMap, entry: LedgerEntry) -> str:
    quota = (quotas or {}).get(entry.queue)
    return limits_json(quota.for_user(entry.user) if quota is not None else {})


class Claimer:
    """Claims for one agent through ``lifecycle.ClaimScript`` (``claim.lua``)."""

    def __init__(self, conn: redis.Redis, keys: Keys, *, agent_id: str, host: str) -> None:
        self.conn = conn
        self.keys = keys
        self.agent_id = agent_id
        self.host = host
        self._script = ClaimScript(conn, keys, agent_id=agent_id, host=host)

    def claim(
        self, entry: LedgerEntry, capacity: Capacity, *, now: Optional[float] = None, quotas: QuotaMap = None
    ) -> ClaimResult:
        """Claim ``entry.job_id`` with the allocation ``entry`` if Redis still agrees it is free to take."""
        return self.claim_first([entry], capacity, now=now, quotas=quotas)

    def claim_first(
        self,
        entries: Sequence[LedgerEntry],
        capacity: Capacity,
        *,
        now: Optional[float] = None,
        quotas: QuotaMap = None,
    ) -> ClaimResult:
        """Claim the first of ``entries`` that Redis still agrees to, in one atomic call.

        ``quotas`` (queue -> :class:`Quotas`) are checked against each entry's user's usage in the
        same step; a queue without an entry there has no quota.
        """
        if not entries:
            raise ValueError("claim_first needs at least one candidate")
        now = time.time() if now is None else now
        claimed, why, index = self._script(
            [
                (entry.job_id, entry.queue, entry.to_json(), entry.gpus, entry.user, _limits(quotas, entry))
                for entry in entries
            ],
            cpus=capacity.cpus,
            memory_mib=capacity.memory_mib,
            slots=capacity.slots,
            gpus=json.dumps([g.id for g in capacity.gpus]),
            now=now,
        )
        return ClaimResult(claimed=claimed, why=why, index=index - 1 if claimed else index)

    def replicated(self, job_id: str) -> bool:
        """Whether a replica confirmed the claim of ``job_id`` (over ``redis+sentinel://``; else always).

        An unconfirmed claim is not launched: the sweep puts it back in its queue (docs/multi-host.md).
        """
        try:
            self._script.confirm(job_id)
        except (RedisUnavailableError, redis.RedisError) as exc:
            log.warning("job %s not started: %s", job_id, exc, extra={"job_id": job_id})
            return False
        return True


#: The gang service's hold of one member of a multi-node job: (candidate, allocation, capacity) -> held.
HoldMember = Callable[[Candidate, LedgerEntry, Capacity], bool]


class ClaimPass:
    """One pass of claims over one read of the queues (by ``reader``), as the agent's main loop runs it.

    :meth:`next` claims the next job that fits ``capacity`` (or returns None when nothing more
    does). ``skip`` holds job ids not to try (the agent's running jobs). A multi-node job that
    placement picks is handed to ``hold`` instead of the claim script (a held member counts in the
    pass's ledger like a claim). The read is kept after a
    claim, with the claim added to its ledger, and made again only when it has nothing left to
    offer but may be out of date: lost races or refusals, holds, or claims from a read that saw a
    full window (more jobs wait behind it). Claims alone from a read that saw every queued job
    leave nothing new to find: a job enqueued since wakes the agent (it offered itself before the
    pass), which makes a new pass and a new read.
    """

    def __init__(
        self,
        claimer: Claimer,
        reader: QueueReader,
        *,
        policy: Policy,
        skip: Collection[str] = (),
        batch: int = CLAIM_BATCH,
        hold: Optional[HoldMember] = None,
    ) -> None:
        self.claimer = claimer
        self.hold = hold
        self.reader = reader
        self.policy = policy
        self.batch = batch
        self.skip = set(skip)
        self.reads = 0
        self.lost_races = 0
        self.claimed = 0
        self._snapshot: Optional[Snapshot] = None
        self._stale = False

    @property
    def snapshot(self) -> Optional[Snapshot]:
        """The read the pass works from (with its own claims in its ledger), None before the first."""
        return self._snapshot

    def next(self, capacity: Capacity, now: Optional[float] = None) -> Optional[Tuple[LedgerEntry, Decision]]:
        """Claim the next job that fits; its ledger entry and placement decision, or None."""
        now = time.time() if now is None else now
        while True:
            if self._snapshot is None:
                self._snapshot = self.reader.read(lambda c: could_ever_fit(c.request, c.constraints, capacity))
                self.reads += 1
                self._stale = False
            candidates = [c for c in self._snapshot.candidates if c.job_id not in self.skip]
            decisions = claim_order(candidates, capacity, self._snapshot.running, now, self.policy, limit=self.batch)
            if not decisions:
                if not self._stale:
                    return None
                self._snapshot = None  # lost races or our own claims made the read out of date
                continue
            entries = [ledger_entry(decision, now) for decision in decisions]
            gangs = {c.job_id: c for c in candidates if c.nodes > 1}
            first_gang = next((i for i, d in enumerate(decisions) if d.job_id in gangs), None)
            if first_gang == 0:  # a multi-node job's member is held, not claimed (agent/gang_assembly.py)
                self.skip.add(entries[0].job_id)
                if self.hold is not None and self.hold(gangs[entries[0].job_id], entries[0], capacity):
                    self._snapshot.running.append(entries[0])
                    self._stale = True
                continue
            entries = entries[:first_gang]
            result = self.claimer.claim_first(entries, capacity, now=now, quotas=self.reader.quotas)
            tried = result.index + 1 if result.claimed else result.index
            self.skip.update(entry.job_id for entry in entries[:tried])
            self.lost_races += result.index
            self._stale = self._stale or not result.claimed or result.index > 0 or self.reader.more_behind
            if not result.claimed:
                log.debug("claims refused, first because: %s", result.why)
                continue
            entry = entries[result.index]
            self._snapshot.running.append(entry)
            self.claimed += 1
            return entry, decisions[result.index]
