"""Sweeps advance while agents run: one agent per sweep holds its lease and drives it.

Nothing else has to keep running. Each agent's ``sweeps`` thread looks at the open sweeps of the
queues it serves; for each, the agent that holds (or takes) the sweep's lease in Redis:

1. follows its open trials: writes a trial's job if a driver died before it could, reports a
   finished job's metric to the study (from the job's summary, else its last logged value), tells
   a failed or pruned one, and feeds a running one's new steps (``_step`` in its metrics stream)
   to the pruner, canceling the job with reason ``pruned`` when the pruner says so;
2. makes new trials (``study.ask``, then an ordinary job with the trial's values as overrides)
   while fewer than ``max_parallel`` are open and the sweep is ``running``;
3. ends the sweep (``finished``, or ``stopped`` after ``sweep stop``) once no trial is open and
   none is to be made: ``run_cap`` (or the grid) is used up, or a trial reached ``metric.target``.

A sweep's hash is written by its owner, so the driver believes none of it: the sweep's id is the
key it lives under and its submitter the owner that id names (``SweepStore.get``), and its config
is validated again, as ``sweep create`` validates it (``parse_sweep``: bounded in size, a grid
counted before it is listed), before a study is opened. A sweep that fails ends ``stopped`` with
the reason as its message; nothing else is touched.

A lease lasts :data:`LEASE_S` and is renewed on every pass and before each new trial; a driver
that dies is replaced by another agent of the queue within a lease. An agent that finds another
holding a sweep's lease tries again only when that lease could have run out (one ``SET NX`` a lease
length later), and remembers each sweep's queue (the queue decides only who tries; the holder reads
the whole sweep again each pass), so the agents that do not drive a sweep cost Redis two small reads
per look (every :data:`LOOK_INTERVAL_S`), whatever the fleet's size. The study (Optuna's journal),
the sweep and the jobs are in Redis, so a new driver starts where the old one stopped: a trial's
job id is fixed by its number, so none is written twice, and an asked trial without a job gets one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import redis
from launchbay.metric_stream import entries as metricstream
from launchbay.queue_config import lifecycle
from launchbay.queue_config.job import JobRecord, Outcome, Reason, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.sweeps import study as sweep_study
from launchbay.sweeps.spec import SweepSpec, parse_sweep
from launchbay.sweeps.store import (
    OPEN_STATES,
    SweepState,
    SweepStore,
    check_template,
    enqueue_trial,
    trial_fields,
    trial_job_id,
)

from launchbay.errors import ValidationError
from launchbay.text import as_text

log = logging.getLogger(__name__)

#: How long a driver's lease lasts unless renewed: the longest a sweep waits for a new driver.
LEASE_S = 10.0
#: Seconds between passes while this agent drives a sweep, and while it only looks for one.
DRIVE_INTERVAL_S = 0.5
LOOK_INTERVAL_S = 10.0
#: The longest reason the driver writes into a sweep's message.
MESSAGE_CHARS = 1000


@dataclass
class _Drive:
    """What a driver keeps for one sweep between passes (rebuilt from Redis after any error)."""

    spec: SweepSpec
    study: Any
    distributions: Dict[str, Any]  # what ``study.ask`` samples each parameter from
    cursors: Dict[str, str] = field(default_factory=dict)  # job id -> last metrics entry read


class SweepDriver:
    """The ``sweeps`` thread of one agent."""

    def __init__(self, conn: redis.Redis, keys: Keys, agent_id: str, queues: Sequence[str], closing: threading.Event):
        self.conn, self.keys, self.agent_id = conn, keys, agent_id
        self.queues, self.closing = set(queues), closing
        self.store = SweepStore(conn, keys)
        self.records = Records(conn, keys)
        self.wake = threading.Event()
        self._drives: Dict[str, _Drive] = {}
        self._queue_of: Dict[str, Optional[str]] = {}  # sweep id -> its queue, as first read
        #: sweep id -> when another's lease could run out (monotonic); 0.0: this agent took it at its last try
        self._retry_at: Dict[str, float] = {}

    def run(self) -> None:
        while not self.closing.is_set():
            try:
                driving = self.pass_once()
            except Exception:  # the thread must outlive any one pass: it is the only driver this agent has
                log.exception("sweeps: a pass failed; the next one reads everything again")
                self._drives.clear()
                driving = False
            self.wake.wait(DRIVE_INTERVAL_S if driving else LOOK_INTERVAL_S)
            self.wake.clear()
        for sweep_id in list(self._drives):
            self._let_go(sweep_id)

    def job_ended(self) -> None:
        """A job of this agent ended: when it drives a sweep, the next pass comes now (it may be a trial's end)."""
        if self._drives:
            self.wake.set()

    def pass_once(self) -> bool:
        """Advance every sweep this agent holds or can take; True when it drives at least one."""
        try:
            self.store.adopt_new()
            sweep_ids = self.store.active_ids()
        except redis.RedisError as exc:
            # What the studies hold in memory may be ahead of a Redis that restarts from its AOF: read them again.
            log.warning("sweeps: cannot list them: %s", exc)
            self._drives.clear()
            return False
        for sweep_id in set(self._drives) - set(sweep_ids):
            self._drives.pop(sweep_id, None)
        for sweep_id in set(self._queue_of) - set(sweep_ids):
            self._queue_of.pop(sweep_id, None)
            self._retry_at.pop(sweep_id, None)
        driving = False
        for sweep_id in sweep_ids:
            try:
                driving = self._pass(sweep_id) or driving
            except redis.RedisError as exc:
                log.warning("sweep %s: Redis: %s; trying again next pass", sweep_id, exc)
                self._drives.pop(sweep_id, None)
            except ValidationError as exc:  # what its owner wrote: end it, once, with the reason
                self._refuse(sweep_id, exc)
            except Exception as exc:  # a bad sweep must not stop the others, nor the agent
                log.exception("sweep %s: the driver failed", sweep_id)
                self._drives.pop(sweep_id, None)
                self._note(sweep_id, f"driver on {self.agent_id}: {type(exc).__name__}: {exc}")
        return driving

    def _pass(self, sweep_id: str) -> bool:
        # The queue first (one small field, read once): of a fleet's agents, only the lease holder reads the sweep.
        if sweep_id not in self._queue_of:
            self._queue_of[sweep_id] = self.store.queue_of(sweep_id)
        if self._queue_of[sweep_id] not in self.queues or time.monotonic() < self._retry_at.get(sweep_id, 0.0):
            return False
        # ours at the last try (0.0), or this driver's first (no entry): see leases.try_lease
        may_hold = self._retry_at.get(sweep_id, 0.0) == 0.0
        left_s = self.store.take_lease(sweep_id, self.agent_id, LEASE_S, may_hold=may_hold)
        if left_s:
            self._retry_at[sweep_id] = time.monotonic() + left_s
            self._drives.pop(sweep_id, None)
            return False
        self._retry_at[sweep_id] = 0.0
        sweep = self.store.get(sweep_id)
        if sweep is None:
            return False
        drive = self._drives.get(sweep_id) or self._open(sweep)
        trials = drive.study.get_trials(deepcopy=False)  # following them changes states, not how many there are
        still_open = sum(1 for trial in trials if trial.state.name == "RUNNING" and self._follow(sweep, drive, trial))
        # A trial enqueued with its weighted values but not yet asked (its driver died between) is made by the next ask.
        made = sum(1 for trial in trials if trial.state.name != "WAITING")
        if sweep["state"] == SweepState.RUNNING.value:
            made, still_open = self._make_trials(sweep, drive, made, still_open)
        self._maybe_end(sweep, drive, made, still_open)
        return True

    def _refuse(self, sweep_id: str, exc: ValidationError) -> None:
        message = f"refused by the driver on {self.agent_id}: {' '.join(str(exc).split())}"[:MESSAGE_CHARS]
        log.warning("sweep %s: %s", sweep_id, message)
        self._drives.pop(sweep_id, None)
        with contextlib.suppress(redis.RedisError):
            self.store.set_state(sweep_id, SweepState.STOPPED, OPEN_STATES, message=message)
            self._let_go(sweep_id)

    def _open(self, sweep: Dict[str, Any]) -> _Drive:
        spec = parse_sweep(sweep.get("config"), source=f"sweep {sweep['id']}")  # as `sweep create` checked it
        check_template(sweep.get("template"))
        # A parameter whose key the template cannot hold (inside a number, say) fails every trial: refuse it now.
        trial_fields(sweep["template"], spec.params, {p.name: p.bounds_to_check()[0] for p in spec.params})
        self._check_study_key(sweep["id"])
        storage = sweep_study.storage(self.conn, self.keys, sweep["id"])
        made = len(sweep_study.load_trials(storage, sweep["id"]))
        study = sweep_study.open_study(storage, sweep["id"], spec, trials_so_far=made)
        drive = _Drive(spec, study, {p.name: sweep_study.distribution(p) for p in spec.params})
        self._drives[sweep["id"]] = drive
        log.info("sweep %s: driving it (%d trials so far)", sweep["id"], made)
        return drive

    def _check_study_key(self, sweep_id: str) -> None:
        """A sweep made before studies moved to agents' keys: a new study would pair new trials with the
        old trials' jobs (same ids), so it ends with the reason instead."""
        if self.conn.exists(self.keys.sweep_journal(sweep_id)) or not self.conn.exists(
            self.keys.legacy_sweep_journal(sweep_id)
        ):
            return
        raise ValidationError(
            "its study is at the key launchbay used before this version (sweep:ID:journal, writable by "
            "its owner); create the sweep again to go on"
        )

    # -- open trials ---------------------------------------------------------------------------------

    def _follow(self, sweep: Dict[str, Any], drive: _Drive, trial: Any) -> bool:
        """Bring one open trial up to date; True while it stays open."""
        job_id = trial_job_id(sweep["id"], trial.number)
        record = self.records.load(job_id)
        if record is None:
            if sweep_study.JOB_ATTR in trial.user_attrs:  # written once, ended, and expired unseen
                self._tell(drive, trial, "fail", why="its job's record expired before the driver saw the end")
                return False
            self._write_job(sweep, drive, trial)  # the last driver died before it could
            return True
        if sweep_study.JOB_ATTR not in trial.user_attrs:  # the last driver died between the job and the note
            self._note_job(drive, trial, job_id)
        state = record.state
        if record.terminal:
            if state == State.FINISHED and drive.spec.pruner:  # its last steps count at the rungs later trials meet
                self._feed_pruner(drive, trial, job_id, stop=False)
            self._tell_end(drive, trial, record)
            return False
        if state == State.RUNNING and drive.spec.pruner:
            self._feed_pruner(drive, trial, job_id)
        return True

    def _tell_end(self, drive: _Drive, trial: Any, record: JobRecord) -> None:
        state, reason = record.state, record.reason or None
        if state == State.FINISHED:
            value = self._final_value(drive.spec.metric_name or "", record)
            if value is None:
                self._tell(drive, trial, "fail", why=f"the job finished without logging {drive.spec.metric_name!r}")
            else:
                self._tell(drive, trial, "complete", value=value)
        elif reason == Reason.PRUNED.value:
            self._tell(drive, trial, "pruned")
        else:
            self._tell(drive, trial, "fail", why=f"the job ended {state} ({reason})")

    def _tell(self, drive: _Drive, trial: Any, how: str, *, value: Optional[float] = None, why: str = "") -> None:
        import optuna
        from optuna.trial import TrialState

        if why:
            optuna.trial.Trial(drive.study, trial._trial_id).set_user_attr("why", why)
        state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "fail": TrialState.FAIL}[how]
        drive.study.tell(trial.number, value if how == "complete" else None, state=state, skip_if_finished=True)
        drive.cursors.pop(trial_job_id(drive.study.study_name, trial.number), None)

    def _final_value(self, name: str, record: JobRecord) -> Optional[float]:
        """The metric's value in the job's summary, else the last value it logged."""
        summary = record.summary or {}
        if _number(summary.get(name)) is not None:
            return _number(summary.get(name))
        for _entry_id, fields in self.conn.xrevrange(self.keys.job_metrics(record.id), count=10_000):
            value = _number((metricstream.step_of(fields) or {}).get(name))
            if value is not None:
                return value
        return None

    def _feed_pruner(self, drive: _Drive, trial: Any, job_id: str, *, stop: bool = True) -> None:
        """Report the steps logged since the last pass; cancel the job (``pruned``) when the pruner says so
        and ``stop`` (a job that ended is only reported: the pruner records the rungs it reached)."""
        import optuna

        name, seen = drive.spec.metric_name or "", trial.intermediate_values
        entries = self.conn.xrange(self.keys.job_metrics(job_id), min=_after(drive.cursors.get(job_id)), max="+")
        if not entries:
            return
        drive.cursors[job_id] = as_text(entries[-1][0])
        live = optuna.trial.Trial(drive.study, trial._trial_id)
        reported = None
        for _entry_id, fields in entries:
            step_values = metricstream.step_of(fields) or {}
            step, value = step_values.get("_step"), _number(step_values.get(name))
            if isinstance(step, int) and step >= 0 and value is not None and step not in seen:
                live.report(value, step)
                seen, reported = {**seen, step: value}, (step, value)
        prune = reported is not None and live.should_prune()  # also records each rung the trial reached
        if prune and stop:
            message = f"pruned by sweep {drive.study.study_name} at step {reported[0]}: {name} {reported[1]:.6g}"
            why = Outcome(State.CANCELED, Reason.PRUNED, message=message)
            lifecycle.cancel(self.conn, self.keys, job_id, missing_ok=True, terminal_ok=True, why=why)
            log.info("sweep %s: %s (job %s)", drive.study.study_name, message, job_id)

    # -- new trials ------------------------------------------------------------------------------------

    def _make_trials(self, sweep: Dict[str, Any], drive: _Drive, made: int, still_open: int) -> Tuple[int, int]:
        spec = drive.spec
        if _target_trial(drive) is not None:  # metric.target reached: W&B's sweep makes no more runs
            return made, still_open
        while still_open < spec.max_parallel and made < spec.trial_cap() and not self.closing.is_set():
            if not self.store.hold_lease(sweep["id"], self.agent_id, LEASE_S):  # another driver took over
                return made, still_open
            weighted = sweep_study.weighted_draw(spec, made)
            waiting = weighted and any(t.state.name == "WAITING" for t in drive.study.get_trials(deepcopy=False))
            if weighted and not waiting:  # values: with probabilities, drawn here; ask() takes them as fixed values
                drive.study.enqueue_trial(weighted, skip_if_exists=False)
            self._write_job(sweep, drive, drive.study.ask(drive.distributions))
            made, still_open = made + 1, still_open + 1
        return made, still_open

    def _write_job(self, sweep: Dict[str, Any], drive: _Drive, trial: Any) -> None:
        """Write ``trial``'s job (an Optuna Trial or FrozenTrial), then note its id on the trial."""
        values = sweep_study.trial_params(drive.spec, trial.params)
        fields = trial_fields(sweep["template"], drive.spec.params, values)
        job_id = enqueue_trial(self.conn, self.keys, sweep, trial.number, fields)
        self._note_job(drive, trial, job_id)
        log.info("sweep %s: trial %d is job %s: %s", sweep["id"], trial.number, job_id, json.dumps(values, default=str))

    def _note_job(self, drive: _Drive, trial: Any, job_id: str) -> None:
        import optuna

        optuna.trial.Trial(drive.study, trial._trial_id).set_user_attr(sweep_study.JOB_ATTR, job_id)

    def _maybe_end(self, sweep: Dict[str, Any], drive: _Drive, made: int, still_open: int) -> None:
        spec = drive.spec
        if still_open:
            return
        state = sweep["state"]
        if state == SweepState.STOPPING.value:
            self.store.set_state(sweep["id"], SweepState.STOPPED, [SweepState.STOPPING])
        elif made >= spec.trial_cap():
            self.store.set_state(sweep["id"], SweepState.FINISHED, [SweepState.RUNNING, SweepState.PAUSED])
        elif drive.spec.target is not None and _target_trial(drive) is not None:
            number = _target_trial(drive)
            message = f"metric {spec.metric_name} reached its target {spec.target:g} in trial {number}"
            self.store.set_state(
                sweep["id"], SweepState.FINISHED, [SweepState.RUNNING, SweepState.PAUSED], message=message
            )
        else:
            return
        log.info("sweep %s: ended after %d trials", sweep["id"], made)
        self._let_go(sweep["id"])

    def _let_go(self, sweep_id: str) -> None:
        self._drives.pop(sweep_id, None)
        self._retry_at.pop(sweep_id, None)
        with contextlib.suppress(redis.RedisError):  # else it expires
            self.store.release_lease(sweep_id, self.agent_id)

    def _note(self, sweep_id: str, message: str) -> None:
        with contextlib.suppress(redis.RedisError):
            self.store.note(sweep_id, message)


def _target_trial(drive: _Drive) -> Optional[int]:
    """The first finished trial whose value reached ``metric.target``, if any (None without a target)."""
    if drive.spec.target is None:
        return None
    for trial in drive.study.get_trials(deepcopy=False):
        if trial.state.name == "COMPLETE" and drive.spec.reached(trial.value):
            return trial.number
    return None


def _after(entry_id: Optional[str]) -> str:
    return f"({entry_id}" if entry_id else "-"


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
