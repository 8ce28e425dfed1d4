"""Helpers for the queue tests: run the CLI against a test Redis, set up queues and job specs,
play the part of an agent, and snapshot Redis to prove that a refused enqueue wrote nothing.

(Plain functions rather than a conftest.py here: a second module named ``conftest`` would shadow
the root one that other test files import helpers from.)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

import yaml
from conftest import BIN_DIR, publish_agent_line, run_cli
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.job import Reason, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore

GPU_QUEUE = {
    "name": "gpu",
    "default_resources": {"cpus": 4, "memory": "16GiB"},
    "limits": {"cpus": 32, "memory": "256GiB", "gpus": 8, "gpu_model": "A100|H100", "max_runtime": "24h"},
    "submitter_may_set": ["shm_size"],
}
CPU_QUEUE = {"name": "cpu", "limits": {"gpus": 0}}
JOB_SPEC = {
    "name": "trainer",
    "image": "python:3.12-slim",
    "command": ["python", "train.py"],
    "config": {"trainer": {"learning_rate": 0.01}},
}


def cli(redis_url: str, *args: str, env: Optional[dict] = None, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``launchbay`` against ``redis_url`` the way a user with LAUNCHBAY_REDIS_URL set would."""
    return run_cli(*args, env={"LAUNCHBAY_REDIS_URL": redis_url, **(env or {})}, **kwargs)


def cli_popen(redis_url: str, *args: str) -> subprocess.Popen:
    """Start ``launchbay`` in the background (for --wait and -f), with line-readable stdout."""
    return subprocess.Popen(
        [str(BIN_DIR / "launchbay"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LAUNCHBAY_REDIS_URL": redis_url},
    )


def write_yaml(path: Path, data: Dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def apply_queues(conn, *configs: Dict[str, Any]) -> None:
    store = QueueStore(conn, Keys())
    for config in configs or (GPU_QUEUE, CPU_QUEUE):
        store.apply(QueueConfig.model_validate(config))


def job_spec_file(tmp_path: Path, **changes: Any) -> str:
    return str(write_yaml(tmp_path / "job.yaml", {**JOB_SPEC, **changes}))


def enqueue_id(redis_url: str, *args: str) -> str:
    """Enqueue through the CLI and return the job id it printed; fail the test on any error."""
    result = cli(redis_url, "enqueue", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def record(conn, job_id: str) -> Dict[str, Any]:
    return Records(conn, Keys()).as_json(job_id)


def rq_job_ids(conn, queue: str) -> list:
    return rq_bridge.rq_queue(conn, queue).job_ids


def rq_info(redis_url: str) -> str:
    result = subprocess.run(
        [str(BIN_DIR / "rq"), "info", "-u", redis_url], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def redis_snapshot(conn) -> Dict[str, Any]:
    """Every key with its type and size: equal before and after means nothing was written."""
    snapshot = {}
    for key in sorted(conn.keys("*")):
        kind = conn.type(key).decode()
        size = {"list": conn.llen, "zset": conn.zcard, "set": conn.scard, "hash": conn.hlen}.get(kind)
        snapshot[key.decode()] = (kind, size(key) if size else None)
    return snapshot


def play_agent(
    conn,
    job_id: str,
    *,
    lines: Iterable[str] = (),
    end: State = State.FINISHED,
    exit_code: Optional[int] = 0,
    reason: Optional[Reason] = None,
    summary: Optional[Dict[str, Any]] = None,
) -> None:
    """Do what an agent does to a job: claim it, run it, write its log, end it (with ``summary``)."""
    records = Records(conn, Keys())
    queue = records.as_json(job_id)["queue"]
    rq_bridge.rq_queue(conn, queue).remove(job_id)  # the claim script takes it out of the RQ queue
    assert records.transition(job_id, State.STARTING, allowed_from=[State.QUEUED], agent="agent-1", gpus=["0"])
    execution = rq_bridge.mark_started(conn, job_id, worker_name="agent-1")
    assert records.transition(job_id, State.RUNNING, allowed_from=[State.STARTING], container="c0ffee")
    for line in lines:
        conn.xadd(Keys().job_log(job_id), {"line": line})
    assert records.transition(
        job_id, end, allowed_from=[State.RUNNING], exit_code=exit_code, reason=reason, summary=summary
    )
    rq_bridge.mark_ended(conn, job_id, execution, state=end.value)
    conn.xadd(Keys().job_log(job_id), {"eof": end.value})


def wait_for(predicate, *, timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def subscribe_events(conn):
    """A pubsub on the events channel, returned once Redis counts the subscription."""
    events = conn.pubsub(ignore_subscribe_messages=True)
    events.subscribe(Keys().events)
    channel = Keys().events.encode()
    wait_for(lambda: dict(conn.pubsub_numsub(channel)).get(channel) == 1, what="the events subscription")
    return events


def register_agent(conn, agent_id: str, *, queues=("gpu",), gpus=(), cpus=16.0, memory_mib=65536) -> None:
    keys = Keys()
    capacity = {
        "agent_id": agent_id,
        "host": agent_id,
        "labels": {},
        "queues": list(queues),
        "cpus": cpus,
        "memory_mib": memory_mib,
        "max_jobs": 8,
        "gpus": [
            {"id": str(i), "uuid": f"GPU-{i}", "name": name, "memory_total_mib": 81920, "memory_free_mib": 81000}
            for i, name in enumerate(gpus)
        ],
    }
    conn.sadd(keys.agents, agent_id)
    conn.set(keys.agent_alive(agent_id), "1", ex=60)
    conn.set(keys.agent_capacity(agent_id), json.dumps(capacity))
    publish_agent_line(conn, agent_id)
