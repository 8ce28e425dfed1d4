"""An agent's allocation ledger: which of its jobs hold which CPUs, memory and GPUs.

``{ns}:agent:{id}:ledger`` is a HASH of job id -> allocation JSON (docs/architecture.md). Only the
claim script (``claim.lua``) adds entries, in the same atomic step that takes the job out of its
RQ queue; :meth:`Ledger.release` removes one when the job's end is recorded, and the reaper empties
the ledger of a lost agent. The ledger, not the containers, is what placement counts as taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

import redis
from launchbay.queue_config.keys import Keys


@dataclass(frozen=True)
class LedgerEntry:
    """One claimed job's allocation; ``claimed_at`` epoch seconds, ``max_runtime_s`` None = no limit."""

    job_id: str
    queue: str
    cpus: float
    memory_mib: int
    gpus: Tuple[str, ...]
    claimed_at: float
    max_runtime_s: Optional[int] = None

    def to_json(self) -> str:
        # Built by hand rather than with dataclasses.asdict, which deep-copies: this runs on every claim.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["gpus"] = list(self.gpus)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: Any) -> LedgerEntry:
        data: Mapping[str, Any] = json.loads(raw)
        max_runtime = data.get("max_runtime_s")
        return cls(
            job_id=str(data["job_id"]),
            queue=str(data.get("queue") or ""),
            cpus=float(data.get("cpus") or 0.0),
            memory_mib=int(data.get("memory_mib") or 0),
            gpus=tuple(str(g) for g in data.get("gpus") or ()),
            claimed_at=float(data.get("claimed_at") or 0.0),
            max_runtime_s=int(max_runtime) if max_runtime is not None else None,
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entries(raw: Mapping[Any, Any], *, skipped: Optional[List[str]] = None) -> Dict[str, LedgerEntry]:
    """An HGETALL of a ledger as entries by job id; an unreadable entry is skipped (its id added to ``skipped``)."""
    entries = {}
    for job_id, value in raw.items():
        try:
            entries[_text(job_id)] = LedgerEntry.from_json(value)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            if skipped is not None:
                skipped.append(_text(job_id))
    return entries


class Ledger:
    """The ledger of one agent."""

    def __init__(self, conn: redis.Redis, keys: Keys, agent_id: str) -> None:
        self.conn = conn
        self.keys = keys
        self.agent_id = agent_id
        self.key = keys.agent_ledger(agent_id)

    def entries(self) -> Dict[str, LedgerEntry]:
        return decode_entries(self.conn.hgetall(self.key))

    def get(self, job_id: str) -> Optional[LedgerEntry]:
        raw = self.conn.hget(self.key, job_id)
        return LedgerEntry.from_json(raw) if raw else None

    def release(self, job_id: str) -> bool:
        """Free the job's resources; True when it held any."""
        return bool(self.conn.hdel(self.key, job_id))

    def clear(self) -> None:
        self.conn.delete(self.key)
