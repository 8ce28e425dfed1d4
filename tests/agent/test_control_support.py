"""Helpers shared by the agent control-plane tests (no tests here): queues, jobs, settings, polling."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from launchbay.agent.settings import AgentSettings
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAKE_NVIDIA_SMI = FIXTURES / "nvidia-smi"


def make_queue(conn, name: str = "default", **config: Any) -> QueueConfig:
    queue = QueueConfig(name=name, **config)
    QueueStore(conn, Keys()).apply(queue)
    return queue


def put_job(
    conn,
    queue: str = "default",
    *,
    cpus: float = 0.0,
    memory_mib: int = 0,
    gpus: int = 0,
    gpu_model: str = "",
    gpu_memory_mib: int = 0,
    max_runtime_s: Optional[int] = None,
    priority: str = "normal",
    constraints: Optional[Mapping[str, str]] = None,
    env: Optional[Mapping[str, str]] = None,
    image: str = "launchbay-test:fake",
    command: Optional[list] = None,
    job_id: Optional[str] = None,
) -> str:
    """Write a queued job the way the client does (record + RQ job in one transaction)."""
    job_id = job_id or uuid.uuid4().hex[:16]
    request = {
        "cpus": float(cpus),
        "memory_mib": int(memory_mib),
        "gpus": int(gpus),
        "gpu_model": gpu_model,
        "gpu_memory_mib": int(gpu_memory_mib),
    }
    fields: Dict[str, Any] = {
        "name": "probe",
        "queue": queue,
        "priority": priority,
        "spec": {"image": image, "command": command, "workdir": None, "env": dict(env or {}), "docker": {}},
        "request": request,
        "constraints": dict(constraints or {}),
        "max_runtime_s": max_runtime_s,
        "run_config": {},
        "file_overrides": {},
    }
    meta = {"launchbay": {"name": "probe", "priority": priority, "request": request}}
    with conn.pipeline() as pipe:
        pipe.multi()
        Records(conn, Keys()).create(job_id, fields, pipeline=pipe)
        rq_bridge.enqueue(
            conn, queue, job_id, meta=meta, description="test job", at_front=priority == "high", pipeline=pipe
        )
        pipe.execute()
    conn.publish(Keys().events, json.dumps({"type": "enqueued", "queue": queue}))
    return job_id


def agent_settings(tmp_path: Path, **overrides: Any) -> AgentSettings:
    """Settings for a fast test agent: short beats, GPUs from the stand-in nvidia-smi."""
    values: Dict[str, Any] = {
        "agent_id": "agent-a",
        "host": "test-host",
        "queues": ["default"],
        "state_dir": tmp_path / "state",
        "heartbeat_interval_s": 0.2,
        "heartbeat_ttl_s": 1.0,
        "lost_grace_s": 0.5,
        "poll_interval_s": 5.0,
        "reaper_interval_s": 0.3,
        "inventory_refresh_s": 0.5,
        "stop_grace_s": 1.0,
        "nvidia_smi": str(FAKE_NVIDIA_SMI),
        "kernel_log": "",  # the test machine's own kernel log is not the test's business
    }
    values.update(overrides)
    return AgentSettings(**values)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def record(conn, job_id: str) -> Dict[str, Any]:
    return Records(conn, Keys()).as_json(job_id) or {}


def env_with_fake_gpus(mode: str = "h200x4", **extra: str) -> Dict[str, str]:
    return {**os.environ, "LAUNCHBAY_FAKE_NVIDIA_SMI": mode, **extra}
