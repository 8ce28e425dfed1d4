"""The one reader of agent state (used by ``launchbay agents``, the UI, pending reasons and enqueue's fit
notes), and the formats it shares with the agent: the ledger entry and the fleet summary's line.

Agents write ``{ns}:agent:{id}:capacity`` (JSON, see docs/architecture.md), their hash
``{ns}:agent:{id}`` (status, host, counters...) and ledger ``{ns}:agent:{id}:ledger`` (job id ->
:class:`LedgerEntry` JSON), and keep ``{ns}:agent:{id}:alive`` set with a TTL; an agent whose
``alive`` key expired is gone, whatever its other keys still say.

Whoever reads every agent reads the **fleet summary** instead, ``{ns}:fleet``: a hash with one
field per agent, the same facts in one line (:func:`summary_line`), which the agent rewrites with
every heartbeat and whenever its ledger changes (a claim, a release), and the reaper deletes with
the rest of a lost agent's keys. Its first line is when the agent stops counting as alive, in
milliseconds of the Redis server's clock (``TIME``, so no host's clock matters), the heartbeat's
TTL from its last beat. One read (``HGETALL`` and ``TIME``) answers for the whole fleet, where the
keys above cost four reads per agent.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from typing import Any, Dict, Iterable, List, Mapping, Optional, Protocol, Tuple

import redis
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity
from launchbay.queue_config.units import format_mib

from launchbay.text import as_text


@dataclass(frozen=True)
class LedgerEntry:
    """One claimed job's allocation; ``claimed_at`` epoch seconds, ``max_runtime_s`` None = no limit."""

    job_id: str
    queue: str
    cpus: float
    memory_mib: int
    gpus: Tuple[str, ...]
    claimed_at: float
    max_runtime_s: Optional[int] = None
    user: str = ""  # the job's submitter, whose quota usage the claim counted it in ("" = none)
    #: A member of a multi-node job: its rank and assembly round (``gang.lua`` writes them); else None.
    gang_rank: Optional[int] = None
    gang_round: Optional[int] = None

    def to_json(self) -> str:
        # Built by hand rather than with dataclasses.asdict, which deep-copies: this runs on every claim.
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["gpus"] = list(self.gpus)
        if self.gang_rank is None:  # a single-node job's entry keeps its shape
            del data["gang_rank"], data["gang_round"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: Any) -> LedgerEntry:
        data: Mapping[str, Any] = json.loads(raw)
        max_runtime = data.get("max_runtime_s")
        return cls(
            job_id=str(data["job_id"]),
            queue=str(data.get("queue") or ""),
            cpus=float(data.get("cpus") or 0.0),
            memory_mib=int(data.get("memory_mib") or 0),
            gpus=tuple(str(g) for g in data.get("gpus") or ()),
            claimed_at=float(data.get("claimed_at") or 0.0),
            max_runtime_s=int(max_runtime) if max_runtime is not None else None,
            user=str(data.get("user") or ""),
            gang_rank=_optional_int(data.get("gang_rank")),
            gang_round=_optional_int(data.get("gang_round")),
        )


def _optional_int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


def decode_entries(raw: Mapping[Any, Any], *, skipped: Optional[List[str]] = None) -> Dict[str, LedgerEntry]:
    """An HGETALL of a ledger as entries by job id; an unreadable entry is skipped (its id added to ``skipped``)."""
    entries = {}
    for job_id, value in raw.items():
        try:
            entries[as_text(job_id)] = LedgerEntry.from_json(value)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            if skipped is not None:
                skipped.append(as_text(job_id))
    return entries


class AllocationLike(Protocol):
    """A running job's allocation as placement and the container builder read it (a :class:`LedgerEntry`)."""

    job_id: str
    queue: str
    cpus: float
    memory_mib: int
    gpus: Tuple[str, ...]
    claimed_at: float
    max_runtime_s: Optional[int]


def free_capacity(capacity: Capacity, running: Iterable[AllocationLike]) -> Capacity:
    """``capacity`` less what the running jobs hold."""
    running = list(running)
    return capacity.without(
        sum(a.cpus for a in running),
        sum(a.memory_mib for a in running),
        [g for a in running for g in a.gpus],
        slots=len(running),
    )


# -- the fleet summary ---------------------------------------------------------------------------

# KEYS[1] = the summary. ARGV[1] = agent id, ARGV[2] = TTL in ms, ARGV[3] = the line after its expiry.
# Returns the expiry written (ms on the server's clock), which later writes of the same beat reuse.
SUMMARY_WRITE_LUA = """
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', expires) .. '\\n' .. ARGV[3])
return expires
"""


# An agent's beat in one call. KEYS[1] = the summary, KEYS[2] = the agent's alive key, KEYS[3] = the agents
# set, KEYS[4] = the agent's ledger. ARGV[1] = agent id, ARGV[2] = TTL in ms, ARGV[3] = the line's head
# (:func:`summary_line` with no entries), ARGV[4] = the alive key's value. The line gets the ledger's
# entries as stored (one a line; a value with a newline in it is not an entry claim.lua wrote: left out).
# The alive key and the line expire together (the same TTL from the same TIME), and the agent is listed
# in the same step, so the reaper never sees it listed but not alive unless its beats stopped.
# Returns {the expiry written, the ledger as HGETALL returns it}.
BEAT_LUA = """
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
local ledger = redis.call('HGETALL', KEYS[4])
local line = {string.format('%d', expires), ARGV[3]}
for i = 2, #ledger, 2 do
  if not string.find(ledger[i], '\\n', 1, true) then line[#line + 1] = ledger[i] end
end
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], table.concat(line, '\\n'))
return {expires, ledger}
"""


@dataclass(frozen=True)
class SummaryLine:
    """One agent's field of the fleet summary, read back."""

    agent_id: str
    expires_ms: int
    info: Dict[str, str]  # the agent hash's fields
    capacity: Optional[Dict[str, Any]]
    entries: Tuple[LedgerEntry, ...]

    def alive(self, now_ms: int) -> bool:
        return self.expires_ms > now_ms


def summary_line(info: Mapping[str, str], capacity: Mapping[str, Any], entries: Iterable[LedgerEntry]) -> str:
    """The part of an agent's summary field after its expiry: its hash, its capacity, one ledger entry a line."""
    head = json.dumps({"info": dict(info), "capacity": dict(capacity)}, sort_keys=True, separators=(",", ":"))
    return "\n".join([head, *(e.to_json() for e in entries)])


def parse_summary_line(agent_id: str, raw: Any) -> Optional[SummaryLine]:
    """A field of ``{ns}:fleet`` as written by :data:`SUMMARY_WRITE_LUA`; None when it is not one."""
    lines = as_text(raw).split("\n")
    try:
        expires_ms, head = int(lines[0]), json.loads(lines[1])
    except (ValueError, IndexError):
        return None
    if not isinstance(head, dict) or not isinstance(head.get("info"), dict):
        return None
    capacity = head.get("capacity")
    entries = decode_entries({str(i): line for i, line in enumerate(lines[2:])}).values()
    return SummaryLine(
        agent_id,
        expires_ms,
        {str(k): str(v) for k, v in head["info"].items()},
        capacity if isinstance(capacity, dict) else None,
        tuple(entries),
    )


def read_summary(conn: redis.Redis, keys: Keys) -> Tuple[int, List[SummaryLine]]:
    """The Redis server's time (ms) and every agent's line of the fleet summary, sorted by agent id."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.fleet)
        pipe.time()
        try:
            raw, (seconds, micros) = pipe.execute()
        except redis.exceptions.NoPermissionError:  # an ACL from before TIME was listed: this host's clock
            raw, (seconds, micros) = conn.hgetall(keys.fleet), divmod(int(time.time() * 1e6), 10**6)
    lines = (parse_summary_line(as_text(agent_id), value) for agent_id, value in raw.items())
    return seconds * 1000 + micros // 1000, sorted((line for line in lines if line), key=lambda line: line.agent_id)


def read_agents(conn: redis.Redis, keys: Keys, *, include_gone: bool = False) -> List[Dict[str, Any]]:
    """Every registered agent (live ones only unless ``include_gone``) with capacity, status and jobs.

    Read from the fleet summary: two commands whatever the fleet's size."""
    now_ms, lines = read_summary(conn, keys)
    agents = []
    for line in lines:
        alive, info, agent_id = line.alive(now_ms), line.info, line.agent_id
        if not alive and not include_gone:
            continue
        agents.append(
            {
                "agent_id": agent_id,
                "alive": bool(alive),
                "status": info.get("status", "unknown") if alive else "gone",
                "host": info.get("host"),
                "docker": info.get("docker"),
                "gpu_problem": info.get("gpu_problem") or None,
                "ledger_problem": info.get("ledger_problem") or None,
                "docker_problem": info.get("docker_problem") or None,
                "beat_at": float(info["beat_at"]) if info.get("beat_at") else None,
                "counters": json.loads(info.get("counters") or "{}"),
                "capacity": line.capacity,
                "jobs": [json.loads(e.to_json()) for e in line.entries],
            }
        )
    return agents


def live_agents(conn: redis.Redis, keys: Optional[Keys] = None) -> List[Dict[str, Any]]:
    """The capacity JSON of every agent whose heartbeat is current, sorted by agent id.

    An agent that is alive but has not written a readable capacity yet is left out: there is
    nothing to match a request against.
    """
    found = read_agents(conn, keys or Keys.from_env())
    return [
        {**agent["capacity"], "agent_id": agent["capacity"].get("agent_id") or agent["agent_id"]}
        for agent in found
        if agent["capacity"] is not None
    ]


def idle_agents(conn: redis.Redis, keys: Keys, queue: str, count: int = 8) -> List[Dict[str, Any]]:
    """The capacity JSON of the first ``count`` agents on ``queue``'s idle list whose heartbeat is current.

    One pipelined read whatever the fleet's size: the enqueue's fit advice asks these first, and reads
    every agent (:func:`live_agents`) only when none of them fits.
    """
    ids = [as_text(a) for a in conn.lrange(keys.idle(queue), 0, count - 1)]
    with conn.pipeline(transaction=False) as pipe:
        for agent_id in ids:
            pipe.exists(keys.agent_alive(agent_id))
            pipe.get(keys.agent_capacity(agent_id))
        replies = pipe.execute()
    found = []
    for agent_id, alive, raw in zip(ids, replies[0::2], replies[1::2]):
        capacity = _parse_capacity(raw)
        if alive and capacity is not None:
            found.append({**capacity, "agent_id": capacity.get("agent_id") or agent_id})
    return found


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
