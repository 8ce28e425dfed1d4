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
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Set

import redis
from launchbay.agent.job_run import JobRun, Outcome
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.runtime import ContainerInfo, Runtime
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.records import Records

logger = logging.getLogger(__name__)

#: How long ``detach_all`` waits for each job thread to let go.
DETACH_JOIN_S = 15.0


class JobSupervisor:
    """Every job this agent runs, each on its own thread.

    ``release(job_id)`` is called exactly once per job, after its end is recorded, whatever the
    end (finished, failed, canceled, or a job the agent could not start); then a
    ``{"type": "released", "agent": agent_id}`` event is published. It is not called for jobs
    left running by :meth:`detach_all`: their resources stay reserved for the agent that adopts them.
    """

    def __init__(
        self,
        *,
        conn: redis.Redis,
        keys: Keys,
        records: Records,
        agent_id: str,
        host: str,
        runtime: Runtime,
        settings: AgentSettings,
        release: Callable[[str], None],
        queue_config_for: Callable[[str], QueueConfig],
        record_inputs: Callable[[str, dict, str], None],
        gpu_uuid_for: Callable[[str], Optional[str]],
        log_file_cap_bytes: Optional[int] = None,
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.records = records
        self.agent_id = agent_id
        self.host = host
        self.runtime = runtime
        self.settings = settings
        self.release = release
        self.queue_config_for = queue_config_for
        self.record_inputs = record_inputs
        self.gpu_uuid_for = gpu_uuid_for
        #: The per-job log file cap; None = four times ``settings.log_cap_bytes``.
        self.log_file_cap_bytes = log_file_cap_bytes
        self._runs: Dict[str, JobRun] = {}
        self._lock = threading.Lock()

    @property
    def state_dir(self) -> Path:
        return Path(self.settings.state_dir)

    def start(self, record: Mapping[str, Any], alloc: LedgerEntry) -> None:
        """Run a claimed job (record in state ``starting``) on a new thread; returns at once.

        Raises ValueError when the job is already running here.
        """
        if alloc.job_id in self.running_job_ids():
            raise ValueError(f"job {alloc.job_id} is already running on this agent")
        self._begin(JobRun(self, dict(record), alloc))

    def adopt(self, container_info: ContainerInfo, alloc: LedgerEntry) -> None:
        """See a container left by an earlier agent process through to its end; returns at once.

        Output already copied to the job's log is not copied again. A job already watched here is ignored.
        """
        with self._lock:
            if alloc.job_id in self._runs:
                logger.info("job %s is already watched; not adopting it twice", alloc.job_id)
                return
        self._begin(JobRun(self, None, alloc, adopted=container_info))

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

    # -- used by JobRun ----------------------------------------------------------------------------

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
