"""What the queues page shows: each queue's depth and running jobs, each live agent's free and
total CPUs, memory and GPUs (its capacity JSON minus the allocations in its ledger).

Read-only; the formats are the contracts in docs/architecture.md.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Mapping

import redis
from launchbay.queue_config import agents as agent_view
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.job import ACTIVE_STATES
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore
from launchbay.queue_config.units import describe_limits, format_mib


def queue_rows(conn: redis.Redis, keys: Keys) -> List[Dict[str, Any]]:
    """One row per queue: name, description, paused, depth (its RQ queue), running, limits."""
    store = QueueStore(conn, keys)
    rows = []
    for config in store.list():
        counts = store.job_counts(config.name)
        rows.append(
            {
                "name": config.name,
                "description": config.description,
                "paused": store.is_paused(config.name),
                "depth": rq_bridge.rq_queue(conn, config.name).count,
                "running": sum(counts.get(state.value, 0) for state in ACTIVE_STATES),
                "limits": limits_text(config),
            }
        )
    return rows


def limits_text(config: QueueConfig) -> str:
    """``at most 32 CPUs, 256GiB, 8 GPUs (A100|H100), 24h`` ("none" when the queue sets no limit)."""
    return describe_limits(config.limits, terse=False)


def agent_rows(conn: redis.Redis, keys: Keys) -> List[Dict[str, Any]]:
    """One row per live agent: what it serves, and its free and total CPUs, memory and GPUs."""
    return [
        agent_row(agent["capacity"], [agent_view.LedgerEntry.from_json(json.dumps(job)) for job in agent["jobs"]])
        for agent in agent_view.read_agents(conn, keys)
        if agent["capacity"] is not None
    ]


def agent_row(capacity: Mapping[str, Any], allocations: Iterable[agent_view.AllocationLike]) -> Dict[str, Any]:
    """Free = the capacity JSON minus what the ledger's allocations hold (``agents.free_capacity``)."""
    allocations = list(allocations)
    total = Capacity.from_capacity_json(capacity)
    free = agent_view.free_capacity(total, allocations)
    free_ids = {gpu.id for gpu in free.gpus}
    gpus = [
        {
            "id": str(gpu.get("id")),
            "name": str(gpu.get("name") or "GPU"),
            "memory": format_mib(gpu.get("memory_total_mib")) if gpu.get("memory_total_mib") else "",
            "free": str(gpu.get("id")) in free_ids,
        }
        for gpu in capacity.get("gpus") or []
    ]
    return {
        "agent_id": capacity.get("agent_id"),
        "host": capacity.get("host") or "",
        "queues": list(capacity.get("queues") or []),
        "labels": dict(capacity.get("labels") or {}),
        "cpus_total": total.cpus,
        "cpus_free": max(0.0, free.cpus),
        "memory_total": format_mib(total.memory_mib),
        "memory_free": format_mib(max(0, free.memory_mib)),
        "gpus": gpus,
        "gpus_free": sum(1 for gpu in gpus if gpu["free"]),
        "jobs": sorted(entry.job_id for entry in allocations),
    }
