"""Why the jobs still queued wait: written once per queue per second, by the one agent holding the queue's lease.

The agent's ``pending`` thread, every ``interval_s``: for each queue the agent serves, it takes or
renews the queue's lease (``{ns}:lease:pending:{queue}``, :data:`LEASE_S`; a lease another agent
holds is tried again only when it could have run out, one ``SET NX`` a lease length later:
``leases.take_free``). For the queues it holds, it reads the first
``lookahead`` jobs (paused queues too), every live agent with its ledger from the fleet summary
(``agents.read_summary``: one read whatever the fleet's size), and the submitters' quota usage,
asks ``pending.explain`` for each job and writes, through ``lifecycle.set_pending`` in one call,
only the answers that differ from what the record already says.

So a fleet of N agents on one queue costs Redis one pass a second, not N: the other agents only
try the lease once per :data:`LEASE_S`, one command each. How stale a reason can be: one ``interval_s`` while the holder
lives, plus up to two :data:`LEASE_S` when it dies (another agent of the queue takes the lease then); the
summary it reads is current within a round trip for claims and releases, within a heartbeat for a
capacity change.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import redis
from launchbay.agent.claim import quotas_of
from launchbay.queue_config import leases, lifecycle, pending, rq_bridge
from launchbay.queue_config.acl import UNKNOWN_SUBMITTER
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.quotas import parse_usage

from launchbay.text import as_text

log = logging.getLogger(__name__)

READ_FIELDS = ("state", "cancel_requested", "queue", "request", "constraints", "priority", "submitter", "nodes")
STORED = ("pending_reason", "pending_detail", "estimated_start")
#: What a pass reads of each listed job.
FIELDS = READ_FIELDS + STORED
Change = Tuple[str, str, Optional[float]]
#: How long a queue's lease lasts unless renewed: the longest its reasons go unwritten after its holder dies.
LEASE_S = 4.0


class PendingPass:
    """Keeps ``pending_reason``/``pending_detail``/``estimated_start`` current for the queues whose lease it holds."""

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        queues: Sequence[str],
        lookahead: int,
        *,
        agent_id: str,
        interval_s: float = 1.0,
    ) -> None:
        self.conn = conn
        self.records = lifecycle.Records(conn, keys)
        self.keys = keys
        self.queues = list(queues)
        self.lookahead = lookahead
        self.agent_id = agent_id
        self.interval_s = interval_s
        self._take = conn.register_script(leases.TAKE_LUA)
        self._release = conn.register_script(leases.RELEASE_LUA)
        self._retry_at: Dict[str, float] = {}  # queue -> when another's lease runs out
        self.writes = 0

    def run(self, closing: threading.Event) -> None:
        """The ``pending`` thread: a pass every ``interval_s`` until ``closing``; then the leases go."""
        while not closing.wait(self._wait_s()):
            self.run_once()
        for queue in self.held():
            with contextlib.suppress(redis.RedisError):  # else it runs out within LEASE_S
                self._release(keys=[self.keys.pending_lease(queue)], args=[self.agent_id])

    def _wait_s(self) -> float:
        """``interval_s`` while this agent holds a queue's lease; else until the first lease it may try
        (an agent that holds none has nothing to do before then, and sleeps instead of waking each second)."""
        if not self.queues or self.held():
            return self.interval_s
        first = min(self._retry_at.get(queue, 0.0) for queue in self.queues)
        return max(self.interval_s, first - time.monotonic())

    def held(self) -> List[str]:
        return [q for q in self.queues if self._retry_at.get(q) == 0.0]

    def run_once(self, now: Optional[float] = None) -> None:
        """One pass over the queues whose lease this agent holds; a failure is logged, never raised."""
        now = time.time() if now is None else now
        try:
            queues = [queue for queue in self.queues if self._hold(queue, time.monotonic())]
            if queues:
                self.writes += lifecycle.set_pending(self.records, self.changes(now, queues))
        except (redis.RedisError, ValueError, TypeError) as exc:
            log.warning("could not update why queued jobs wait: %s", exc)

    def _hold(self, queue: str, at: float) -> bool:
        if at < self._retry_at.get(queue, 0.0):
            return False
        key, ttl_ms = self.keys.pending_lease(queue), int(LEASE_S * 1000)
        # held at the last pass (0.0), or this agent's first try (no entry)
        may_hold = self._retry_at.get(queue, 0.0) == 0.0
        left_ms = leases.try_lease(self._take, self.conn, key, self.agent_id, ttl_ms, may_hold=may_hold)
        self._retry_at[queue] = at + left_ms / 1000.0 if left_ms else 0.0
        return not left_ms

    def changes(self, now: float, queues: Optional[Sequence[str]] = None) -> Dict[str, Change]:
        """``{job id: (reason, detail, estimated start)}`` for the queued jobs whose answer changed."""
        queues = self.queues if queues is None else list(queues)
        with self.conn.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.hmget(self.keys.queue(queue), ("paused", "config"))
                pipe.lrange(rq_bridge.rq_queue(self.conn, queue).key, 0, self.lookahead - 1)
            replies = pipe.execute()
        listed: List[Tuple[str, str]] = []
        for queue, ids in zip(queues, replies[1::2]):
            listed += [(queue, as_text(job_id)) for job_id in ids]
        if not listed:
            return {}
        with self.conn.pipeline(transaction=False) as pipe:
            for _, job_id in listed:
                pipe.hmget(self.keys.job(job_id), FIELDS)
            records = [JobRecord.from_values(job_id, FIELDS, raw) for (_, job_id), raw in zip(listed, pipe.execute())]
        views = pending.fleet(self.conn, self.keys)
        settings = {q: (p == b"1", quotas_of(c)) for q, (p, c) in zip(queues, replies[0::2])}
        usage = self._usage(listed, records, settings)
        out: Dict[str, Change] = {}
        ahead: Dict[str, List[pending.Ahead]] = {}
        for (queue, job_id), record in zip(listed, records):
            if record.state is not State.QUEUED or record.cancel_requested:  # what ``job.is_waiting`` says
                continue
            if record.nodes != 1:
                continue  # a multi-node job's reason is the gang service's (agent/gang_assembly.py)
            paused, quotas = settings[queue]
            user = record.submitter or UNKNOWN_SUBMITTER  # whom its key names
            answer = pending.explain(
                record, views, paused=paused, ahead=ahead.get(queue, []), quota=quotas.for_user(user),
                usage=usage.get((queue, user), {}), user=user, now=now,
            )  # fmt: skip
            if answer.reason not in pending.NOT_IN_THE_WAY:
                ahead.setdefault(queue, []).append(pending.Ahead(job_id, record.priority))
            if _differs(record, answer):
                out[job_id] = (answer.reason, answer.detail, answer.estimated_start)
        return out

    def _usage(self, listed, records, settings) -> Dict[Tuple[str, str], Dict[str, float]]:
        wanted = sorted(
            {(q, r.submitter or UNKNOWN_SUBMITTER) for (q, _), r in zip(listed, records) if settings[q][1].any}
        )
        with self.conn.pipeline(transaction=False) as pipe:
            for queue, user in wanted:
                pipe.hgetall(self.keys.user_usage(queue, user))
            return {key: parse_usage(raw) for key, raw in zip(wanted, pipe.execute())}


def _differs(record: JobRecord, answer: pending.Pending) -> bool:
    stored = record.estimated_start
    start_same = (stored is None and answer.estimated_start is None) or (
        stored is not None and answer.estimated_start is not None and abs(stored - answer.estimated_start) < 1
    )
    return record.pending_reason != answer.reason or record.pending_detail != answer.detail[:300] or not start_same
