"""The tail of a job's log stream, for the job page and its JSON endpoint.

The agent appends ``{"line": text}`` entries to ``{ns}:job:{id}:log`` and one ``{"eof": state}``
when the job ends (docs/architecture.md). The page shows the newest lines, then its script asks
for the entries after the last id it has, about once a second, until it sees the end.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import redis
from launchbay.queue_config import logstream
from launchbay.queue_config.keys import Keys

#: Lines the page shows when it opens; older ones stay in Redis (``launchbay logs`` prints them all).
TAIL_LINES = 500
#: Entries one poll returns at most; the script asks again at once when it got this many.
BATCH_ENTRIES = 500


def _decode(entries: List[Tuple[Any, Dict[Any, Any]]]) -> Tuple[List[str], Optional[str], Optional[str]]:
    """``(lines, last entry id, eof state or None)`` of XRANGE entries."""
    batch = logstream.parse(entries)
    return batch.lines, batch.last_id, batch.eof


def tail(conn: redis.Redis, keys: Keys, job_id: str, count: int = TAIL_LINES) -> Dict[str, Any]:
    """The newest ``count`` entries: ``{"lines", "last_id", "eof", "truncated"}``."""
    newest_first = conn.xrevrange(keys.job_log(job_id), max="+", min="-", count=count)
    lines, last_id, eof = _decode(list(reversed(newest_first)))
    total = conn.xlen(keys.job_log(job_id)) if len(newest_first) == count else len(newest_first)
    return {"lines": lines, "last_id": last_id or "", "eof": eof, "truncated": total > count}


def after(conn: redis.Redis, keys: Keys, job_id: str, last_id: str) -> Dict[str, Any]:
    """Entries after ``last_id`` ("" = from the start): ``{"lines", "last_id", "eof", "more"}``."""
    start = f"({last_id}" if last_id else "-"
    entries = conn.xrange(keys.job_log(job_id), min=start, max="+", count=BATCH_ENTRIES)
    lines, newest, eof = _decode(entries)
    return {"lines": lines, "last_id": newest or last_id, "eof": eof, "more": len(entries) == BATCH_ENTRIES}
