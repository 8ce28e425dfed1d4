"""Reading the queues and claiming one job: the agent's only two conversations about queued work.

:func:`read_snapshot` reads, for each queue the agent serves (in order, paused queues skipped), the
first ``lookahead`` job ids of its RQ queue and their records, and the agent's ledger: two pipelined
round trips. Placement picks from that snapshot; :class:`Claimer` then runs ``claim.lua``, which
re-checks everything against Redis as it is *now* and either claims the job (out of the RQ queue,
allocation into the ledger, record to ``starting``) or says why not. A lost race is normal: the
agent tries its next candidate from the same snapshot (the script re-checks it against Redis).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict, List, Optional, Sequence

import redis
from launchbay.agent.ledger import LedgerEntry, decode_entries
from launchbay.agent.placement import Candidate, Decision
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity, Request
from launchbay.queue_config.records import encode_fields

log = logging.getLogger(__name__)

CLAIM_SCRIPT = resources.files("launchbay.agent").joinpath("claim.lua").read_text(encoding="utf-8")
RECORD_FIELDS = (
    "state",
    "queue",
    "request",
    "constraints",
    "priority",
    "queued_at",
    "max_runtime_s",
    "cancel_requested",
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Snapshot:
    """Queued jobs the agent could take, in queue order, and what its ledger holds."""

    candidates: List[Candidate]
    running: List[LedgerEntry]


@dataclass(frozen=True)
class ClaimResult:
    claimed: bool
    why: str  # "claimed", or the check that failed (see claim.lua)


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


def _candidate(job_id: str, queue: str, queue_rank: int, position: int, values: Sequence[Any]) -> Optional[Candidate]:
    fields = dict(zip(RECORD_FIELDS, (None if v is None else _text(v) for v in values)))
    if fields["state"] != "queued" or fields["cancel_requested"] == "1":
        return None
    if fields["queue"] not in (None, queue):
        return None
    try:
        request = _sane(Request.from_dict(json.loads(fields["request"] or "{}")))
        constraints = {str(k): str(v) for k, v in (json.loads(fields["constraints"] or "{}") or {}).items()}
        max_runtime = int(fields["max_runtime_s"]) if fields["max_runtime_s"] else None
        queued_at = float(fields["queued_at"] or 0.0)
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        # Anyone with write access to Redis can write a record: one bad record must not stop the pass.
        _warn_unreadable(job_id, str(exc))
        return None
    return Candidate(
        job_id=job_id,
        queue=queue,
        request=request,
        queued_at=queued_at,
        constraints=constraints,
        max_runtime_s=max_runtime,
        priority=fields["priority"] or "normal",
        queue_rank=queue_rank,
        position=position,
    )


def read_snapshot(conn: redis.Redis, keys: Keys, agent_id: str, queues: Sequence[str], lookahead: int) -> Snapshot:
    """The first ``lookahead`` queued jobs of each served queue that is not paused, and the ledger."""
    with conn.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.hget(keys.queue(queue), "paused")
            pipe.lrange(rq_bridge.rq_queue(conn, queue).key, 0, lookahead - 1)
        replies = pipe.execute()
    listed = []
    for rank, (queue, paused, ids) in enumerate(zip(queues, replies[0::2], replies[1::2])):
        if paused != b"1":
            listed += [(queue, rank, position, _text(job_id)) for position, job_id in enumerate(ids)]
    with conn.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.agent_ledger(agent_id))
        for _, _, _, job_id in listed:
            pipe.hmget(keys.job(job_id), RECORD_FIELDS)
        ledger_raw, *records = pipe.execute()
    candidates = []
    for (queue, rank, position, job_id), values in zip(listed, records):
        candidate = _candidate(job_id, queue, rank, position, values)
        if candidate is not None:
            candidates.append(candidate)
    return Snapshot(candidates=candidates, running=list(decode_entries(ledger_raw).values()))


def ledger_entry(decision: Decision, claimed_at: float) -> LedgerEntry:
    return LedgerEntry(
        job_id=decision.job_id,
        queue=decision.queue,
        cpus=decision.cpus,
        memory_mib=decision.memory_mib,
        gpus=tuple(decision.gpus),
        claimed_at=claimed_at,
        max_runtime_s=decision.max_runtime_s,
    )


class Claimer:
    """Runs ``claim.lua`` for one agent."""

    def __init__(self, conn: redis.Redis, keys: Keys, *, agent_id: str, host: str) -> None:
        self.conn = conn
        self.keys = keys
        self.agent_id = agent_id
        self.host = host
        self._script = conn.register_script(CLAIM_SCRIPT)

    def claim(self, entry: LedgerEntry, capacity: Capacity, *, now: Optional[float] = None) -> ClaimResult:
        """Claim ``entry.job_id`` with the allocation ``entry`` if Redis still agrees it is free to take."""
        now = time.time() if now is None else now
        gpu_field: Dict[str, Any] = encode_fields({"gpus": list(entry.gpus)})
        reply = self._script(
            keys=[
                rq_bridge.rq_queue(self.conn, entry.queue).key,
                self.keys.job(entry.job_id),
                self.keys.agent_ledger(self.agent_id),
            ],
            args=[
                entry.job_id,
                entry.to_json(),
                repr(float(capacity.cpus)),
                str(int(capacity.memory_mib)),
                str(int(capacity.slots)),
                json.dumps([g.id for g in capacity.gpus]),
                repr(now),
                self.agent_id,
                self.host,
                gpu_field["gpus"],
            ],
        )
        ok, why = int(reply[0]), _text(reply[1])
        return ClaimResult(claimed=ok == 1, why=why)
