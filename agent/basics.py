"""What every service of one agent shares: Redis handles, counts, status, notices and the loop's flags.

The composition root (``agent/daemon.py``) builds one :class:`AgentBasics` and hands each service the
parts it needs, one by one, as arguments: a service never receives the whole bundle. Nothing here
runs a thread or decides anything.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

import redis
from launchbay.agent.counters import Counters
from launchbay.agent.heartbeat import AgentStatus
from launchbay.agent.ledger import Ledger
from launchbay.agent.notices import Notices
from launchbay.agent.run_context import RunContext
from launchbay.agent.runtime import Runtime
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.store import QueueStore


@dataclass
class LoopFlags:
    """The events the agent's threads share."""

    #: Set to end the main loop's wait early (new work, freed resources, a cancel).
    wake: threading.Event = field(default_factory=threading.Event)
    #: No more claims (a signal, or ``once`` is done).
    stopping: threading.Event = field(default_factory=threading.Event)
    #: The background threads end.
    closing: threading.Event = field(default_factory=threading.Event)
    #: A second signal during a drain: stop waiting for the jobs.
    escalated: threading.Event = field(default_factory=threading.Event)


@dataclass
class AgentBasics:
    settings: AgentSettings
    conn: redis.Redis
    keys: Keys
    records: Records
    #: This agent's allocations (``launchbay:agent:<id>:ledger``).
    ledger: Ledger
    #: Queue configs and job definitions.
    store: QueueStore
    counters: Counters
    status: AgentStatus
    notices: Notices
    flags: LoopFlags

    @classmethod
    def connect(cls, settings: AgentSettings, conn: redis.Redis, keys: Optional[Keys] = None) -> AgentBasics:
        keys = keys or Keys.from_env()
        return cls(
            settings,
            conn,
            keys,
            records=Records(conn, keys),
            ledger=Ledger(conn, keys, settings.agent_id),
            store=QueueStore(conn, keys),
            counters=Counters(),
            status=AgentStatus(),
            notices=Notices(),
            flags=LoopFlags(),
        )

    def run_context(
        self,
        runtime: Runtime,
        *,
        release: Callable[[str], None],
        gpu_uuid_for: Callable[[str], Optional[str]],
        engine_trouble: Callable[[str], None],
    ) -> RunContext:
        """All a job's thread needs of this agent (the supervisor's argument)."""
        return RunContext(
            conn=self.conn,
            keys=self.keys,
            agent_id=self.settings.agent_id,
            host=self.settings.host,
            runtime=runtime,
            settings=self.settings,
            release=release,
            queue_config_for=self.store.get,
            record_inputs=self.store.record_inputs,
            gpu_uuid_for=gpu_uuid_for,
            engine_trouble=engine_trouble,
        )
