"""What every service of one agent shares: Redis handles, counts, status, notices and the loop's flags.

The composition root (``agent/daemon.py``) builds one :class:`AgentBasics` and hands each service the
parts it needs, one by one, as arguments: a service never receives the whole bundle. Nothing here
decides anything; :func:`start_thread` is how the composition root starts each service's thread,
named in the OS too (``/proc/PID/task/TID/comm``, ``top -H``): ``bench/sweeps.py`` tells the sweep
driver's CPU apart by it, and the fleet benchmark's check compares its agents' threads with a real
``launchbay agent``'s by it.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

import redis
from launchbay.agent.counters import Counters
from launchbay.agent.heartbeat import AgentStatus
from launchbay.agent.ledger import Ledger
from launchbay.agent.notices import Notices
from launchbay.agent.queue_configs import QueueConfigs
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
    #: Queue configs as the latest claim pass read them (what the services act on).
    configs: QueueConfigs
    counters: Counters
    status: AgentStatus
    notices: Notices
    flags: LoopFlags

    @classmethod
    def connect(cls, settings: AgentSettings, conn: redis.Redis, keys: Optional[Keys] = None) -> AgentBasics:
        keys = keys or Keys.from_env()
        store = QueueStore(conn, keys)
        return cls(
            settings,
            conn,
            keys,
            records=Records(conn, keys),
            ledger=Ledger(conn, keys, settings.agent_id),
            store=store,
            configs=QueueConfigs(store, max_age_s=settings.poll_interval_s + 1.0),
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
            queue_config_for=self.configs.get,
            record_inputs=self.store.record_inputs,
            gpu_uuid_for=gpu_uuid_for,
            engine_trouble=engine_trouble,
        )


def start_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    """Start ``target`` on a daemon thread called ``launchbay-NAME`` in Python and (Linux, 15 bytes) the OS."""
    full = f"launchbay-{name}"

    def named() -> None:
        if sys.platform.startswith("linux"):  # Python names threads natively only from 3.14
            with contextlib.suppress(Exception):
                ctypes.CDLL(None).prctl(15, full.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
        target()

    thread = threading.Thread(target=named, name=full, daemon=True)
    thread.start()
    return thread
