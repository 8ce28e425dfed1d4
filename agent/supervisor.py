"""Runs claimed jobs in containers and sees each one through to a recorded end.

One thread per job (:class:`~launchbay.agent.job_run.JobRun`) prepares the payload, pulls the
image, starts the container, watches it (exit, cancel, ``max_runtime``, the engine going away),
records the end, removes the container and gives the resources back. :class:`JobSupervisor` is
what the daemon sees: start, adopt, cancel, wait, detach.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Dict, List, Optional, Set

from launchbay.agent.job_run import JobRun
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.run_context import RunContext
from launchbay.agent.runtime import ContainerInfo
from launchbay.queue_config.job import JobRecord, Outcome

logger = logging.getLogger(__name__)

#: How long ``detach_all`` waits for each job thread to let go.
DETACH_JOIN_S = 15.0


class JobSupervisor:
    """Every job this agent runs, each on its own thread.

    ``ctx.release(job_id, entry)`` is called exactly once per job, after its end is recorded, whatever the
    end (finished, failed, canceled, or a job the agent could not start); then a
    ``{"type": "released", "agent": agent_id}`` event is published. It is not called for jobs
    left running by :meth:`detach_all`: their resources stay reserved for the agent that adopts them.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._runs: Dict[str, JobRun] = {}
        self._lock = threading.Lock()

    def start(self, record: JobRecord, alloc: LedgerEntry) -> None:
        """Run a claimed job (record in state ``starting``) on a new thread; returns at once.

        Raises ValueError when the job is already running here.
        """
        if alloc.job_id in self.running_job_ids():
            raise ValueError(f"job {alloc.job_id} is already running on this agent")
        self._begin(JobRun(self.ctx, record, alloc, on_done=self._forget))

    def adopt(self, container_info: ContainerInfo, alloc: LedgerEntry) -> None:
        """See a container left by an earlier agent process through to its end; returns at once.

        Output already copied to the job's log is not copied again. A job already watched here is ignored.
        """
        with self._lock:
            if alloc.job_id in self._runs:
                logger.info("job %s is already watched; not adopting it twice", alloc.job_id)
                return
        self._begin(JobRun(self.ctx, None, alloc, on_done=self._forget, adopted=container_info))

    def cancel(self, job_id: str) -> None:
        """Stop the job's container (SIGTERM, ``stop_grace_s``, SIGKILL) and record it canceled by the user."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is None:
            logger.info("cancel of job %s: not running here", job_id)
            return
        run.request_cancel()

    def end_with(self, job_id: str, outcome: Outcome) -> None:
        """Stop the job's container and record ``outcome`` (used when its GPU fails under it)."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None:
            run.request_end(outcome)

    def preempt(self, job_id: str, grace_s: float) -> None:
        """Stop the job's container (SIGTERM, ``grace_s``, SIGKILL) and put it back at the front of its queue."""
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None:
            run.request_cancel(preempt_grace_s=grace_s)

    def running_job_ids(self) -> Set[str]:
        """Jobs whose end is not recorded yet (including those still starting)."""
        with self._lock:
            return set(self._runs)

    def wait_all(self, timeout_s: Optional[float] = None) -> None:
        """Block until every job has ended and been released, or ``timeout_s`` passed."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for run in self._snapshot():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            run.join(remaining)

    def detach_all(self) -> None:
        """Stop watching every job and leave the containers running, for the next agent to adopt.

        A job that has no container yet (still pulling its image) is abandoned where it is: its
        record stays ``starting`` and its ledger entry stays, for the restarted agent to settle.
        """
        runs = self._snapshot()
        for run in runs:
            run.detach()
        for run in runs:
            run.join(DETACH_JOIN_S)

    # -- bookkeeping ----------------------------------------------------------------------------

    def _begin(self, run: JobRun) -> None:
        with self._lock:
            if run.job_id in self._runs:
                raise ValueError(f"job {run.job_id} is already running on this agent")
            self._runs[run.job_id] = run
        run.start()

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._runs.pop(job_id, None)

    def _snapshot(self) -> List[JobRun]:
        with self._lock:
            return list(self._runs.values())
