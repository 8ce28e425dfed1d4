"""Helpers shared by the runtime and supervision tests (no tests here): claimed jobs, a supervisor, polling."""

from __future__ import annotations

import collections
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.run_context import RunContext
from launchbay.agent.runtime import JOB_ID_LABEL
from launchbay.agent.settings import AgentSettings
from launchbay.agent.supervisor import JobSupervisor
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.job import State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig

AGENT_ID = "runtime-test-agent"
TERMINAL = {"finished", "failed", "canceled"}


def poll(check: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class RuntimeHarness:
    """Claimed jobs in a real Redis and a JobSupervisor to run them, with everything it calls counted."""

    def __init__(self, conn, tmp_path: Path, *, log_cap_bytes: int = 1 << 20, stop_grace_s: float = 1.0) -> None:
        self.conn = conn
        self.keys = Keys()
        self.records = Records(conn, self.keys)
        self.state_dir = tmp_path / "state"
        self.settings = AgentSettings(
            agent_id=AGENT_ID,
            host="runtime-test-host",
            state_dir=self.state_dir,
            log_cap_bytes=log_cap_bytes,
            stop_grace_s=stop_grace_s,
        )
        self.queues: Dict[str, QueueConfig] = {"cpu": QueueConfig(name="cpu")}
        self.releases: collections.Counter = collections.Counter()
        self.recorded_inputs: List[tuple] = []
        self.gpu_uuids: Dict[str, str] = {}

    def set_queue(self, name: str = "cpu", **config: Any) -> QueueConfig:
        self.queues[name] = QueueConfig(name=name, **config)
        return self.queues[name]

    def supervisor(self, runtime: Any, **kwargs: Any) -> JobSupervisor:
        return JobSupervisor(
            RunContext(
                conn=self.conn,
                keys=self.keys,
                agent_id=AGENT_ID,
                host=self.settings.host,
                runtime=runtime,
                settings=self.settings,
                release=self._release,
                queue_config_for=lambda name: self.queues[name],
                record_inputs=lambda name, inputs, job_id: self.recorded_inputs.append((name, inputs, job_id)),
                gpu_uuid_for=self.gpu_uuids.get,
                **kwargs,
            )
        )

    def _release(self, job_id: str, entry: Any = None) -> None:
        self.releases[job_id] += 1

    def claimed_job(
        self,
        image: str,
        command: Optional[Sequence[str]] = None,
        *,
        queue: str = "cpu",
        cpus: float = 0.0,
        memory_mib: int = 0,
        gpus: Sequence[str] = (),
        max_runtime_s: Optional[int] = None,
        env: Optional[Dict[str, str]] = None,
        docker: Optional[Dict[str, Any]] = None,
        run_config: Optional[Dict[str, Any]] = None,
        file_overrides: Optional[Dict[str, Any]] = None,
        name: str = "probe",
    ) -> tuple:
        """A job as the claim leaves it (record ``starting``, RQ job out of its queue); returns (record, allocation)."""
        job_id = "rt-" + uuid.uuid4().hex[:12]
        request = {"cpus": cpus, "memory_mib": memory_mib, "gpus": len(gpus), "gpu_model": "", "gpu_memory_mib": 0}
        fields = {
            "name": name,
            "queue": queue,
            "priority": "normal",
            "spec": {
                "image": image,
                "command": list(command) if command else None,
                "workdir": None,
                "env": dict(env or {}),
                "docker": dict(docker or {}),
            },
            "request": request,
            "constraints": {},
            "max_runtime_s": max_runtime_s,
            "run_config": run_config or {},
            "file_overrides": file_overrides or {},
        }
        with self.conn.pipeline() as pipe:
            pipe.multi()
            self.records.create(job_id, fields, pipeline=pipe)
            rq_bridge.enqueue(
                self.conn, queue, job_id, meta={"launchbay": {}}, description="runtime test", pipeline=pipe
            )
            pipe.execute()
        rq_bridge.rq_queue(self.conn, queue).remove(job_id)
        assert self.records.transition(
            job_id,
            State.STARTING,
            allowed_from=(State.QUEUED,),
            agent=AGENT_ID,
            host=self.settings.host,
            gpus=list(gpus),
            attempts=1,
        )
        # What the daemon does between the claim and the supervisor: RQ shows the job as started.
        execution_id = rq_bridge.mark_started(self.conn, job_id, worker_name=AGENT_ID)
        self.records.update(job_id, rq_execution=execution_id)
        alloc = LedgerEntry(
            job_id=job_id,
            queue=queue,
            cpus=cpus,
            memory_mib=memory_mib,
            gpus=tuple(gpus),
            max_runtime_s=max_runtime_s,
            claimed_at=time.time(),
        )
        return self.records.load(job_id), alloc

    def wait_for_end(self, job_id: str, timeout_s: float = 30) -> Dict[str, Any]:
        """The record once the job ended and its resources were released."""
        poll(lambda: self.releases[job_id], timeout_s=timeout_s, what=f"job {job_id} to be released")
        record = self.records.as_json(job_id)
        assert record["state"] in TERMINAL, record
        return record

    def wait_for_state(self, job_id: str, state: str, timeout_s: float = 30) -> Dict[str, Any]:
        poll(lambda: self.records.state(job_id) == State(state), timeout_s=timeout_s, what=f"job {job_id} {state}")
        return self.records.as_json(job_id)

    def log_entries(self, job_id: str) -> List[Dict[str, str]]:
        return [
            {k.decode(): v.decode("utf-8", errors="replace") for k, v in fields.items()}
            for _, fields in self.conn.xrange(self.keys.job_log(job_id))
        ]

    def log_lines(self, job_id: str) -> List[str]:
        return [entry["line"] for entry in self.log_entries(job_id) if "line" in entry]

    def log_file(self, job_id: str) -> Path:
        return self.state_dir / "logs" / f"{job_id}.log"


def containers_of(docker_client, job_id: str) -> list:
    """What ``docker ps -a --filter label=launchbay.job_id=<id>`` shows."""
    return docker_client.containers.list(all=True, filters={"label": f"{JOB_ID_LABEL}={job_id}"}, ignore_removed=True)
