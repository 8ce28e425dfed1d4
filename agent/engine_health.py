"""Whether the agent's Docker engine is fit to take jobs, as the agent's status says it.

A half-sick engine may answer ``/_ping`` and hang on everything else, so a ping alone proves
little. A thread (:meth:`EngineHealth.run_until`) asks the engine, every
:data:`PROBE_INTERVAL_S`, the calls a job needs, each bounded by the runtime's probe timeout
(``DockerRuntime.probe``): ping, a container list, an image inspect and a container create of
an image that does not exist (both answered "no such image" at once by a well engine, leaving
nothing behind). The main loop asks :meth:`EngineHealth.check` before each claim pass, which
pings (same bound) only while the verdict is "fit", so an engine gone since the last probe claims
nothing, and never asks a sick engine anything: while the last probe failed the agent is ``unhealthy`` (``docker: down``, the failed call in
``docker_problem``) and claims nothing. A job thread whose docker call timed out before its
container started reports it (:meth:`EngineHealth.report`): the agent turns ``unhealthy`` at once,
until a probe passes again.

When a container is killed by a signal, the job runner asks :func:`died_with_engine` whether the
engine was going down with it (a short wait on the engine's answer) or a person stopped it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from launchbay.agent.heartbeat import AgentStatus
from launchbay.agent.runtime import ExitStatus, Runtime

log = logging.getLogger(__name__)

#: How often the engine thread probes the engine.
PROBE_INTERVAL_S = 2.0
#: ``docker_problem`` before the first probe answered.
NOT_PROBED = "the Docker engine has not answered yet"
#: 128 + SIGKILL, 128 + SIGTERM: how a container stopped from outside exits.
SIGNAL_EXIT_CODES = (137, 143)
#: How long a container killed by a signal waits for its engine to stop answering before the kill
#: is taken for a person's ``docker stop`` rather than the engine going down.
ENGINE_VERDICT_S = 3.0


class EngineHealth:
    """The engine verdict of one agent; writes ``status.docker``, ``status.docker_problem`` and, unless
    stopping, ``status.state``."""

    def __init__(self, runtime: Runtime, status: AgentStatus, stopping: threading.Event) -> None:
        self.runtime = runtime
        self.status = status
        self.stopping = stopping
        self._problem: Optional[str] = NOT_PROBED
        self._lock = threading.Lock()

    def check(self) -> bool:
        """True when the last probe passed, no job reported the engine since, and it answers a ping now.

        The ping (bounded like the probe) catches an engine that went away since the last probe
        before a claim; while the verdict is already "not fit" the engine is not asked at all.
        """
        with self._lock:
            problem = self._problem
        if problem == NOT_PROBED:  # the agent is still ``starting``: no verdict yet
            return False
        if problem is None and not self.runtime.ping():
            self._set("docker ping did not answer")
            return False
        self._publish(problem)
        return problem is None

    def report(self, problem: str) -> None:
        """A docker call of a job failed for the engine (timed out, could not connect): unhealthy now."""
        self._set(problem)

    def probe_once(self) -> Optional[str]:
        """Probe the engine now; returns (and keeps) the problem, None when it is fit."""
        problem = self.runtime.probe()
        self._set(problem)
        return problem

    def run_until(self, closing: threading.Event, wake: Optional[threading.Event] = None) -> None:
        """Probe every :data:`PROBE_INTERVAL_S` until ``closing``; ``wake`` is set when the verdict changes."""
        while not closing.is_set():
            was = self._problem
            now = self.probe_once()
            if (was is None) != (now is None) and wake is not None:
                wake.set()
            if closing.wait(PROBE_INTERVAL_S):
                return

    def _set(self, problem: Optional[str]) -> None:
        with self._lock:
            was, self._problem = self._problem, problem
        if problem is None and was is not None and was != NOT_PROBED:
            log.warning("the Docker engine answers again; claiming resumes")
        elif problem is not None and problem != was:
            log.error("the Docker engine is not fit to run jobs (%s); claiming nothing until it is", problem)
        if problem != NOT_PROBED:
            self._publish(problem)

    def _publish(self, problem: Optional[str]) -> None:
        self.status.docker = "up" if problem is None else "down"
        self.status.docker_problem = problem
        if not self.stopping.is_set():
            self.status.state = "healthy" if problem is None else "unhealthy"


def died_with_engine(status: ExitStatus, *, found_exited: bool, engine_answers: Callable[[], bool]) -> bool:
    """The container ended because its engine stopped, not by its own doing.

    Either it was found exited when the engine answered again (``found_exited``), or a signal from
    outside launchbay ended it (a stopping engine sends SIGTERM, then SIGKILL) and the engine stops
    answering within ENGINE_VERDICT_S (a person's ``docker stop`` leaves it answering).
    """
    if status.exit_code == 0:
        return False
    if found_exited:
        return True
    if status.exit_code not in SIGNAL_EXIT_CODES:
        return False
    deadline = time.monotonic() + ENGINE_VERDICT_S
    while time.monotonic() < deadline:
        if not engine_answers():
            return True
        time.sleep(0.2)
    return False
