"""What the queues page shows: each queue's depth and running jobs, each live agent's free and
total CPUs, memory and GPUs (its capacity JSON minus the allocations in its ledger).

Read-only; the formats are the contracts in docs/architecture.md.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping

import redis
from launchbay.queue_config import agents as agent_view
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.job import ACTIVE_STATES
from launchbay.queue_config.keys import Keys
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
    rows = []
    for capacity in agent_view.live_agents(conn, keys):
        allocations = ledger(conn, keys, str(capacity["agent_id"]))
        rows.append(agent_row(capacity, allocations))
    return rows


def ledger(conn: redis.Redis, keys: Keys, agent_id: str) -> List[Dict[str, Any]]:
    """The agent's allocations (an entry that is not readable JSON is skipped)."""
    entries = []
    for raw in conn.hvals(keys.agent_ledger(agent_id)):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def agent_row(capacity: Mapping[str, Any], allocations: List[Mapping[str, Any]]) -> Dict[str, Any]:
    """Free = the capacity JSON minus what the ledger's allocations hold."""
    total_cpus = float(capacity.get("cpus") or 0.0)
    total_memory_mib = int(capacity.get("memory_mib") or 0)
    taken_gpus = {str(gpu) for entry in allocations for gpu in entry.get("gpus") or ()}
    gpus = [
        {
            "id": str(gpu.get("id")),
            "name": str(gpu.get("name") or "GPU"),
            "memory": format_mib(gpu.get("memory_total_mib")) if gpu.get("memory_total_mib") else "",
            "free": str(gpu.get("id")) not in taken_gpus,
        }
        for gpu in capacity.get("gpus") or []
    ]
    return {
        "agent_id": capacity.get("agent_id"),
        "host": capacity.get("host") or "",
        "queues": list(capacity.get("queues") or []),
        "labels": dict(capacity.get("labels") or {}),
        "cpus_total": total_cpus,
        "cpus_free": max(0.0, total_cpus - sum(float(e.get("cpus") or 0.0) for e in allocations)),
        "memory_total": format_mib(total_memory_mib),
        "memory_free": format_mib(max(0, total_memory_mib - sum(int(e.get("memory_mib") or 0) for e in allocations))),
        "gpus": gpus,
        "gpus_free": sum(1 for gpu in gpus if gpu["free"]),
        "jobs": sorted(str(entry.get("job_id")) for entry in allocations if entry.get("job_id")),
    }
