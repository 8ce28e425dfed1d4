"""The client's read-only view of the agents: who is alive and what each could hand out.

Agents write ``{ns}:agent:{id}:capacity`` (JSON, see docs/architecture.md) and keep
``{ns}:agent:{id}:alive`` set with a TTL; an agent whose ``alive`` key expired is gone, whatever
its capacity key still says.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import redis
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.units import format_mib

from launchbay.text import as_text


def live_agents(conn: redis.Redis, keys: Optional[Keys] = None) -> List[Dict[str, Any]]:
    """The capacity JSON of every agent whose heartbeat is current, sorted by agent id.

    An agent that is alive but has not written a readable capacity yet is left out: there is
    nothing to match a request against.
    """
    keys = keys or Keys.from_env()
    agent_ids = sorted(as_text(a) for a in conn.smembers(keys.agents))
    with conn.pipeline(transaction=False) as pipe:
        for agent_id in agent_ids:
            pipe.exists(keys.agent_alive(agent_id))
            pipe.get(keys.agent_capacity(agent_id))
        replies = pipe.execute()
    agents = []
    for agent_id, alive, raw in zip(agent_ids, replies[0::2], replies[1::2]):
        capacity = _parse_capacity(raw) if alive else None
        if capacity is not None:
            agents.append({**capacity, "agent_id": capacity.get("agent_id") or agent_id})
    return agents


def _parse_capacity(raw: Optional[bytes]) -> Optional[Dict[str, Any]]:
    if raw is None:
        return None
    try:
        capacity = json.loads(raw)
    except ValueError:
        return None
    return capacity if isinstance(capacity, dict) else None


def serves(agent: Dict[str, Any], queue: str) -> bool:
    """Whether the agent takes jobs from ``queue``."""
    return queue in (agent.get("queues") or [])


def size_key(agent: Dict[str, Any]) -> tuple:
    """Orders agents by what they could run: GPUs first, then memory, then CPUs."""
    return (len(agent.get("gpus") or []), agent.get("memory_mib") or 0, agent.get("cpus") or 0.0)


def describe(agent: Dict[str, Any]) -> str:
    """One line about an agent's capacity, e.g. ``gpu-host-1 (14 CPUs, 58.6GiB, 2x NVIDIA A100 80GB)``."""
    gpus = agent.get("gpus") or []
    names = sorted({str(g.get("name") or "GPU") for g in gpus})
    gpu_text = f", {len(gpus)}x {'/'.join(names)}" if gpus else ", no GPUs"
    cpus = agent.get("cpus") or 0
    return f"{agent.get('agent_id')} ({cpus:g} CPUs, {format_mib(agent.get('memory_mib') or 0)}{gpu_text})"
