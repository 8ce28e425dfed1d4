"""After each claim pass: write why the jobs still queued in the agent's queues wait.

Reads the first ``lookahead`` jobs of each queue the agent serves (paused ones too), the live
agents with their ledgers, and the submitters' quota usage, asks ``pending.explain`` for each job
and writes, through ``lifecycle.set_pending`` in one call, only the answers that differ from what
the record already says. At most one pass per ``min_interval_s``, so a busy loop stays cheap.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple

import redis
from launchbay.agent.claim import quotas_of
from launchbay.queue_config import lifecycle, pending, rq_bridge
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


class PendingPass:
    """Keeps ``pending_reason``/``pending_detail``/``estimated_start`` current for one agent's queues."""

    def __init__(
        self, conn: redis.Redis, keys: Keys, queues: Sequence[str], lookahead: int, min_interval_s: float = 1.0
    ) -> None:
        self.conn = conn
        self.records = lifecycle.Records(conn, keys)
        self.keys = keys
        self.queues = list(queues)
        self.lookahead = lookahead
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self.writes = 0

    def maybe_run(self, now: Optional[float] = None) -> None:
        """Run a pass unless one ran within ``min_interval_s``; a failure is logged, never raised."""
        now = time.time() if now is None else now
        if now - self._last < self.min_interval_s:
            return
        self._last = now
        try:
            self.writes += lifecycle.set_pending(self.records, self.changes(now))
        except (redis.RedisError, ValueError, TypeError) as exc:
            log.warning("could not update why queued jobs wait: %s", exc)

    def changes(self, now: float) -> Dict[str, Change]:
        """``{job id: (reason, detail, estimated start)}`` for the queued jobs whose answer changed."""
        with self.conn.pipeline(transaction=False) as pipe:
            for queue in self.queues:
                pipe.hmget(self.keys.queue(queue), ("paused", "config"))
                pipe.lrange(rq_bridge.rq_queue(self.conn, queue).key, 0, self.lookahead - 1)
            replies = pipe.execute()
        listed: List[Tuple[str, str]] = []
        for queue, ids in zip(self.queues, replies[1::2]):
            listed += [(queue, as_text(job_id)) for job_id in ids]
        with self.conn.pipeline(transaction=False) as pipe:
            for _, job_id in listed:
                pipe.hmget(self.keys.job(job_id), FIELDS)
            records = [JobRecord.from_values(job_id, FIELDS, raw) for (_, job_id), raw in zip(listed, pipe.execute())]
        views = pending.fleet(self.conn, self.keys)
        settings = {q: (p == b"1", quotas_of(c)) for q, (p, c) in zip(self.queues, replies[0::2])}
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
