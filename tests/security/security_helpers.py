"""Helpers for the security tests (no tests here): the queues and recorded inputs hostile requests
meet, an agent run to the end, records written behind the client's back, and the Redis ACL that
docs/security.md documents.

The process, container and Redis helpers are those of the fault tests (``tests/reliability``),
and through them the control-plane and CLI helpers of ``tests/agent`` and ``tests/queue``.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Optional

_RELIABILITY = Path(__file__).resolve().parent.parent / "reliability"
if str(_RELIABILITY) not in sys.path:
    sys.path.append(str(_RELIABILITY))

from launchbay.agent.runtime import JOB_ID_LABEL  # noqa: E402
from launchbay.queue_config import acl, rq_bridge  # noqa: E402
from launchbay.queue_config.keys import Keys  # noqa: E402
from launchbay.queue_config.lifecycle import Records  # noqa: E402
from launchbay.queue_config.store import QueueStore  # noqa: E402
from reliability_helpers import (  # noqa: E402
    AgentFleet,
    cli,
    log_lines,
    make_queue,
    put_job,
    record,
    redis_snapshot,
    state_of,
    unique_path,
    wait_for,
)

__all__ = [
    "LAUNCHBAY_ACL",
    "RECORDED_INPUTS",
    "SDK_MOUNT",
    "AgentFleet",
    "cli",
    "container_of",
    "log_lines",
    "make_queue",
    "put_hostile_record",
    "put_job",
    "record",
    "record_inputs",
    "redis_snapshot",
    "run_agent_once",
    "state_of",
    "unique_path",
    "wait_for",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Mounted read-only into a job's container, so that a job on the bare base image can import the
#: SDK (``PYTHONPATH=/opt/launchbay-sdk``): ``launchbay`` is then a namespace package holding ``sdk``.
SDK_MOUNT = {"source": str(REPO_ROOT / "sdk"), "target": "/opt/launchbay-sdk/launchbay/sdk", "read_only": True}

#: What the job ``trainer``'s last run recorded (the SDK's inputs.json): what overrides must fit.
RECORDED_INPUTS: Dict[str, Any] = {
    "run_config": {
        "include": ["trainer"],
        "exclude": ["trainer.seed"],
        "types": {"trainer": {"learning_rate": "float", "epochs": "int", "seed": "int"}, "data": {"path": "str"}},
        "schema": {
            "type": "object",
            "properties": {
                "trainer": {"type": "object", "properties": {"learning_rate": {"type": "number", "maximum": 1}}}
            },
        },
    },
    "files": {
        "config.yaml": {"include": [], "exclude": ["secrets"], "types": {"model": {"depth": "int"}, "secrets": {}}}
    },
}

#: The least a launchbay user needs, for the CLI and the agent alike: the admin role of queue_config/acl.py (docs/security.md shows the
#: same rules; a test checks they agree). Keys: launchbay's namespace and RQ's; one channel.
LAUNCHBAY_ACL = acl.rules("admin", Keys())


def record_inputs(conn, name: str = "trainer", inputs: Optional[Dict[str, Any]] = None) -> None:
    """Store what a run of job ``name`` recorded, as the agent does after a run."""
    QueueStore(conn, Keys()).record_inputs(name, inputs or RECORDED_INPUTS, "recorded-run")


def run_agent_once(fleet: AgentFleet, agent_id: str, *, queues=("sec",), timeout_s: float = 120) -> str:
    """``launchbay agent --once``: claims what is queued, waits for it, exits 0; returns its log."""
    agent = fleet.start(agent_id, "--once", queues=queues)
    code = agent.proc.wait(timeout_s)
    assert code == 0, agent.output()
    return agent.output()


def put_hostile_record(conn, queue: str, *, spec: Any, raw: Optional[Dict[str, str]] = None) -> str:
    """A queued job written straight into Redis, as anyone with write access could, bypassing the client.

    ``spec`` is stored as the client would store it; then the fields in ``raw`` are overwritten with
    the strings given (to plant malformed values).
    """
    job_id = uuid.uuid4().hex[:16]
    fields = {
        "name": "hostile",
        "queue": queue,
        "priority": "normal",
        "spec": spec,
        "request": {"cpus": 0.0, "memory_mib": 0, "gpus": 0, "gpu_model": "", "gpu_memory_mib": 0},
        "constraints": {},
        "run_config": {},
        "file_overrides": {},
    }
    with conn.pipeline() as pipe:
        pipe.multi()
        Records(conn, Keys()).create(job_id, fields, pipeline=pipe)
        rq_bridge.enqueue(conn, queue, job_id, meta={"launchbay": {}}, description="hostile", pipeline=pipe)
        pipe.execute()
    if raw:
        conn.hset(Keys().job(job_id), mapping=raw)
    conn.publish(Keys().events, json.dumps({"type": "enqueued", "queue": queue}))
    return job_id


def container_of(docker_client, job_id: str, timeout_s: float = 60) -> Any:
    """The job's container once it exists (the job must keep it running long enough to be inspected)."""
    return wait_for(
        lambda: next(
            iter(
                docker_client.containers.list(
                    all=True, filters={"label": f"{JOB_ID_LABEL}={job_id}"}, ignore_removed=True
                )
            ),
            None,
        ),
        timeout_s=timeout_s,
        what=f"the container of job {job_id}",
    )
