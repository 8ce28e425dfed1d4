"""The "could this ever run?" advice given at enqueue.

A request that no live agent serving the queue could run even when idle is still enqueued (an
agent may join later), but the submitter hears about it at once, with the largest agent named so
the fix is obvious. The fit rules are the agent's own (``launchbay.queue_config.matching``).
"""

from __future__ import annotations

from typing import Any, List, Mapping

import redis
from launchbay.queue_config import agents as agent_view
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity, Request, misfit_reason
from launchbay.queue_config.units import format_mib


def fit_notes(
    conn: redis.Redis, keys: Keys, queue: str, request: Mapping[str, Any], constraints: Mapping[str, str]
) -> List[str]:
    """Zero or one line of advice about whether any live agent could run ``request``.

    An idle agent of the queue that could run it settles the question in one small read; only when
    none does is every agent read (so a fleet of 1,000 does not cost each enqueue 1,000 reads).
    """
    wanted = Request.from_dict(request)
    for agent in agent_view.idle_agents(conn, keys, queue):
        if misfit_reason(wanted, constraints, Capacity.from_capacity_json(agent)) is None:
            return []
    live = agent_view.live_agents(conn, keys)
    if not live:
        return [f"note: no agent is registered; the job waits in queue {queue!r} until one serving it starts"]
    serving = [agent for agent in live if agent_view.serves(agent, queue)]
    if not serving:
        names = ", ".join(str(agent["agent_id"]) for agent in live)
        return [f"note: no live agent serves queue {queue!r} (live agents: {names}); the job waits until one does"]
    reasons = {
        agent["agent_id"]: misfit_reason(wanted, constraints, Capacity.from_capacity_json(agent)) for agent in serving
    }
    if any(reason is None for reason in reasons.values()):
        return []
    largest = max(serving, key=agent_view.size_key)
    return [
        f"warning: no live agent serving queue {queue!r} could ever run this request ({describe_request(request)}); "
        f"the largest is {agent_view.describe(largest)}: {reasons[largest['agent_id']]}"
    ]


def describe_request(request: Mapping[str, Any]) -> str:
    """``4 CPUs, 16GiB, 2 GPUs A100 (40GiB each)`` from a canonical request dict."""
    parts: List[str] = []
    if request.get("cpus"):
        parts.append(f"{request['cpus']:g} CPUs")
    if request.get("memory_mib"):
        parts.append(format_mib(request["memory_mib"]))
    if request.get("gpus"):
        gpu = f"{request['gpus']} GPU{'s' if request['gpus'] > 1 else ''}"
        gpu += f" {request['gpu_model']}" if request.get("gpu_model") else ""
        gpu += f" ({format_mib(request['gpu_memory_mib'])} each)" if request.get("gpu_memory_mib") else ""
        parts.append(gpu)
    return ", ".join(parts) or "no resources"
