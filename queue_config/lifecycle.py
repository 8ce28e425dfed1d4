"""Every change of a job, in one place: enqueue -> claim -> mark running -> end, and requeue, put back, cancel.

This is the only module that writes a job hash (``{ns}:job:{id}``, fields in
``launchbay.queue_config.job``). Each transition is atomic in Redis: a change of state is one Lua
check-and-set (:meth:`Records.transition`), so a cancel racing a finish, or two agents racing one
job, have exactly one winner; the claim is one Lua script (``claim.lua``) that also takes the job
out of its RQ queue and writes the agent's ledger. What follows a change (RQ's mirror through
``rq_bridge``, the log's ``eof``, the expiry, the wake-up event) is written here too, and is safe
to run twice.

Who calls what:

===============================  =======================================================
:func:`enqueue`                  the client (``client/enqueue.py``)
:class:`ClaimScript`             the agent's claimer (``agent/claim.py``); ``confirm`` after a
                                 claim over ``redis+sentinel://``
:func:`record_rq_start`          the agent, right after a claim
:func:`mark_running`             the agent's job runner, once the container started
:func:`end`                      the job runner, the reaper, reconcile, the agent's claim cycle
                                 (a hand-over that failed): the one way a claimed job ends
:func:`complete_end`             reconcile: an end recorded by an agent that died right after
:func:`put_back`                 the reaper and reconcile: an active job back to the front of its queue
:func:`cancel`, :func:`requeue`  ``launchbay cancel`` / ``requeue``, the UI, queue deletion
:class:`GangScript`              the agent's gang service (``agent/gang_assembly.py``): hold and give
                                 up members of a multi-node job; its members (``agent/gang_member.py``)
                                 report ready, running and their ends (the job's end is :func:`end`)
:func:`set_pending`              an agent's pass (``agent/pending_pass.py``): why queued jobs wait
===============================  =======================================================
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import redis
from launchbay.queue_config import events, logstream, rq_bridge
from launchbay.queue_config.job import (
    ACTIVE_STATES,
    CANCEL_FIELDS,
    CANCEL_REQUESTED,
    PUT_BACK_CLEARS,
    RUN_FIELDS,
    TERMINAL_STATES,
    JobRecord,
    Outcome,
    Reason,
    State,
    to_hash,
)
from launchbay.queue_config.keys import Keys
from launchbay.redis_connection import connect as connection

from launchbay.errors import NotFoundError, UserError
from launchbay.text import as_text

log = logging.getLogger(__name__)

#: What :func:`cancel` answers besides a terminal state's name.
CANCELED = State.CANCELED.value
CANCEL_REQUESTED_ANSWER = CANCEL_REQUESTED
#: A queued job can be claimed between our read of its state and our write; try again this often.
STATE_RACE_RETRIES = 3
#: What :meth:`Records.state` reads of a record.
STATE_ONLY = ("state",)
CLAIM_LUA = resources.files("launchbay.queue_config").joinpath("claim.lua").read_text(encoding="utf-8")
SET_PENDING_LUA = resources.files("launchbay.queue_config").joinpath("set_pending.lua").read_text(encoding="utf-8")
GANG_LUA = resources.files("launchbay.queue_config").joinpath("gang.lua").read_text(encoding="utf-8")
TRANSITION_LUA = resources.files("launchbay.queue_config").joinpath("transition.lua").read_text(encoding="utf-8")


class Records:
    """Reads job records, and writes them through one check-and-set, for one connection and namespace."""

    def __init__(self, conn: redis.Redis, keys: Optional[Keys] = None) -> None:
        self.conn = conn
        self.keys = keys or Keys.from_env()
        self._transition = conn.register_script(TRANSITION_LUA)

    def create(self, job_id: str, fields: Dict[str, Any], *, pipeline: Any = None) -> None:
        """Write a new record in state ``queued`` (in ``pipeline`` when given, so it lands with the enqueue)."""
        now = time.time()
        values = to_hash({**fields, "id": job_id, "state": State.QUEUED, "queued_at": now, "attempts": 0})
        target = pipeline if pipeline is not None else self.conn
        target.hset(self.keys.job(job_id), mapping={k: v for k, v in values.items() if v != ""})
        target.zadd(self.keys.queue_jobs(str(fields["queue"])), {job_id: now})

    def as_json(self, job_id: str) -> Optional[Dict[str, Any]]:
        """The record as ``--json`` shows it (:meth:`JobRecord.as_json`: every stored field, JSON decoded), or None.

        For scripts and tests that compare what is stored; code reads the typed record (:meth:`load`).
        """
        record = self.load(job_id)
        return record.as_json() if record is not None else None

    def load(self, job_id: str, names: Optional[Sequence[str]] = None) -> Optional[JobRecord]:
        """The record, typed, or None; with ``names``, only those fields are read (the others keep
        their typed defaults)."""
        if names is None:
            raw = self.conn.hgetall(self.keys.job(job_id))
            return JobRecord.from_hash(job_id, raw) if raw else None
        values = self.conn.hmget(self.keys.job(job_id), names)
        return JobRecord.from_values(job_id, names, values) if any(v is not None for v in values) else None

    def state(self, job_id: str) -> Optional[State]:
        """The job's state (None when there is no record, or its state is not one of ours)."""
        record = self.load(job_id, STATE_ONLY)
        return record.state if record is not None else None

    def transition(
        self, job_id: str, to: State, *, allowed_from: Iterable[State], pipeline: Any = None, **fields: Any
    ) -> bool:
        """Move ``job_id`` to ``to`` if it is now in one of ``allowed_from``; set ``fields`` with it.

        Returns False (and writes nothing) when the job is missing or in another state. A field
        given as None is deleted. With ``pipeline`` the check runs when the pipeline executes and
        the return value is not meaningful.
        """
        args: List[str] = [State(to).value, repr(time.time()), ",".join(State(s).value for s in allowed_from)]
        for name, value in to_hash(fields).items():
            args += [name, value]
        result = self._transition(keys=[self.keys.job(job_id)], args=args, client=pipeline or self.conn)
        return bool(result) if pipeline is None else True

    def update(self, job_id: str, **fields: Any) -> None:
        """Set fields without a change of state (the RQ execution id, the cancel flag...); None deletes."""
        key = self.keys.job(job_id)
        with self.conn.pipeline() as pipe:
            for name, value in to_hash(fields).items():
                if value == "":
                    pipe.hdel(key, name)
                else:
                    pipe.hset(key, name, value)
            pipe.execute()

    def expire_ended(self, pipe: Any, job_id: str, *, multi_node: bool = True) -> None:
        """An ended record, its log and its metrics live as long as RQ keeps the job's result (and a
        multi-node job's member table: ``multi_node`` False says there is none)."""
        pipe.expire(self.keys.job(job_id), rq_bridge.RESULT_TTL_S)
        pipe.expire(self.keys.job_log(job_id), rq_bridge.RESULT_TTL_S)
        pipe.expire(self.keys.job_metrics(job_id), rq_bridge.RESULT_TTL_S)
        if multi_node:
            pipe.expire(self.keys.gang(job_id), rq_bridge.RESULT_TTL_S)  # a multi-node job's members


# -- enqueue and claim -------------------------------------------------------------------------------


def enqueue(
    conn: redis.Redis,
    keys: Keys,
    job_id: str,
    fields: Dict[str, Any],
    *,
    meta: Dict[str, Any],
    description: str,
    also: Optional[Callable[[Any], None]] = None,
) -> None:
    """Write the record (``queued``) and the RQ job in one MULTI, then wake a few idle agents serving its queue.

    ``also(pipe)`` adds the caller's own writes to the same transaction. Over a ``redis+sentinel://``
    URL the wake-up is the write that replicas must confirm (:func:`connection.confirm_replicated`):
    replication is in order, so a replica that has it has the job. Raises RedisUnavailableError when
    too few do, rather than acknowledge a job a failover could lose.
    """
    with conn.pipeline() as pipe:
        pipe.multi()  # rq joins an explicit transaction instead of starting its own
        Records(conn, keys).create(job_id, fields, pipeline=pipe)
        rq_bridge.enqueue(
            conn,
            fields["queue"],
            job_id,
            meta=meta,
            description=description,
            at_front=fields["priority"] == "high",
            pipeline=pipe,
        )
        if also is not None:
            also(pipe)
        pipe.execute()
    # Wake a few idle agents (not the whole queue) with the write a replica must confirm (Sentinel).
    check, what = (lambda pipe: pipe.exists(keys.job(job_id))), f"job {job_id}"
    events.wake_confirmed(
        conn, keys, fields["queue"], lambda write: connection.confirm_replicated(conn, write, check, what)
    )


#: A claim candidate: (job id, RQ queue name, ledger JSON, GPU ids, user, ``quotas.limits_json``).
ClaimCandidate = Tuple[str, str, str, Sequence[str], str, str]


class ClaimScript:
    """``claim.lua`` for one agent: the first candidate Redis still agrees to goes ``queued -> starting``.

    In one step: out of its RQ queue (LREM), its allocation into the agent's ledger, the record to
    ``starting`` with agent, host and GPUs, ``attempts`` + 1, and the previous run's fields cleared.
    """

    def __init__(self, conn: redis.Redis, keys: Keys, *, agent_id: str, host: str) -> None:
        self.conn = conn
        self.keys = keys
        self.agent_id = agent_id
        self.host = host
        self._script = conn.register_script(CLAIM_LUA)

    def __call__(
        self, candidates: Sequence[ClaimCandidate], *, cpus: float, memory_mib: int, slots: int, gpus: str, now: float
    ) -> Tuple[bool, str, int]:
        """``(claimed, why, index)``: see ``claim.lua`` (``gpus`` is the JSON list of the agent's GPU ids)."""
        keys = [self.keys.agent_ledger(self.agent_id)]
        args = [repr(float(cpus)), str(int(memory_mib)), str(int(slots)), gpus, repr(now), self.agent_id, self.host]
        for job_id, queue, allocation, gpu_ids, user, limits in candidates:
            keys += [rq_bridge.rq_queue(self.conn, queue).key, self.keys.job(job_id), self.keys.user_usage(queue, user)]
            args += [job_id, allocation, to_hash({"gpus": list(gpu_ids)})["gpus"], limits]
        ok, why, index = self._script(keys=keys, args=args)
        return int(ok) == 1, as_text(why), int(index)

    def confirm(self, job_id: str) -> None:
        """Wait until the replicas a ``redis+sentinel://`` URL asks for have this agent's claim of ``job_id``.

        A claim a failover loses leaves the job queued on the new master, where it would run a second
        time. Returns at once for other URLs; raises RedisUnavailableError (or a RedisError) when the
        claim is not confirmed: the caller must not start the job (the sweep puts it back).
        """
        if not connection.wait_replicas(self.conn):
            return
        ledger = self.keys.agent_ledger(self.agent_id)
        connection.confirm_replicated(
            self.conn,
            lambda pipe: pipe.publish(self.keys.replication_probe, job_id),  # a write WAIT can count
            lambda pipe: pipe.hexists(ledger, job_id),
            f"the claim of job {job_id}",
        )


class GangScript:
    """``gang.lua`` for one agent: hold a member of a multi-node job, give a hold up, set a member's state.

    A hold is a claim of one member: its allocation goes into the agent's ledger like a claim's, so
    other work fits only beside it; the hold that completes the gang moves the job ``queued ->
    starting`` (``attempts`` + 1) and out of its RQ queue, in the same step (docs/multi-node.md).
    """

    def __init__(self, conn: redis.Redis, keys: Keys, *, agent_id: str, host: str, addr: str) -> None:
        self.conn, self.keys = conn, keys
        self.agent_id, self.host, self.addr = agent_id, host, addr
        self._script = conn.register_script(GANG_LUA)

    def hold(
        self,
        job_id: str,
        queue: str,
        allocation: str,
        user: str,
        *,
        nodes: int,
        timeout_s: float,
        capacity: Tuple[float, int, int, str],
        limits: str,
        now: float,
    ) -> Tuple[bool, str, int, int]:
        """``(held, why, rank, round)``: why is ``held`` or ``complete`` when held, else the refusal."""
        keys = [
            self.keys.job(job_id),
            self.keys.gang(job_id),
            self.keys.gang_assembling(queue),
            self.keys.agent_ledger(self.agent_id),
            self.keys.user_usage(queue, user),
            rq_bridge.rq_queue(self.conn, queue).key,
        ]
        cpus, memory_mib, slots, gpus = capacity
        args = ["hold", job_id, self.agent_id, self.host, self.addr, allocation, str(int(nodes)), repr(now),
                str(max(1, int(timeout_s * 1000))), repr(float(cpus)), str(int(memory_mib)), str(int(slots)), gpus,
                limits]  # fmt: skip
        reply = self._script(keys=keys, args=args)
        if int(reply[0]) != 1:
            return False, as_text(reply[1]), -1, 0
        return True, as_text(reply[1]), int(reply[2]), int(reply[3])

    def drop(self, job_id: str, round_: int, queue: str, user: str) -> bool:
        """Give up this agent's hold of ``round_`` (and the quota ``user`` reserved in ``queue`` for the round's
        members never held); True when its ledger entry is to be freed (the round is not a complete gang
        that runs)."""
        keys = [self.keys.job(job_id), self.keys.gang(job_id), self.keys.user_usage(queue, user)]
        return int(self._script(keys=keys, args=["drop", job_id, self.agent_id, str(round_)])) == 1

    def member(
        self,
        job_id: str,
        round_: int,
        rank: int,
        state: str,
        *,
        agent: Optional[str] = None,
        container: Optional[str] = None,
        exit_code: Optional[int] = None,
        port: Optional[int] = None,
    ) -> List[str]:
        """Set rank ``rank``'s state (and container, exit code, rank 0's port) when ``agent`` (default: this
        one) holds it in ``round_``; the round's members as JSON, empty when it does not."""
        keys = [self.keys.job(job_id), self.keys.gang(job_id)]
        args = ["member", agent or self.agent_id, str(round_), str(rank), state, container or "",
                "" if exit_code is None else str(int(exit_code)), repr(time.time()), "" if port is None else str(port)]  # fmt: skip
        return [as_text(raw) for raw in self._script(keys=keys, args=args)]


def set_pending(records: Records, changes: Mapping[str, Tuple[str, str, Optional[float]]]) -> int:
    """Write why queued jobs wait, ``{job id: (reason, detail, estimated start)}``, in one call (only
    what changed, from an agent's pass); jobs no longer queued are left alone (``set_pending.lua``)."""
    args = [v for r, d, t in changes.values() for v in (r, d[:300], "" if t is None else repr(float(t)))]
    keys = [records.keys.job(job_id) for job_id in changes]
    return int(records.conn.register_script(SET_PENDING_LUA)(keys=keys, args=args)) if keys else 0


def record_rq_start(records: Records, job_id: str, *, queue: str, worker_name: str) -> None:
    """Show the claimed job as started in RQ, and keep RQ's execution id on the record: one pipeline.

    Not a transaction: RQ's copy is a mirror (``rq info``, rq-dashboard) and the record's ``rq_execution``
    only lets the end take that copy's started entry away."""
    with records.conn.pipeline(transaction=False) as pipe:
        execution_id = rq_bridge.mark_started(records.conn, job_id, queue=queue, worker_name=worker_name, pipeline=pipe)
        pipe.hset(records.keys.job(job_id), "rq_execution", execution_id)
        pipe.execute()


def mark_running(records: Records, job_id: str, *, container: Optional[str]) -> bool:
    """``starting -> running`` with the container id; False when someone else moved the job first."""
    return records.transition(job_id, State.RUNNING, allowed_from=(State.STARTING,), container=container)


def cancel_was_requested(records: Records, job_id: str) -> bool:
    record = records.load(job_id, CANCEL_FIELDS)
    return record is not None and record.cancel_requested


# -- the end ---------------------------------------------------------------------------------------


def end(
    records: Records,
    job_id: str,
    outcome: Outcome,
    *,
    rq_execution: Optional[str] = None,
    allowed_from: Iterable[State] = ACTIVE_STATES,
    eof_once: bool = True,
    summary: Optional[Dict[str, Any]] = None,
    known: Optional[KnownRun] = None,
    **fields: Any,
) -> bool:
    """End a job: the terminal state with reason, exit code and message, then :func:`complete_end`.

    Returns False, and writes nothing, when the job is not in ``allowed_from`` any more (someone
    else ended, requeued or canceled it first). ``summary`` (the job's summary.json, last value
    per metric) and ``fields`` are set with the state (e.g. the effective config). The job's own
    runner, which knows its run's log, passes ``eof_once=False``: its ``eof`` is written even when
    an earlier run's ``eof`` is the stream's last entry, and ``known``: what it need not read.
    """
    won = records.transition(
        job_id,
        outcome.state,
        allowed_from=allowed_from,
        reason=outcome.reason,
        exit_code=outcome.exit_code,
        message=outcome.message or None,
        summary=summary,
        **fields,
    )
    if won:
        complete_end(
            records,
            job_id,
            outcome.state,
            rq_execution=rq_execution,
            message=outcome.message,
            eof_once=eof_once,
            known=known,
        )
    return won


@dataclass(frozen=True)
class KnownRun:
    """What the agent running a job knows of it, so that its end need not read it: where RQ shows it
    started, and whether it has a multi-node member table (its ``nodes``)."""

    started_by: rq_bridge.StartedBy
    multi_node: bool


def complete_end(
    records: Records,
    job_id: str,
    state: State,
    *,
    rq_execution: Optional[str] = None,
    message: str = "",
    eof_once: bool = True,
    known: Optional[KnownRun] = None,
) -> None:
    """What follows an end already in the record: RQ's copy, ``eof`` on the log, the expiry.

    Safe to run twice: an agent killed half way through it runs it again after its restart
    (``agent/reconcile.py``), so ``rq info`` never keeps showing a job as started that ended.
    """
    started_by = known.started_by if known is not None else None
    try:
        rq_bridge.mark_ended(records.conn, job_id, rq_execution, state=state, message=message, started_by=started_by)
    except Exception as exc:  # RQ's copy may have expired; the record is what people read
        log.warning("job %s: could not mirror %s into RQ: %s", job_id, state.value, exc, extra={"job_id": job_id})
    at_end = eof_once and logstream.ends_with_eof(records.conn, records.keys, job_id)
    with records.conn.pipeline(transaction=False) as pipe:
        if not at_end:
            logstream.add_eof(pipe, records.keys, job_id, state.value)
        records.expire_ended(pipe, job_id, multi_node=known is None or known.multi_node)
        pipe.execute()


def put_back(records: Records, job_id: str, record: JobRecord, **fields: Any) -> bool:
    """Move an active job back to ``queued`` at the front of its RQ queue; False if its state moved on."""
    cleared = dict.fromkeys(PUT_BACK_CLEARS)
    if not records.transition(job_id, State.QUEUED, allowed_from=ACTIVE_STATES, **{**cleared, **fields}):
        return False
    rq_bridge.requeue(records.conn, job_id, at_front=True, execution_id=record.rq_execution)
    events.publish(records.conn, records.keys, events.Enqueued(record.queue))
    return True


def put_back_preempted(records: Records, job_id: str, record: JobRecord, message: str) -> bool:
    """A preempted job back at the front of its queue: reason preempted, preemptions + 1, queued_at kept."""
    queued_at = record.times.get(State.QUEUED.value)
    kept = {"queued_at": queued_at} if queued_at else {}
    return put_back(
        records, job_id, record, reason=Reason.PREEMPTED, message=message, preemptions=record.preemptions + 1, **kept
    )


# -- what a person does: cancel, requeue --------------------------------------------------------------


def cancel(
    conn: redis.Redis,
    keys: Keys,
    job_id: str,
    *,
    missing_ok: bool = False,
    terminal_ok: bool = False,
    why: Optional[Outcome] = None,
) -> str:
    """Cancel a job: ``"canceled"`` when it was still queued, ``"cancel_requested"`` when an agent has it.

    A claimed job cannot be stopped from here: it is flagged and its agent told, which owns the
    container and ends the job through :func:`end` (with ``why``'s reason and message when given:
    a sweep pruning a trial; else ``canceled_by_user``). A job that already ended is a UserError
    unless ``terminal_ok`` (then its state is returned); an unknown job is a NotFoundError unless
    ``missing_ok`` (then ``"missing"``).
    """
    records = Records(conn, keys)
    why = why or Outcome(State.CANCELED, Reason.CANCELED_BY_USER, message="canceled before an agent claimed it")
    for _ in range(STATE_RACE_RETRIES):
        state = records.state(job_id)
        if state is None:
            if missing_ok:
                return "missing"
            raise NotFoundError(f"unknown job {job_id!r}")
        if state == State.QUEUED and _cancel_queued(records, job_id, why):
            return CANCELED
        if state in ACTIVE_STATES:
            reason = None if why.reason == Reason.CANCELED_BY_USER else why.reason
            records.update(job_id, cancel_requested=1, cancel_reason=reason, cancel_message=reason and why.message)
            events.publish(conn, keys, events.Cancel(job_id))
            return CANCEL_REQUESTED_ANSWER
        if state in TERMINAL_STATES:
            if terminal_ok:
                return state.value
            raise UserError(f"job {job_id} already ended ({state}); nothing to cancel")
    raise UserError(f"job {job_id} changed state while being canceled; run the command again")


def cancel_reason(records: Records, job_id: str) -> Optional[Tuple[Reason, str]]:
    """``(reason, message)`` a cancel was asked with, when not a person's (see :func:`cancel`)."""
    record = records.load(job_id, CANCEL_FIELDS)
    return (Reason(record.cancel_reason), record.cancel_message) if record and record.cancel_reason else None


def _cancel_queued(records: Records, job_id: str, outcome: Outcome) -> bool:
    moved = records.transition(
        job_id, outcome.state, allowed_from=[State.QUEUED], reason=outcome.reason, message=outcome.message
    )
    if moved:
        rq_bridge.cancel_queued(records.conn, job_id)
        # An ended record lives as long as RQ keeps the job's result.
        records.conn.expire(records.keys.job(job_id), rq_bridge.RESULT_TTL_S)
    return moved


def requeue(conn: redis.Redis, keys: Keys, job_id: str) -> JobRecord:
    """Put a finished, failed or canceled job back in its queue; returns the record as it now is."""
    records = Records(conn, keys)
    record = records.load(job_id)
    if record is None:
        raise NotFoundError(f"unknown job {job_id!r}")
    if not record.terminal:
        raise UserError(f"job {job_id} is {record.state}; only a finished, failed or canceled job can be requeued")
    if not conn.sismember(keys.queues, record.queue):
        raise NotFoundError(f"job {job_id} belongs to queue {record.queue!r}, which no longer exists")
    if not rq_bridge.exists(conn, job_id):
        raise UserError(f"job {job_id} is too old to requeue (RQ no longer keeps it); enqueue it again")
    cleared = dict.fromkeys(RUN_FIELDS)
    if not records.transition(job_id, State.QUEUED, allowed_from=TERMINAL_STATES, **cleared):
        raise UserError(f"job {job_id} changed state while being requeued; run the command again")
    conn.persist(keys.job(job_id))
    rq_bridge.requeue(conn, job_id, at_front=record.priority == "high")
    events.publish(conn, keys, events.Enqueued(record.queue))
    return records.load(job_id) or record
