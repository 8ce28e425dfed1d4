"""A handle on one enqueued job: its record, its logs, and the ways to wait for it or stop it.

Waiting and following wake on the job's log stream (the agent appends an ``eof`` entry when the
job ends), with a short XREAD BLOCK as the poll fallback for jobs that end without one (a job
canceled while queued never had a log).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TypeVar

import redis
from launchbay.metric_stream.reader import MetricsReader
from launchbay.queue_config import gang, lifecycle, logstream
from launchbay.queue_config.job import TERMINAL_STATES, JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.secrets import mask_record
from launchbay.redis_connection.connect import is_transient

from launchbay.errors import NotFoundError

#: How long one XREAD blocks before the record's state is checked again (milliseconds).
POLL_BLOCK_MS = 1000
LOG_BATCH = 500
#: How long ``wait`` and ``logs(follow=True)`` wait for a Redis that stopped answering (a restart)
#: before they give up with the connection error.
REDIS_OUTAGE_S = 60.0
_RETRY_MAX_DELAY_S = 5.0

log = logging.getLogger(__name__)
T = TypeVar("T")


def _through_outages(call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, retried with back-off while Redis does not answer, for up to REDIS_OUTAGE_S."""
    deadline, delay = None, 0.2
    while True:
        try:
            return call(*args)
        except redis.RedisError as exc:
            if not is_transient(exc):  # e.g. credentials: waiting does not fix them
                raise
            if deadline is None:
                deadline = time.monotonic() + REDIS_OUTAGE_S
                log.warning("Redis does not answer (%s); waiting up to %.0f s for it", exc, REDIS_OUTAGE_S)
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_DELAY_S)


class JobHandle:
    """One job. ``notes`` holds what enqueue wanted the submitter to know (paused queue, no agent fits)."""

    def __init__(
        self, job_id: str, conn: redis.Redis, keys: Optional[Keys] = None, *, notes: Sequence[str] = ()
    ) -> None:
        self.id = job_id
        self.conn = conn
        self.keys = keys or Keys.from_env()
        self.notes: List[str] = list(notes)
        self._records = Records(conn, self.keys)
        self._metrics: Optional[MetricsReader] = None
        self._log_key = self.keys.job_log(job_id)

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"

    def status(self) -> Dict[str, Any]:
        """The job record: state, reason, message, exit_code, agent, host, gpus, timestamps, overrides...

        Values of fields whose schema says ``format: secret`` are masked (the ``--json`` shape:
        :meth:`JobRecord.as_json`).
        """
        return self.record().as_json()

    def record(self) -> JobRecord:
        """The job record, typed (:class:`~launchbay.queue_config.job.JobRecord`), secret values
        masked as in :meth:`status` (which is its ``as_json()``)."""
        record = self._records.load(self.id)
        if record is None:
            raise NotFoundError(f"unknown job {self.id!r} (never enqueued here, or its record expired)")
        return mask_record(record)

    def state(self) -> State:
        state = self.record().state
        if state is None:
            raise ValueError(f"job {self.id} has a state launchbay does not know")
        return state

    def wait(self, timeout_s: Optional[float] = None) -> Dict[str, Any]:
        """Block until the job is finished, failed or canceled; return its record.

        Raises TimeoutError when ``timeout_s`` passes first (the job keeps going). A Redis restart
        is waited out (up to REDIS_OUTAGE_S).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last_id = "$"
        while True:
            record = _through_outages(self.record)
            if record.terminal:
                return record.as_json()
            block_ms = POLL_BLOCK_MS
            if deadline is not None:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0:
                    raise TimeoutError(f"job {self.id} is still {record.state} after {timeout_s:g}s")
                block_ms = max(1, min(block_ms, remaining_ms))
            # Wakes as soon as the agent writes a line or the eof entry.
            last_id = _through_outages(self._read_log, last_id, block_ms)[0]

    def logs(self, follow: bool = False, rank: int = 0) -> Iterator[str]:
        """The job's output lines; with ``follow``, keep yielding until the job ends (a Redis restart is waited out).

        ``rank``: which member of a multi-node job (0, the default, is the job's own log)."""
        self.status()
        self._log_key = self.keys.job_log_rank(self.id, rank)
        if not follow or self.state() in TERMINAL_STATES:
            yield from self._all_lines()
            return
        last_id = "0-0"
        while True:
            last_id, lines, ended = _through_outages(self._read_log, last_id, POLL_BLOCK_MS)
            yield from lines
            if ended:
                return
            if not lines and _through_outages(self.state) in TERMINAL_STATES:
                yield from self._lines_after(last_id)
                return

    def metrics(self, follow: bool = False) -> Iterator[Dict[str, Any]]:
        """The job's logged steps (``{"_step": 3, "loss": 0.2, ...}``), oldest first; with ``follow``,
        keep yielding until the job ends. :attr:`metrics_truncated` then says whether the agent's cap
        cut the stream short. The last value of each key is in ``status()["summary"]`` once it ended.
        """
        self.status()
        self._metrics = MetricsReader(self.conn, self.keys, self.id)
        if not follow or self.state() in TERMINAL_STATES:
            yield from self._metrics.all()
            return
        yield from self._metrics.follow(lambda: self.state() in TERMINAL_STATES, POLL_BLOCK_MS, _through_outages)

    @property
    def metrics_truncated(self) -> Optional[str]:
        """Why the agent stopped keeping steps (its cap), as seen by the last :meth:`metrics`; None if it did not."""
        return self._metrics.truncated if self._metrics is not None else None

    def nodes(self) -> List[Dict[str, Any]]:
        """A multi-node job's members, ``[{rank, agent, host, addr, container, state, exit_code}]`` in rank
        order (empty for a single-node job)."""
        return [node.as_json() for node in self.members()]

    def members(self) -> List[gang.Node]:
        """:meth:`nodes`, typed (:class:`~launchbay.queue_config.gang.Node`)."""
        record = self._records.load(self.id)
        if record is None or record.nodes < 2:
            return []
        return gang.node_rows(gang.read(self.conn, self.keys, self.id), record.nodes)

    def cancel(self) -> str:
        """``"canceled"`` if it was still queued, ``"cancel_requested"`` if an agent has it (it stops it)."""
        return lifecycle.cancel(self.conn, self.keys, self.id)

    def requeue(self) -> Dict[str, Any]:
        """Put an ended job back in its queue; returns the new record (the ``--json`` shape)."""
        return lifecycle.requeue(self.conn, self.keys, self.id).as_json()

    # -- log stream -----------------------------------------------------------------------

    def _read_log(self, last_id: str, block_ms: int) -> tuple:
        """``(last entry id, lines, saw eof)`` from one blocking XREAD after ``last_id``."""
        reply = self.conn.xread({self._log_key: last_id}, count=LOG_BATCH, block=block_ms)
        lines, ended = [], False
        for _stream, entries in reply or []:
            batch = logstream.parse(entries)
            last_id = batch.last_id or last_id
            lines += batch.lines
            ended = ended or any(logstream.is_eof(fields) for _entry_id, fields in entries)
        return last_id, lines, ended

    def _all_lines(self) -> Iterator[str]:
        yield from self._lines_after(None)

    def _lines_after(self, last_id: Optional[str]) -> Iterator[str]:
        start = "-" if last_id in (None, "0-0") else f"({last_id}"
        key = self._log_key
        while True:
            entries = self.conn.xrange(key, min=start, max="+", count=LOG_BATCH)
            yield from logstream.parse(entries).lines
            if len(entries) < LOG_BATCH:
                return
            start = f"({entries[-1][0].decode()}"
