"""Whether the agent's Docker engine is fit to take jobs, as the agent's status says it.

The main loop asks :meth:`EngineHealth.check` before each claim pass: an engine that does not
answer ``/_ping`` makes the agent ``unhealthy`` (``docker: down``) and it claims nothing until
the engine answers again.
"""

from __future__ import annotations

import logging
import threading

from launchbay.agent.heartbeat import AgentStatus
from launchbay.agent.runtime import Runtime

log = logging.getLogger(__name__)


class EngineHealth:
    """The engine check of one agent; writes ``status.docker`` and, unless stopping, ``status.state``."""

    def __init__(self, runtime: Runtime, status: AgentStatus, stopping: threading.Event) -> None:
        self.runtime = runtime
        self.status = status
        self.stopping = stopping

    def check(self) -> bool:
        """True when the engine answers; the change (if any) is logged once."""
        healthy = self.runtime.ping()
        was = self.status.docker
        self.status.docker = "up" if healthy else "down"
        if not self.stopping.is_set():
            self.status.state = "healthy" if healthy else "unhealthy"
        if healthy and was == "down":
            log.warning("the Docker engine answers again; claiming resumes")
        elif not healthy and was != "down":
            log.error("the Docker engine does not answer; claiming nothing until it does")
        return healthy
