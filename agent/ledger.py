"""An agent's allocation ledger: which of its jobs hold which CPUs, memory and GPUs.

``{ns}:agent:{id}:ledger`` is a HASH of job id -> allocation JSON (docs/architecture.md). Only the
claim script (``claim.lua``) adds entries, in the same atomic step that takes the job out of its
RQ queue; :meth:`Ledger.release` removes one when the job's end is recorded, and the reaper empties
the ledger of a lost agent. The ledger, not the containers, is what placement counts as taken.
"""

from __future__ import annotations

from typing import Dict, Optional

import redis
from launchbay.queue_config.agents import LedgerEntry, decode_entries
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.quotas import RELEASE_LUA


class Ledger:
    """The ledger of one agent."""

    def __init__(self, conn: redis.Redis, keys: Keys, agent_id: str) -> None:
        self.conn = conn
        self.keys = keys
        self.agent_id = agent_id
        self.key = keys.agent_ledger(agent_id)
        self._release = conn.register_script(RELEASE_LUA)

    def entries(self) -> Dict[str, LedgerEntry]:
        return decode_entries(self.conn.hgetall(self.key))

    def get(self, job_id: str) -> Optional[LedgerEntry]:
        raw = self.conn.hget(self.key, job_id)
        return LedgerEntry.from_json(raw) if raw else None

    def release(self, job_id: str, entry: Optional[LedgerEntry] = None) -> bool:
        """Free the job's resources and take them off its user's quota usage (one step); True when it held any.

        ``entry`` is the job's entry as the caller knows it (the job's thread); without it, it is read."""
        if entry is None or entry.job_id != job_id:
            entry = self.get(job_id)
        usage = self.keys.user_usage(entry.queue, entry.user) if entry is not None else self.key
        return bool(self._release(keys=[self.key, usage], args=[job_id]))

    def clear(self) -> None:
        """Release every entry (each one's quota usage with it)."""
        for job_id in self.entries():
            self.release(job_id)
