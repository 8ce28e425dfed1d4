"""What the cluster page shows: every live agent with a cell per GPU (the job and user on it,
memory, utilization, temperature, health), the multi-node jobs its agents hold or run (each member),
and the queued jobs with why each is still waiting.

Read-only, from the contracts in docs/architecture.md: an agent's capacity JSON (its GPU entries
carry ``health``, ``health_reason``, ``memory_used_mib``, ``utilization_pct``, ``temperature_c``;
a missing one is unknown, health "ok"), its ledger (which job holds which GPU) and job records.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

import redis
from launchbay.client.fit import describe_request
from launchbay.queue_config import agents as agent_view
from launchbay.queue_config import gang
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import STATE_ONLY, Records
from launchbay.queue_config.matching import Capacity, Request, fit, misfit_reason
from launchbay.queue_config.store import QueueStore
from launchbay.queue_config.units import format_duration, format_mib

#: Queued jobs listed beside the agents, oldest first.
PENDING_SHOWN = 50
UNKNOWN_USER = "unknown"


def cluster_view(conn: redis.Redis, keys: Keys, now: Optional[float] = None) -> Dict[str, Any]:
    """``{"agents": [...], "gangs": [...], "pending": [...], "pending_total": n}`` for the template."""
    now = time.time() if now is None else now
    records = Records(conn, keys)
    agents = []
    live = [a for a in agent_view.read_agents(conn, keys) if a["capacity"]]
    capacities = [a["capacity"] for a in live]
    allocations = {str(a["capacity"]["agent_id"]): a["jobs"] for a in live}
    for capacity in capacities:
        entries = allocations[str(capacity["agent_id"])]
        jobs = {str(e.get("job_id")): records.load(str(e.get("job_id"))) for e in entries}
        agents.append(agent_card(capacity, entries, jobs))
    pending = queued_records(conn, keys)
    store = QueueStore(conn, keys)
    paused = {name for name in store.names() if store.is_paused(name)}
    rows = [pending_row(r, capacities, allocations, paused, now) for r in pending[:PENDING_SHOWN]]
    gangs = gang_rows(conn, keys, records, allocations)
    return {"agents": agents, "gangs": gangs, "pending": rows, "pending_total": len(pending)}


def gang_rows(
    conn: redis.Redis, keys: Keys, records: Records, allocations: Mapping[str, List[Mapping[str, Any]]]
) -> List[Dict[str, Any]]:
    """Each multi-node job a live agent holds or runs a member of, with every member as ``launchbay status``
    lists it (rank, agent, host, container, state, exit code); the job once, however many agents hold it."""
    job_ids = sorted({str(e.get("job_id")) for entries in allocations.values() for e in entries if _member(e)})
    rows = []
    for job_id in job_ids:
        record = records.load(job_id)
        if record is None or record.nodes < 2:
            continue
        nodes = gang.nodes_json(gang.read(conn, keys, job_id), record.nodes)
        rows.append({**_job_ref(job_id, record), "nodes": record.nodes, "members": nodes})
    return rows


def _member(entry: Mapping[str, Any]) -> bool:
    return entry.get("gang_rank") is not None  # dict read: a ledger entry's JSON, not a job hash


def agent_card(
    capacity: Mapping[str, Any], entries: List[Mapping[str, Any]], jobs: Mapping[str, Optional[JobRecord]]
) -> Dict[str, Any]:
    """One agent row: who it is, CPUs and memory in use, and one cell per GPU."""
    holder = {str(gpu): str(e.get("job_id")) for e in entries for gpu in e.get("gpus") or ()}
    ranks = {str(e.get("job_id")): e.get("gang_rank") for e in entries if _member(e)}
    cpus = float(capacity.get("cpus") or 0.0)
    memory = int(capacity.get("memory_mib") or 0)
    return {
        "agent_id": str(capacity.get("agent_id")),
        "host": str(capacity.get("host") or ""),
        "queues": list(capacity.get("queues") or []),
        "labels": dict(capacity.get("labels") or {}),
        "cpus": f"{sum(float(e.get('cpus') or 0) for e in entries):g} / {cpus:g}",
        "memory": f"{format_mib(sum(int(e.get('memory_mib') or 0) for e in entries))} / {format_mib(memory)}",
        "jobs": len(entries),
        "max_jobs": capacity.get("max_jobs"),
        "gpus": [_ranked(gpu_cell(gpu, holder, jobs), ranks) for gpu in capacity.get("gpus") or []],
        "cpu_jobs": [
            {**_job_ref(job_id, jobs.get(job_id)), "rank": ranks.get(job_id)} for job_id in _cpu_only(entries)
        ],
    }


def _ranked(cell: Dict[str, Any], ranks: Mapping[str, Optional[int]]) -> Dict[str, Any]:
    """A GPU cell whose job is a multi-node job's member, with that member's rank."""
    if cell["job"] is not None:
        cell["job"]["rank"] = ranks.get(cell["job"]["id"])
    return cell


def _cpu_only(entries: Iterable[Mapping[str, Any]]) -> List[str]:
    return sorted(str(e.get("job_id")) for e in entries if not e.get("gpus"))


def _job_ref(job_id: str, record: Optional[JobRecord]) -> Dict[str, Any]:
    """The job on a GPU or a CPU slot; a record already gone (expired) shows as unknown."""
    if record is None:
        return {"id": job_id, "name": "", "user": UNKNOWN_USER, "state": "unknown"}
    return {
        "id": job_id,
        "name": record.name,
        "user": record.submitter or UNKNOWN_USER,  # the key's owner (JobRecord.from_fields)
        "state": str(record.state or record.fields.get("state") or "unknown"),  # dict read: a state not ours, as stored
    }


def gpu_cell(
    gpu: Mapping[str, Any], holder: Mapping[str, str], jobs: Mapping[str, Mapping[str, Any]]
) -> Dict[str, Any]:
    """One GPU: model, memory used/total, utilization, temperature, health and the job on it."""
    gpu_id = str(gpu.get("id"))
    total, used = gpu.get("memory_total_mib"), gpu.get("memory_used_mib")
    util, temp = gpu.get("utilization_pct"), gpu.get("temperature_c")
    job_id = holder.get(gpu_id)
    health = str(gpu.get("health") or "ok")
    return {
        "id": gpu_id,
        "uuid": str(gpu.get("uuid") or ""),
        "model": str(gpu.get("name") or "GPU"),
        "short_model": str(gpu.get("name") or "GPU").removeprefix("NVIDIA "),
        "memory": _used_of_total(used, total),
        "memory_pct": round(100 * used / total) if used is not None and total else None,
        "utilization": f"{util}%" if util is not None else "-",
        "utilization_pct": util,
        "temperature": f"{temp}\u00b0C" if temp is not None else "",
        "health": health,
        "health_reason": str(gpu.get("health_reason") or ""),
        "job": _job_ref(job_id, jobs.get(job_id)) if job_id else None,
    }


def _used_of_total(used: Optional[int], total: Optional[int]) -> str:
    """``69.5 / 79.6GiB`` (one unit when both share it), ``? / 79.6GiB`` when usage is unknown."""
    used_text = format_mib(used) if used is not None else "?"
    total_text = format_mib(total) if total else "?"
    unit = total_text.lstrip("0123456789.")
    if unit and used_text.endswith(unit) and used_text[: -len(unit)].replace(".", "").isdigit():
        used_text = used_text[: -len(unit)]
    return f"{used_text} / {total_text}"


def queued_records(conn: redis.Redis, keys: Keys) -> List[JobRecord]:
    """Every queued job's record across queues, oldest first (two pipelined round trips per queue)."""
    found = []
    for queue in QueueStore(conn, keys).names():
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in conn.zrange(keys.queue_jobs(queue), 0, -1)]
        with conn.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(keys.job(job_id), STATE_ONLY)
            states = [JobRecord.from_values(job_id, STATE_ONLY, values) for job_id, values in zip(ids, pipe.execute())]
        queued = [record.id for record in states if record.state is State.QUEUED]
        with conn.pipeline(transaction=False) as pipe:
            for job_id in queued:
                pipe.hgetall(keys.job(job_id))
            found += [JobRecord.from_hash(job_id, raw) for job_id, raw in zip(queued, pipe.execute()) if raw]
    return sorted(found, key=lambda r: r.times.get("queued") or 0.0)


def pending_row(
    record: JobRecord,
    capacities: List[Mapping[str, Any]],
    allocations: Mapping[str, List[Mapping[str, Any]]],
    paused: Iterable[str],
    now: float,
) -> Dict[str, Any]:
    queued_at = record.times.get("queued") or now
    return {
        "id": record.id,
        "name": record.name,
        "queue": record.queue,
        "priority": record.priority,
        "user": record.submitter or UNKNOWN_USER,
        "request": describe_request(record.request),
        "waiting": format_duration(max(0, int(now - queued_at))) if now - queued_at >= 1 else "just now",
        "reason": record.pending_detail
        or record.pending_reason
        or pending_reason(record, capacities, allocations, set(paused)),
    }


def pending_reason(
    record: JobRecord,
    capacities: List[Mapping[str, Any]],
    allocations: Mapping[str, List[Mapping[str, Any]]],
    paused: set,
) -> str:
    """Why a queued job waits, worked out from the live agents when the record does not say."""
    queue = record.queue
    if queue in paused:
        return f"queue {queue} is paused"
    serving = [c for c in capacities if agent_view.serves(c, queue)]
    if not serving:
        return f"no live agent serves queue {queue}"
    request = Request.from_dict(record.request)
    constraints = record.constraints
    totals = {str(c["agent_id"]): Capacity.from_capacity_json(c) for c in serving}
    reasons = {agent_id: misfit_reason(request, constraints, total) for agent_id, total in totals.items()}
    if all(reasons.values()):
        largest = max(serving, key=agent_view.size_key)
        return f"fits no live agent: {reasons[str(largest['agent_id'])]}"
    for capacity in serving:
        agent_id = str(capacity["agent_id"])
        entries = allocations.get(agent_id) or []
        # A GPU that is not "ok" is never handed out, so it is not free whatever the ledger says.
        withheld = [str(g.get("id")) for g in capacity.get("gpus") or [] if (g.get("health") or "ok") != "ok"]
        free = totals[agent_id].without(
            sum(float(e.get("cpus") or 0) for e in entries),
            sum(int(e.get("memory_mib") or 0) for e in entries),
            [str(g) for e in entries for g in e.get("gpus") or ()] + withheld,
            slots=len(entries),
        )
        if reasons[agent_id] is None and fit(request, constraints, free, live=False) is not None:
            return f"fits {agent_id} now; waiting for its next claim"
    return "waiting for resources: every agent that fits it is busy"
