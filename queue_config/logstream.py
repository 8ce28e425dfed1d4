"""A job's log stream, ``{ns}:job:{id}:log`` (Redis STREAM): its entry format, written and read here only.

Entries are ``{"line": text}``, one per output line (without the newline; the agent writes them,
capped, see ``agent/logs.py``), and, once the job ended, one ``{"eof": "<final state>"}``. A
requeued job's new run appends after the old run's ``eof``. Readers: ``launchbay logs`` and
``JobHandle.wait``/``logs`` (client), the job page (ui), the agent on adoption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from launchbay.queue_config.keys import Keys

from launchbay.text import as_text

LINE = "line"
EOF = "eof"


def line_entry(text: str) -> Dict[str, str]:
    return {LINE: text}


def eof_entry(state: str) -> Dict[str, str]:
    return {EOF: state}


def decode_fields(fields: Mapping[Any, Any]) -> Dict[str, str]:
    """One entry's fields as text."""
    return {as_text(k): as_text(v) for k, v in fields.items()}


def is_eof(fields: Mapping[Any, Any]) -> bool:
    return EOF in fields or EOF.encode() in fields


@dataclass
class Batch:
    """What a run of entries says: its lines, the last entry id, and the eof state if one was seen."""

    lines: List[str] = field(default_factory=list)
    last_id: Optional[str] = None
    eof: Optional[str] = None


def parse(entries: Iterable[Tuple[Any, Mapping[Any, Any]]]) -> Batch:
    """Read XRANGE/XREAD entries, oldest first."""
    batch = Batch()
    for entry_id, raw in entries:
        batch.last_id = as_text(entry_id)
        fields = decode_fields(raw)
        if LINE in fields:
            batch.lines.append(fields[LINE])
        if EOF in fields:
            batch.eof = fields[EOF]
    return batch


def ends_with_eof(conn: Any, keys: Keys, job_id: str) -> bool:
    """Whether the stream's last entry is an ``eof`` (someone already wrote the job's end)."""
    last = conn.xrevrange(keys.job_log(job_id), count=1)
    return bool(last) and is_eof(last[0][1])


def add_eof(target: Any, keys: Keys, job_id: str, state: str) -> None:
    """Append ``{"eof": state}`` (``target``: a connection or a pipeline)."""
    target.xadd(keys.job_log(job_id), eof_entry(state))
