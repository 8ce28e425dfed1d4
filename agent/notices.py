"""In-process notices between one agent's services: a job started here, a job was released here.

A service that must act when a job starts or ends subscribes to the notice instead of being called
by whoever started or released the job (dramatiq's middleware and Nomad's allocrunner hooks are the
same idea). The claim cycle publishes :class:`JobStarted` just before it hands a claimed job to the
supervisor; the supervisor's release callback publishes :class:`JobReleased` once the job's end is
recorded. Who subscribes is decided in one place, the composition root (``agent/daemon.py``).

Subscribers run on the publisher's thread, in the order they subscribed, so the root can say
"count it, then free its ledger entry, then wake the loop". One subscriber's failure is logged and
does not keep the notice from the others. These notices never leave the process: what other agents
must hear goes through Redis (``queue_config/events.py``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from launchbay.queue_config.agents import LedgerEntry
from launchbay.queue_config.job import JobRecord, State

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobStarted:
    """A job this agent claimed is about to be handed to the supervisor (its state is ``starting``)."""

    job_id: str
    #: The job's record as the claim left it.
    record: JobRecord


#: What the release reads of the job's record, once, for every subscriber: its state, and the times
#: the agent's metrics observe (``prometheus/agent.py``).
RELEASED_FIELDS = ("queued_at", "starting_at", "running_at", "attempts", "state")


@dataclass(frozen=True)
class JobReleased:
    """A job's end (or its put-back) is recorded and its resources are to be freed on this agent."""

    job_id: str
    #: The job's state when it was released (None when the record is gone).
    state: Optional[State]
    #: The record's :data:`RELEASED_FIELDS` as read at the release (None: not read, or gone).
    record: Optional[JobRecord] = None
    #: The ledger entry the job held here, as its thread knew it (None: the ledger is read for it).
    entry: Optional[LedgerEntry] = None


class Notices:
    """The subscriber lists of the two notices; safe to publish from any thread."""

    def __init__(self) -> None:
        self._started: List[Callable[[JobStarted], None]] = []
        self._released: List[Callable[[JobReleased], None]] = []
        self._lock = threading.Lock()

    def on_started(self, subscriber: Callable[[JobStarted], None]) -> None:
        with self._lock:
            self._started.append(subscriber)

    def on_released(self, subscriber: Callable[[JobReleased], None]) -> None:
        with self._lock:
            self._released.append(subscriber)

    def started(self, notice: JobStarted) -> None:
        with self._lock:
            subscribers = list(self._started)
        _deliver(notice, subscribers)

    def released(self, notice: JobReleased) -> None:
        with self._lock:
            subscribers = list(self._released)
        _deliver(notice, subscribers)


def _deliver(notice: Any, subscribers: List[Callable[[Any], None]]) -> None:
    for subscriber in subscribers:
        try:
            subscriber(notice)
        except Exception:
            name = getattr(subscriber, "__qualname__", repr(subscriber))
            log.exception("job %s: %s failed on %s", notice.job_id, name, type(notice).__name__)
