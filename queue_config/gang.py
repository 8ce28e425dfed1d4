"""Multi-node gang jobs: a queue's ``gang:`` options, the check of a job's ``nodes``, and the member table.

A job with ``nodes: N`` (N > 1) is one job run by N members, ranks 0..N-1, each on a different
agent. Its members live in ``{ns}:gang:{id}`` (HASH, agents only: a submitter may rewrite her job
record, never this), written by ``lifecycle``'s gang script (``gang.lua``) and read here:

=====================  ============================================================================
field                  value
=====================  ============================================================================
round                  the assembly round (an integer); a hold or a member of another round is stale
attempt                the job's ``attempts`` when the round's gang was complete (its run's fencing token)
deadline               epoch seconds the round must be complete (assembly) or started (barrier) by
port                   ``MASTER_PORT``: the free port rank 0's agent chose when it was ready
held                   how many members of the round were held (the next hold's rank)
reserved               the round's members not held yet whose quota the first hold reserved for the user
reserved_gpus, _cpus   one member's GPUs and CPUs in that reservation
rank:<k>               JSON :class:`Member` of rank k
agent:<id>             the rank agent ``id`` holds in this round
=====================  ============================================================================

``{ns}:gang:assembling:{queue}`` (STRING ``<job id>:<round>``, PX the queue's assembly timeout) names
the one gang of a queue that may hold members now: two gangs never each hold part of what both need.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional

import redis
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.units import parse_duration_s, rename_unit_keys
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from launchbay.text import as_text

#: The most members any queue may allow for one job.
MAX_NODES = 256
#: Member states, in the order a member goes through them.
HELD, READY, RUNNING = "held", "ready", "running"
#: A hold given up (the round was not complete in time); then the ends of a member that ran.
RELEASED = "released"
FINISHED, FAILED, STOPPED, LOST = "finished", "failed", "stopped", "lost"
ENDED = frozenset({RELEASED, FINISHED, FAILED, STOPPED, LOST})


#: Why a multi-node job waits (``pending_reason``), written by the agents' gang service.
PENDING_UNPLACEABLE = "gang_unplaceable"  # the live agents could never hold it: nothing is held
PENDING_WAITING = "gang_waiting"  # another gang of its queue is assembling, or its last attempt still stops
PENDING_ASSEMBLING = "gang_assembling"  # some members are held, more are wanted
PENDING_INCOMPLETE = "gang_incomplete"  # a round ran out of time; its holds were released
PENDING_CODES = (PENDING_UNPLACEABLE, PENDING_WAITING, PENDING_ASSEMBLING, PENDING_INCOMPLETE)


def waiting_detail(why: str, queue: str) -> str:
    if why == "previous_attempt_running":
        return "its previous attempt's members are still stopping; it assembles again once they all ended"
    return f"another multi-node job of queue {queue!r} is assembling; one gang assembles at a time"


def quota_detail(user: str, queue: str, nodes: int) -> str:
    return (
        f"the quota of {user!r} in queue {queue!r} does not cover all {nodes} members with what the user runs now; "
        "no member is held until it does"
    )


def incomplete_detail(table: Gang, nodes: int) -> str:
    """Which members a round that ran out of time held, and how many it could not place."""
    held = [m for m in table.current()]
    names = ", ".join(f"rank {m.rank} on {m.agent}" for m in held) or "none"
    missing = max(0, nodes - len(held))
    return (
        f"round {table.round} held {len(held)} of {nodes} members ({names}) but {missing} could not be placed "
        "in time; every hold was released and it assembles again"
    )


class GangOptions(BaseModel):
    """A queue's ``gang:`` section: whether (and how large) multi-node jobs it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The largest ``nodes`` a job of this queue may ask for (1: no multi-node jobs).
    max_nodes: int = Field(default=1, ge=1, le=MAX_NODES)
    #: The members' docker network: ``host`` is what NCCL and gloo need to reach other hosts.
    network: Optional[str] = "host"
    #: How long members are held for a gang that is not complete (and, once complete, for every
    #: member's image to be ready) before every hold is released.
    assemble_timeout_s: int = Field(default=300, ge=1, le=24 * 3600)

    @model_validator(mode="before")
    @classmethod
    def _accept_duration(cls, data: Any) -> Any:
        return rename_unit_keys(data, {"assemble_timeout": ("assemble_timeout_s", parse_duration_s)})


def nodes_problem(nodes: Any, options: GangOptions, queue: str) -> Optional[str]:
    """Why ``nodes`` may not run in ``queue`` (None: it may), at enqueue and on the agent alike."""
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        return f"nodes {nodes!r} must be a whole number of at least 1"
    if nodes > options.max_nodes:
        if options.max_nodes == 1:
            return f"nodes: {nodes}, but queue {queue!r} runs no multi-node jobs (its gang: max_nodes is 1)"
        return f"nodes: {nodes}, queue {queue!r} allows at most {options.max_nodes} (gang: max_nodes)"
    return None


@dataclass(frozen=True)
class Member:
    """One member of a gang, as its agent wrote it."""

    rank: int
    agent: str
    host: str = ""
    #: The address the other members reach this host at (the agent's ``--advertise-addr``).
    addr: str = ""
    state: str = HELD
    round: int = 0
    container: Optional[str] = None
    exit_code: Optional[int] = None
    at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: Any) -> Optional[Member]:
        """A ``rank:<k>`` value of the table (agents write it: ``gang.lua``); None when it is not one."""
        try:
            return _MEMBER.validate_json(raw)
        except ValueError:  # pydantic's ValidationError is one
            return None


#: Reads a member's JSON into :class:`Member` (types checked, absent fields at their defaults).
_MEMBER = TypeAdapter(Member)


@dataclass(frozen=True)
class Gang:
    """A gang's table as read: its round, attempt, deadline, port and members by rank."""

    round: int = 0
    attempt: int = 0
    deadline: float = 0.0
    port: Optional[int] = None
    members: Dict[int, Member] = None  # type: ignore[assignment]

    def current(self) -> List[Member]:
        """The members of the current round, by rank."""
        return [m for _, m in sorted((self.members or {}).items()) if m.round == self.round]


def parse(raw: Mapping[Any, Any]) -> Gang:
    """An HGETALL of ``{ns}:gang:{id}`` as a :class:`Gang` (unreadable values read as absent)."""
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    members: Dict[int, Member] = {}
    for name, value in fields.items():
        if name.startswith("rank:"):
            member = Member.from_json(value)
            if member is not None:
                members[member.rank] = member
    return Gang(
        round=_int(fields.get("round")),
        attempt=_int(fields.get("attempt")),
        deadline=_float(fields.get("deadline")),
        port=_int(fields.get("port")) or None,
        members=members,
    )


def read(conn: redis.Redis, keys: Keys, job_id: str) -> Gang:
    """The gang table of ``job_id`` (empty when it has none)."""
    return parse(conn.hgetall(keys.gang(job_id)))


@dataclass(frozen=True)
class Node:
    """One rank of a multi-node job as ``launchbay status`` lists it (``unplaced``: no agent holds it)."""

    rank: int
    agent: Optional[str] = None
    host: Optional[str] = None
    addr: Optional[str] = None
    container: Optional[str] = None
    state: str = "unplaced"
    exit_code: Optional[int] = None

    def as_json(self) -> Dict[str, Any]:
        return asdict(self)


def node_rows(gang: Gang, nodes: int) -> List[Node]:
    """One :class:`Node` per rank of the current round."""
    members = {m.rank: m for m in gang.current()}
    rows = []
    for rank in range(nodes):
        m = members.get(rank)
        rows.append(Node(rank) if m is None else Node(rank, m.agent, m.host, m.addr, m.container, m.state, m.exit_code))
    return rows


def nodes_json(gang: Gang, nodes: int) -> List[Dict[str, Any]]:
    """What ``launchbay status --json`` lists under ``nodes``: one entry per rank of the current round."""
    return [node.as_json() for node in node_rows(gang, nodes)]


def _int(text: Optional[str]) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _float(text: Optional[str]) -> float:
    try:
        return float(text or 0.0)
    except ValueError:
        return 0.0
