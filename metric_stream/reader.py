"""Reading a job's metrics stream: every step so far, or following it until the job ends.

The agent copies each line of the job's ``metrics.jsonl`` into the STREAM ``{ns}:job:{id}:metrics``
as ``{"m": line}``, and ends a stream that hit its cap with one ``{"truncated": why}`` entry
(docs/payload.md#metrics). The agent writes the last steps before it records the job's end, so a
follower that sees a terminal state and then reads what is left has every step.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import redis
from launchbay.metric_stream import entries as metricstream
from launchbay.queue_config.keys import Keys

from launchbay.text import as_text

#: Entries read per round trip.
BATCH = 1000


def _decode(entries: List[Tuple[Any, Dict[bytes, bytes]]]) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """``(steps, truncated why or None)``; an entry that is not a JSON object is passed over."""
    steps, truncated = [], None
    for _entry_id, fields in entries:
        step = metricstream.step_of(fields)
        if step is not None:
            steps.append(step)
        truncated = metricstream.truncated_of(fields) or truncated
    return steps, truncated


class MetricsReader:
    """The steps of one job; :attr:`truncated` says why the stream stopped early, once it was seen."""

    def __init__(self, conn: redis.Redis, keys: Keys, job_id: str) -> None:
        self.conn = conn
        self.key = keys.job_metrics(job_id)
        self.truncated: Optional[str] = None
        self.last_id = "0-0"

    def after(self, last_id: str = "", count: int = BATCH) -> Tuple[List[Dict[str, Any]], str, bool]:
        """``(steps, last entry id, more)``: up to ``count`` entries after ``last_id`` ("" = from the start)."""
        start = f"({last_id}" if last_id and last_id != "0-0" else "-"
        entries = self.conn.xrange(self.key, min=start, max="+", count=count)
        steps, truncated = _decode(entries)
        self.truncated = truncated or self.truncated
        newest = as_text(entries[-1][0]) if entries else last_id
        return steps, newest, len(entries) == count

    def all(self) -> Iterator[Dict[str, Any]]:
        """Every step in the stream now."""
        while True:
            steps, self.last_id, more = self.after(self.last_id)
            yield from steps
            if not more:
                return

    def follow(self, ended: Callable[[], bool], block_ms: int, call: Callable[..., Any]) -> Iterator[Dict[str, Any]]:
        """Steps as they arrive, until ``ended()`` and the stream holds nothing more.

        ``call(fn, *args)`` runs each Redis read (the handle passes one that waits out a restart).
        """
        while True:
            reply = call(self.conn.xread, {self.key: self.last_id}, BATCH, block_ms)
            entries = reply[0][1] if reply else []
            if entries:
                steps, truncated = _decode(entries)
                self.truncated = truncated or self.truncated
                self.last_id = as_text(entries[-1][0])
                yield from steps
                continue
            if call(ended):
                yield from self.all()
                return
