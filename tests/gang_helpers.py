"""Multi-node jobs as agents leave them in Redis, for tests that read them (the UI, Prometheus, gang.lua).

Members are held and their states set through ``gang.lua`` (``lifecycle.GangScript``), the one writer
of a gang's member table, as each agent's gang service and members do.
"""

from __future__ import annotations

import json
import time
from typing import Dict, Optional, Sequence, Tuple

from conftest import publish_agent_line
from launchbay.queue_config import gang
from launchbay.queue_config.agents import LedgerEntry
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import GangScript

#: Two containers' ids, one per member, as docker names them.
CONTAINERS = ("3f2a9c81d4e5b6a7c8d9e0f1", "9b8a7c6d5e4f3a2b1c0d9e8f")
AGENT_CAPACITY = (16.0, 64000, 4, "[]")


def agent_capacity(agent_id: str, queue: str) -> dict:
    return {"agent_id": agent_id, "host": f"{agent_id}.lan", "labels": {}, "queues": [queue], "cpus": 16.0,
            "memory_mib": 64000, "max_jobs": 4, "gpus": []}  # fmt: skip


def register(conn, agent_id: str, queue: str) -> None:
    """An agent's liveness and capacity, as docs/architecture.md describes them (its ledger is gang.lua's)."""
    keys = Keys()
    conn.sadd(keys.agents, agent_id)
    conn.set(keys.agent_alive(agent_id), "1", ex=60)
    conn.set(keys.agent_capacity(agent_id), json.dumps(agent_capacity(agent_id, queue)))
    publish_agent_line(conn, agent_id)  # the fleet summary line its heartbeat writes


def script(conn, agent_id: str) -> GangScript:
    index = ord(agent_id[-1]) - ord("a") + 1
    return GangScript(conn, Keys(), agent_id=agent_id, host=f"{agent_id}.lan", addr=f"10.0.0.{index}")


def hold(
    conn,
    job_id: str,
    queue: str,
    agent_id: str,
    *,
    nodes: int = 2,
    user: str = "",
    cpus: float = 2.0,
    limits: Optional[Dict[str, float]] = None,
    timeout_s: float = 300,
    capacity: Tuple[float, int, int, str] = AGENT_CAPACITY,
) -> Tuple[bool, str, int, int]:
    """One hold as ``agent_id``'s gang service makes it: ``(held, why, rank, round)``."""
    entry = LedgerEntry(job_id, queue, cpus, 1024, (), time.time(), user=user)
    answer = script(conn, agent_id).hold(
        job_id, queue, entry.to_json(), user, nodes=nodes, timeout_s=timeout_s, capacity=capacity,
        limits=json.dumps(limits or {}), now=time.time(),
    )  # fmt: skip
    if conn.exists(Keys().agent_capacity(agent_id)):  # a registered agent's line follows its ledger
        publish_agent_line(conn, agent_id)
    return answer


def run_gang(conn, job_id: str, queue: str, agents: Sequence[str] = ("node-a", "node-b")) -> None:
    """Every member held (the job ``starting``), ready, then running in its container."""
    held = []
    for agent_id in agents:
        register(conn, agent_id, queue)
        ok, why, rank, round_ = hold(conn, job_id, queue, agent_id, nodes=len(agents))
        assert ok, why
        held.append((agent_id, rank, round_))
    for (agent_id, rank, round_), container in zip(held, CONTAINERS):
        assert script(conn, agent_id).member(job_id, round_, rank, gang.READY, port=29611 if rank == 0 else None)
        assert script(conn, agent_id).member(job_id, round_, rank, gang.RUNNING, container=container)


def end_member(conn, job_id: str, rank: int, state: str, exit_code: Optional[int]) -> None:
    """Rank ``rank`` of the current round ends, as its agent records it."""
    table = gang.read(conn, Keys(), job_id)
    member = table.current()[rank]
    assert script(conn, member.agent).member(job_id, table.round, rank, state, exit_code=exit_code)
