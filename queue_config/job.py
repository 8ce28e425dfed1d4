"""The job record: its type, its states, and how it is stored. The one module that knows the hash's fields.

A job is one Redis hash, ``{ns}:job:{id}``. This module turns it into a :class:`JobRecord` and
back (:meth:`JobRecord.from_hash`, :meth:`JobRecord.to_hash`; :func:`from_hash`/:func:`to_hash` for
the plain-dict view most readers use) and names its :class:`State` and :class:`Reason` values. It
writes nothing: every change of a record goes through ``launchbay.queue_config.lifecycle``.

Fields (all strings in Redis; JSON where noted):

========================  ==========================================================
id, name, queue           the job id, its job definition name, its queue
state, reason, message    see :class:`State` and :class:`Reason`; message is for people
priority                  high | normal | low
spec                      JSON: image, command, workdir, env, docker options
request                   JSON: the canonical resource request (claim script reads it)
constraints               JSON: agent labels that must match
max_runtime_s             seconds, or empty
nodes                     a multi-node job's member count (empty: 1); its members: gang.py
run_config                JSON: run-config overrides
file_overrides            JSON: {relative path: object}
agent, host, container    who runs it, and the container id
gpus                      JSON list of host GPU ids, e.g. ["0", "3"]
exit_code                 the container's exit code
effective_config          JSON: the config the job ran with (the SDK's config.json)
summary                   JSON: the job's summary.json when it ended (last value per metric)
attempts                  how many times an agent claimed it
preemptions               how many times it was stopped for a higher-priority job and put back
cancel_requested          "1" once a user asked to cancel a claimed job
cancel_reason             why the cancel was asked: empty (a person) or "pruned" (a sweep)
cancel_message            the canceler's words for people (a sweep's pruner says why)
submitter                 who asked: the Redis ACL user, else --user / LAUNCHBAY_USER, else
                          the OS user (client/submitter.py); read as whom the key names
                          (``JobRecord.submitter``), as stored in ``JobRecord.submitter_field``
pending_reason            while queued: why it waits, a stable code (queue_config/pending.py)
pending_detail            while queued: the same in one line for people
estimated_start           while queued: epoch seconds it should start by, or empty (unknown)
rq_execution              RQ's execution id while an agent runs it
sweep, trial              a sweep's trial job: the sweep id and the trial's number
<state>_at                epoch seconds when it entered that state (queued_at, ...)
========================  ==========================================================

Anyone who can write to Redis can write a record, so reading one never fails on a malformed
value: :func:`from_hash` gives None for it and names it in ``unreadable_fields`` (the agent fails
such a job with a message saying so, instead of choking on it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from launchbay.queue_config.acl import job_owner

from launchbay.text import as_text


class State(str, Enum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset({State.FINISHED, State.FAILED, State.CANCELED})
ACTIVE_STATES = frozenset({State.STARTING, State.RUNNING})
#: (state, its ``<state>_at`` field) for each state, worked out once (records are read by the thousand).
_STATE_TIMES = tuple((state.value, f"{state.value}_at") for state in State)


class Reason(str, Enum):
    """Why a job ended (or was put back in its queue)."""

    EXIT_CODE = "exit_code"  # the command exited non-zero
    OOM_KILLED = "oom_killed"  # the kernel killed it for exceeding its memory
    TIMEOUT = "timeout"  # it ran past max_runtime and was stopped
    IMAGE_PULL_FAILED = "image_pull_failed"  # the image is missing and could not be pulled
    CONTAINER_FAILED = "container_failed"  # docker refused to create or start the container
    AGENT_LOST = "agent_lost"  # its agent stopped heartbeating and did not come back
    REQUEUED_AGENT_LOST = "requeued_agent_lost"  # put back in the queue after its agent was lost
    CANCELED_BY_USER = "canceled_by_user"
    DOCKER_UNAVAILABLE = "docker_unavailable"  # the engine went away and the container with it
    PREEMPTED = "preempted"  # stopped for a higher-priority job and put back at the front of its queue
    SECRET_MISSING = "secret_missing"  # a secret of the queue could not be read on the agent's host
    GPU_FAILED = "gpu_failed"  # a GPU it ran on became unhealthy (agent/gpu_health.py); maybe requeued
    PRUNED = "pruned"  # a sweep's early termination stopped the trial (sweeps/driver.py)
    REFUSED = "refused"  # its record no longer passes enqueue's checks (queue_config/job_checks.py)
    GANG_NOT_READY = "gang_not_ready"  # a multi-node job's members were not all ready in time (gang.py)

    def __str__(self) -> str:
        return self.value


JSON_FIELDS = frozenset(
    {"spec", "request", "constraints", "run_config", "file_overrides", "gpus", "effective_config", "summary"}
)
#: The JSON fields that hold a list; the others hold an object.
JSON_LIST_FIELDS = frozenset({"gpus"})
INT_FIELDS = frozenset({"exit_code", "attempts", "max_runtime_s", "preemptions", "trial", "nodes"})
FLOAT_FIELDS = frozenset({"estimated_start"})
#: Why a queued job waits: written by agents' passes (``lifecycle.set_pending``), cleared by the claim.
PENDING_FIELDS = ("pending_reason", "pending_detail", "estimated_start")
#: Added by :func:`from_hash`: the names of the fields whose stored value could not be read.
UNREADABLE_FIELDS = "unreadable_fields"
CANCEL_REQUESTED = "cancel_requested"
#: A cancel and why it was asked (``lifecycle.cancel``): a person (no reason) or a sweep pruning a trial.
CANCEL_FIELDS = (CANCEL_REQUESTED, "cancel_reason", "cancel_message")
#: Fields that describe one run (who ran it, how it ended): the one list. A requeued job starts
#: without them; a job put back after its agent was lost keeps only its cancel request; ``claim.lua``
#: clears them less what the claim itself sets (:data:`CLAIM_SETS`) and the cancel request (a
#: queued job that has one is not claimed). ``tests/test_structure.py`` checks claim.lua's list.
RUN_FIELDS = (
    "reason",
    "message",
    "exit_code",
    "agent",
    "host",
    "gpus",
    "container",
    "rq_execution",
    "effective_config",
    "summary",
    *CANCEL_FIELDS,
    "starting_at",
    "running_at",
    "finished_at",
    "failed_at",
    "canceled_at",
)
#: What ``claim.lua`` writes with ``state=starting`` (``attempts`` it increments).
CLAIM_SETS = ("agent", "host", "gpus", "starting_at")
#: What a job put back in its queue by the reaper or reconcile clears.
PUT_BACK_CLEARS = tuple(name for name in RUN_FIELDS if name not in CANCEL_FIELDS)


def to_hash(fields: Mapping[str, Any]) -> Dict[str, str]:
    """Python values as the strings stored in the hash (JSON where the field is JSON; None is "")."""
    out = {}
    for name, value in fields.items():
        if value is None:
            out[name] = ""
        elif name in JSON_FIELDS:
            out[name] = json.dumps(value, separators=(",", ":"), sort_keys=True)
        elif isinstance(value, Enum):
            out[name] = value.value
        else:
            out[name] = str(value)
    return out


def from_hash(raw: Mapping[Any, Any]) -> Dict[str, Any]:
    """The inverse of :func:`to_hash`, applied to an HGETALL result, as a plain dict.

    A value that cannot be read (not JSON, not a number) becomes None and its field name is listed
    under ``unreadable_fields``.
    """
    out: Dict[str, Any] = {}
    for key, value in raw.items():
        name, text = as_text(key), as_text(value)
        try:
            out[name] = _decode_value(name, text)
        except (ValueError, RecursionError):
            out[name] = None
            out.setdefault(UNREADABLE_FIELDS, []).append(name)
    return out


def _decode_value(name: str, text: str) -> Any:
    if name in JSON_FIELDS:
        return json.loads(text) if text else None
    if name in INT_FIELDS:
        return int(text) if text else None
    if name.endswith("_at") or name in FLOAT_FIELDS:
        return float(text) if text else None
    return text


# -- reading states out of a record (plain dict view) ------------------------------------------------


def state_of(record: Optional[Mapping[str, Any]]) -> Optional[State]:
    """The record's state, or None when there is no record or its state is not one of ours."""
    value = (record or {}).get("state")
    try:
        return State(as_text(value)) if value is not None else None
    except ValueError:
        return None


def is_active(record: Optional[Mapping[str, Any]]) -> bool:
    return state_of(record) in ACTIVE_STATES


def is_terminal(record: Optional[Mapping[str, Any]]) -> bool:
    return state_of(record) in TERMINAL_STATES


def is_waiting(fields: Mapping[str, Optional[str]]) -> bool:
    """Queued, and nobody asked to cancel it (what ``claim.lua`` checks again before a claim)."""
    return fields.get("state") == "queued" and fields.get(CANCEL_REQUESTED) != "1"  # hot: once per job per pass


#: What a claim pass reads again, on every pass, of a queued job it has seen (``agent/claim.py``).
WAITING_FIELDS = ("state", "cancel_requested", "queued_at")


def waiting(values: Sequence[Any]) -> Tuple[bool, Optional[str]]:
    """From an HMGET of :data:`WAITING_FIELDS`: whether the job waits (:func:`is_waiting`) and its
    ``queued_at`` as stored (it changes when the job is queued again). Hot: once per listed job per
    pass, where a whole :class:`JobRecord` would cost ten times as much."""
    state, cancel, queued_at = (None if value is None else as_text(value) for value in values)
    return is_waiting({"state": state, CANCEL_REQUESTED: cancel}), queued_at


#: What a claim pass reads of a queued job it sees for the first time (``agent/claim.py``): the
#: :data:`WAITING_FIELDS`, then what placement needs, which does not change while the job waits.
PLACEMENT_FIELDS = (
    *WAITING_FIELDS,
    "queue",
    "request",
    "constraints",
    "priority",
    "max_runtime_s",
    "submitter",
    "nodes",
)


@dataclass(frozen=True)
class QueuedJob:
    """What placement needs of a queued job, read from an HMGET of :data:`PLACEMENT_FIELDS`.

    The claim pass's first sight of each listed job (hot: every new job of every queue head, on every
    agent), where building a whole :class:`JobRecord` took three times as long. Its values follow the
    same rules as the record's attributes: the same decoding (:func:`from_hash`), the submitter is
    whom the key names (:func:`acl.job_owner`), a field of the wrong shape is unreadable.
    """

    id: str
    queue: str
    request: Dict[str, Any]
    constraints: Dict[str, Any]
    priority: str
    max_runtime_s: Optional[int]
    submitter: str
    nodes: int
    queued_at: float
    #: Fields whose stored value could not be read or is not the shape the field holds.
    unreadable: List[str]

    @classmethod
    def from_values(cls, job_id: str, names: Sequence[str], values: Sequence[Any]) -> QueuedJob:
        """Read an HMGET of ``names`` (:data:`PLACEMENT_FIELDS`, or fewer: the rest read as absent)."""
        fields = from_hash({name: value for name, value in zip(names, values) if value is not None})
        nodes, max_runtime = fields.get("nodes"), fields.get("max_runtime_s")
        return cls(
            id=job_id,
            queue=_text(fields.get("queue")),
            request=_mapping(fields.get("request")),
            constraints=_mapping(fields.get("constraints")),
            priority=_text(fields.get("priority")) or "normal",
            max_runtime_s=max_runtime,
            submitter=job_owner(job_id) or _text(fields.get("submitter")),
            nodes=nodes if isinstance(nodes, int) else 1,
            queued_at=fields.get("queued_at") or 0.0,
            unreadable=list(fields.get(UNREADABLE_FIELDS) or []) + _wrong_shape(fields),
        )


def cancel_requested(record: Optional[Mapping[str, Any]]) -> bool:
    return as_text((record or {}).get(CANCEL_REQUESTED) or "") == "1"


# -- the typed record --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as it is recorded: terminal state, reason, exit code, message for people."""

    state: State
    reason: Optional[Reason] = None
    exit_code: Optional[int] = None
    message: str = ""


@dataclass(frozen=True)
class JobRecord:
    """One job's hash, typed: an attribute for every field the module docstring lists.

    ``fields`` keeps every field as :func:`from_hash` reads it (the ``--json`` view, :meth:`as_json`);
    ``problems`` names the fields whose stored value could not be read; ``wrong_shape`` those whose
    JSON was read but is not the shape the field holds (a list where an object belongs): their
    attribute reads as empty, and the agent refuses to run such a record (``container_spec``).
    """

    id: str
    state: Optional[State]
    queue: str = ""
    name: str = ""
    priority: str = "normal"
    submitter: str = ""
    spec: Dict[str, Any] = field(default_factory=dict)
    request: Dict[str, Any] = field(default_factory=dict)
    constraints: Dict[str, Any] = field(default_factory=dict)
    max_runtime_s: Optional[int] = None
    #: Members of a multi-node job (1: a single-node job); read as given, checked by job_checks.
    nodes: int = 1
    run_config: Dict[str, Any] = field(default_factory=dict)
    file_overrides: Dict[str, Any] = field(default_factory=dict)
    agent: Optional[str] = None
    host: Optional[str] = None
    gpus: List[str] = field(default_factory=list)
    container: Optional[str] = None
    rq_execution: Optional[str] = None
    attempts: int = 0
    preemptions: int = 0
    #: The raw ``reason`` and ``message`` (a put-back job has them too; :attr:`outcome` only once it ended).
    reason: str = ""
    message: str = ""
    exit_code: Optional[int] = None
    effective_config: Optional[Dict[str, Any]] = None
    summary: Optional[Dict[str, Any]] = None
    cancel_requested: bool = False
    cancel_reason: str = ""
    cancel_message: str = ""
    pending_reason: str = ""
    pending_detail: str = ""
    estimated_start: Optional[float] = None
    sweep: str = ""
    trial: Optional[int] = None
    #: ``<state>_at``: epoch seconds the job last entered each state, by state name.
    times: Dict[str, float] = field(default_factory=dict)
    outcome: Optional[Outcome] = None
    fields: Dict[str, Any] = field(default_factory=dict)  # every field, as :func:`from_hash` reads it
    problems: List[str] = field(default_factory=list)
    wrong_shape: List[str] = field(default_factory=list)
    #: The ``submitter`` field as stored, which the submitter may rewrite (:attr:`submitter` is whom
    #: the key names): the agent refuses a job whose two differ (``job_checks.record_problems``).
    submitter_field: str = ""

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[Any, Any]) -> JobRecord:
        """Read an HGETALL result; never raises on a bad value (see ``problems``)."""
        return cls.from_fields(job_id, from_hash(raw))

    @classmethod
    def from_values(cls, job_id: str, names: Sequence[str], values: Sequence[Any]) -> JobRecord:
        """Read an HMGET of ``names``: the fields not asked for (or not stored) keep their typed defaults."""
        return cls.from_hash(job_id, {name: value for name, value in zip(names, values) if value is not None})

    @classmethod
    def from_fields(cls, job_id: str, fields: Mapping[str, Any]) -> JobRecord:
        """The typed view of a record already read by :func:`from_hash` (masked, or with its pending fields)."""
        fields = dict(fields)
        problems = list(fields.get(UNREADABLE_FIELDS) or [])
        state = state_of(fields)
        if state is None:
            problems.append("state")
        typed = _typed(fields)
        # Whose the job is comes from the key (the NAME_ prefix the ACL pins), not from the
        # ``submitter`` field a submitter may rewrite; a key with no owner keeps the field.
        typed["submitter"] = job_owner(job_id) or typed["submitter"]
        return cls(
            id=job_id,  # the key names the job, whatever its id field says
            state=state,
            outcome=_outcome(state, fields),
            fields=fields,
            problems=problems,
            wrong_shape=_wrong_shape(fields),
            submitter_field=_text(fields.get("submitter")),
            **typed,
        )

    def as_json(self) -> Dict[str, Any]:
        """The record as ``--json`` prints it and the Python API returns it: every stored field by its
        stored name, JSON fields decoded (docs/cli.md lists them). The one place that shape is made.
        (``secrets.mask_record`` then masks secret values and shows the key's ``id`` and owner.)"""
        return dict(self.fields)

    def to_hash(self) -> Dict[str, str]:
        """The record's fields as stored (empty values left out)."""
        return {
            name: value for name, value in to_hash(self.fields).items() if value != "" and name != UNREADABLE_FIELDS
        }

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


def _mapping(value: Any) -> Dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _typed(fields: Mapping[str, Any]) -> Dict[str, Any]:
    """The typed attributes of :class:`JobRecord` from a decoded hash; a value of the wrong shape reads as empty."""
    summary, effective = fields.get("summary"), fields.get("effective_config")
    gpus = fields.get("gpus")
    return {
        "queue": _text(fields.get("queue")),
        "name": _text(fields.get("name")),
        "priority": _text(fields.get("priority")) or "normal",
        "submitter": _text(fields.get("submitter")),
        "spec": _mapping(fields.get("spec")),
        "request": _mapping(fields.get("request")),
        "constraints": _mapping(fields.get("constraints")),
        "max_runtime_s": fields.get("max_runtime_s"),
        "nodes": fields["nodes"] if isinstance(fields.get("nodes"), int) else 1,
        "run_config": _mapping(fields.get("run_config")),
        "file_overrides": _mapping(fields.get("file_overrides")),
        "agent": fields.get("agent") or None,
        "host": fields.get("host") or None,
        "gpus": [str(gpu) for gpu in gpus] if isinstance(gpus, list) else [],
        "container": fields.get("container") or None,
        "rq_execution": fields.get("rq_execution") or None,
        "attempts": int(fields.get("attempts") or 0),
        "preemptions": int(fields.get("preemptions") or 0),
        "reason": _text(fields.get("reason")),
        "message": _text(fields.get("message")),
        "exit_code": fields.get("exit_code"),
        "effective_config": effective if isinstance(effective, dict) else None,
        "summary": summary if isinstance(summary, dict) else None,
        "cancel_requested": cancel_requested(fields),
        "cancel_reason": _text(fields.get("cancel_reason")),
        "cancel_message": _text(fields.get("cancel_message")),
        "pending_reason": _text(fields.get("pending_reason")),
        "pending_detail": _text(fields.get("pending_detail")),
        "estimated_start": fields.get("estimated_start"),
        "sweep": _text(fields.get("sweep")),
        "trial": fields.get("trial"),
        "times": {state: fields[at] for state, at in _STATE_TIMES if isinstance(fields.get(at), float)},
    }


def _wrong_shape(fields: Mapping[str, Any]) -> List[str]:
    """The JSON fields whose decoded value is neither empty nor the shape the field holds."""
    return sorted(
        name
        for name in JSON_FIELDS
        if fields.get(name) is not None and not isinstance(fields[name], list if name in JSON_LIST_FIELDS else dict)
    )


def _outcome(state: Optional[State], fields: Mapping[str, Any]) -> Optional[Outcome]:
    if state not in TERMINAL_STATES:
        return None
    try:
        reason = Reason(fields["reason"]) if fields.get("reason") else None
    except ValueError:
        reason = None
    return Outcome(state, reason, fields.get("exit_code"), str(fields.get("message") or ""))
