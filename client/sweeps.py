"""Sweeps as a person makes and reads them: create (every check first), show, list, pause/resume/stop.

``create`` refuses a sweep that could make an invalid trial: each parameter's key must be a launch
input of the job (include/exclude), and every value it can take, or both ends of its range, must
have the recorded type and pass the recorded schema (bounds, enums). Then the job fields every
trial starts from are validated once, as ``launchbay enqueue`` would (queue limits, resources),
and stored with the sweep; agents make the trials (``sweeps/driver.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import redis
from launchbay.queue_config.acl import new_job_id, owner_of_connection
from launchbay.queue_config.inputs_check import section_problems
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import JobSpec, QueueConfig, parse_model
from launchbay.queue_config.secret_refs import check_references
from launchbay.queue_config.store import QueueStore
from launchbay.queue_config.structured import read_structured_file
from launchbay.sdk.overlay import merge_overrides
from launchbay.sweeps import study as sweep_study
from launchbay.sweeps.spec import Param, SweepSpec, parse_sweep, problem_lines
from launchbay.sweeps.store import SweepState, SweepStore, trial_job_id

from launchbay.errors import ValidationError

from .enqueue import Launch, load_spec, prepare

_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
#: What a sweep's view reads of each trial's job.
TRIAL_FIELDS = ("state", "reason")
#: Studies kept open per process (the UI's polls read only the journal's new entries).
_OPEN_STORAGES = 32
_storages: OrderedDict[Tuple[int, str, str], Any] = OrderedDict()


def create(
    sweep: Any, queue: str, *, conn: redis.Redis, keys: Keys, user: Optional[str] = None, job: Optional[str] = None
) -> Tuple[str, List[str]]:
    """``(sweep id, notes)`` for SWEEP.yaml (a path or its mapping); ValidationError (nothing written) on any problem."""
    base = Path(sweep).parent if isinstance(sweep, (str, Path)) else Path.cwd()
    raw = read_structured_file(sweep) if isinstance(sweep, (str, Path)) else sweep
    spec = parse_sweep(raw, source=str(sweep) if isinstance(sweep, (str, Path)) else "sweep")
    job_spec = resolve_job(job or spec.job, base, conn, keys)
    launch = Launch(
        resources=spec.launch.get("resources"),
        max_runtime=spec.launch.get("max_runtime"),
        priority=spec.launch.get("priority", "normal"),
        user=user,
    )
    template, notes = prepare(job_spec, queue, launch, conn=conn, keys=keys)
    problems = param_problems(spec, template["spec"].get("inputs"), job_spec.name)
    problems += secret_problems(spec, QueueStore(conn, keys).get(queue), template["spec"].get("inputs"))
    if problems:
        raise ValidationError(problem_lines(f"sweep refused (job {job_spec.name!r})", problems))
    sweep_id = new_job_id(owner_of_connection(conn))
    name = spec.name or f"{job_spec.name} {spec.method}"
    config = json.loads(json.dumps(raw, default=str))
    SweepStore(conn, keys).create(
        sweep_id, queue=queue, config=config, template=template, submitter=template["submitter"], name=name
    )
    return sweep_id, [*spec.notes, *notes]  # spec.notes: W&B's keys that were accepted but mean nothing here


def resolve_job(ref: Optional[str], base: Path, conn: redis.Redis, keys: Keys) -> JobSpec:
    """``job:`` as a job spec file (beside SWEEP.yaml, else from here) or the name of a job that ran."""
    if not ref:
        raise ValidationError("the sweep names no job: add job: PATH/TO/job.yaml (or a job name), or pass --job")
    for path in (base / ref, Path(ref)):
        if path.is_file():
            return load_spec(path)
    if not _JOB_NAME.match(ref):
        raise ValidationError(f"job {ref!r}: no such job spec file, and not a job name")
    return _spec_of_last_run(ref, conn, keys)


def _spec_of_last_run(name: str, conn: redis.Redis, keys: Keys) -> JobSpec:
    """The spec a named job last ran with: its image, command, workdir, env and run config."""
    jobdef = QueueStore(conn, keys).get_jobdef(name)
    record = Records(conn, keys).load(jobdef["job_id"]) if jobdef and jobdef.get("job_id") else None
    if record is None:
        raise ValidationError(
            f"job {name!r}: no job spec file of that name, and no recorded run of it to take the image from; "
            "give job: the path of its job spec"
        )
    run = record.spec
    fields = {key: run[key] for key in ("image", "command", "workdir", "env", "docker") if run.get(key)}
    return parse_model(JobSpec, {"name": name, **fields, "config": record.run_config}, source=name)


def param_problems(spec: SweepSpec, inputs: Optional[Mapping[str, Any]], job_name: str) -> List[str]:
    """Every way a trial of ``spec`` could be refused by the job's inputs, one line each."""
    if inputs is None:
        return [
            f"job {job_name!r} has recorded no inputs (it has not run once) and its spec declares none, "
            "so no parameter can be checked: run it once, or add inputs: to its spec"
        ]
    problems: List[str] = []
    for param in spec.params:
        section, missing = _section(inputs, param)
        if missing:
            problems.append(f"parameter {param.name!r}: {missing}")
            continue
        for value in param.bounds_to_check():
            tree: Dict[str, Any] = {}
            merge_overrides(tree, {param.parts: value})
            for problem in section_problems(section, tree):
                line = f"parameter {param.name!r}: {problem}"
                if line not in problems:
                    problems.append(line)
    return problems


def secret_problems(spec: SweepSpec, queue: QueueConfig, inputs: Optional[Mapping[str, Any]]) -> List[str]:
    """Each value that is a ``${secret:NAME}`` where enqueue refuses one (``check_references``, the same check)."""
    problems: List[str] = []
    for param in spec.params:
        for value in param.bounds_to_check():
            tree: Dict[str, Any] = {}
            merge_overrides(tree, {param.parts: value})
            run_config, files = (tree, {}) if param.file is None else ({}, {param.file: tree})
            try:
                check_references(queue, inputs, run_config, files)
            except ValidationError as exc:
                line = f"parameter {param.name!r}: {str(exc).removeprefix('invalid secret references: ')}"
                if line not in problems:
                    problems.append(line)
    return problems


def _section(inputs: Mapping[str, Any], param: Param) -> Tuple[Optional[Mapping[str, Any]], str]:
    if param.file is None:
        section = inputs.get("run_config")
        return section, "" if section is not None else "the job declares no run-config inputs"
    files = inputs.get("files") or {}
    if param.file not in files:
        managed = ", ".join(sorted(files)) or "none"
        return None, f"config file {param.file!r} is not one the job manages (it manages: {managed})"
    return files[param.file], ""


# -- reading -----------------------------------------------------------------------------------------


def show(conn: redis.Redis, keys: Keys, sweep_id: str) -> Dict[str, Any]:
    """The sweep as ``launchbay sweep show --json`` prints it (docs/sweeps.md#show)."""
    store = SweepStore(conn, keys)
    sweep = store.require(sweep_id)
    spec = parse_sweep(sweep.get("config"), source=f"sweep {sweep_id}")
    trials = sweep_study.load_trials(_storage(conn, keys, sweep_id), sweep_id)
    job_ids = [trial_job_id(sweep_id, t.number) for t in trials]
    jobs = _job_states(conn, keys, job_ids)
    rows = [_trial_row(spec, t, job, job_id) for t, job, job_id in zip(trials, jobs, job_ids)]
    return {
        "id": sweep_id,
        "name": sweep.get("name"),
        "state": sweep.get("state"),
        "method": spec.method,
        "metric": {"name": spec.metric_name, "goal": spec.goal},
        "queue": sweep.get("queue"),
        "submitter": sweep.get("submitter"),
        "created_at": sweep.get("created_at"),
        "ended_at": sweep.get("ended_at"),
        "trial_cap": spec.trial_cap(),
        "max_parallel": spec.max_parallel,
        "parameters": [p.name for p in spec.params],
        "early_terminate": spec.pruner,
        "message": sweep.get("message") or None,
        "driver": store.lease_holder(sweep_id),
        "best": best_of(rows, spec.goal),
        "trials": rows,
    }


def list_sweeps(conn: redis.Redis, keys: Keys, limit: int = 50) -> List[Dict[str, Any]]:
    """One summary per sweep, newest first."""
    out = []
    for sweep_id in SweepStore(conn, keys).ids(limit):
        try:
            full = show(conn, keys, sweep_id)
        except redis.RedisError:
            raise
        except Exception as exc:  # one user's sweep, whatever she wrote in it, must not fail everyone's list
            out.append({"id": sweep_id, "state": "unreadable", "message": " ".join(str(exc).split())[:500]})
            continue
        summary = {k: full[k] for k in ("id", "name", "state", "method", "metric", "queue", "trial_cap", "created_at")}
        summary["trials"] = len(full["trials"])
        summary["ended"] = sum(1 for t in full["trials"] if t["ended"])
        summary["best"] = full["best"]
        out.append(summary)
    return out


def command(conn: redis.Redis, keys: Keys, sweep_id: str, action: str) -> str:
    """``pause``, ``resume`` or ``stop``: the state the sweep is now in."""
    to = {"pause": SweepState.PAUSED, "resume": SweepState.RUNNING, "stop": SweepState.STOPPING}[action]
    return SweepStore(conn, keys).command(sweep_id, to)


def best_of(rows: List[Dict[str, Any]], goal: str) -> Optional[Dict[str, Any]]:
    done = [
        r
        for r in rows
        if r["state"] == State.FINISHED and isinstance(r["value"], (int, float)) and math.isfinite(r["value"])
    ]
    if not done:
        return None
    pick = max if goal == "maximize" else min
    best = pick(done, key=lambda r: r["value"])
    return {"job_id": best["job_id"], "params": best["params"], "value": best["value"]}


# -- as people read them (CLI and UI) ---------------------------------------------------------------


def value_text(value: Any) -> str:
    """A metric value to 6 significant digits, ``-`` when there is none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{value:.6g}"


def trial_value_text(trial: Mapping[str, Any]) -> str:
    """The trial's value, else its last logged value and step (a running or pruned trial), else ``-``."""
    if trial.get("value") is not None:
        return value_text(trial["value"])
    last = trial.get("last")
    if last and last.get("value") is not None:
        return f"{value_text(last['value'])} @ step {last['step']}"
    return "-"


def param_text(value: Any) -> str:
    """A parameter's value as written in SWEEP.yaml: numbers short, strings bare, lists and maps as JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(value, sort_keys=True)
    return f"{value:.6g}"


def _trial_row(spec: SweepSpec, trial: Any, job: JobRecord, job_id: str) -> Dict[str, Any]:
    state, reason = (job.state.value if job.state else None), (job.reason or None)
    # Ended once the driver has recorded it too: a job that just finished has no value in the study yet.
    ended = job.terminal and trial.state.name != "RUNNING"
    if state is None:  # the job's record expired (or the driver has not written it yet)
        state, ended = ("expired", True) if sweep_study.JOB_ATTR in trial.user_attrs else ("making", False)
    steps = trial.intermediate_values
    last = max(steps) if steps else None
    return {
        "job_id": job_id,
        "number": trial.number,
        "params": sweep_study.trial_params(spec, trial.params),
        "state": state,
        "reason": reason,
        "ended": ended,
        "label": state if not reason or state == State.FINISHED else f"{state} ({reason})",
        "value": trial.value if trial.state.name == "COMPLETE" else None,
        "last": {"step": last, "value": steps[last]} if last is not None else None,
    }


def _job_states(conn: redis.Redis, keys: Keys, job_ids: List[str]) -> List[JobRecord]:
    """The trials' jobs, as far as a sweep's view reads them (:data:`TRIAL_FIELDS`)."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(keys.job(job_id), TRIAL_FIELDS)
        replies = pipe.execute() if job_ids else []
    return [JobRecord.from_values(job_id, TRIAL_FIELDS, values) for job_id, values in zip(job_ids, replies)]


def _storage(conn: redis.Redis, keys: Keys, sweep_id: str) -> Any:
    key = (id(conn), keys.namespace, sweep_id)
    if key in _storages:
        _storages.move_to_end(key)
        return _storages[key]
    store = sweep_study.storage(conn, keys, sweep_id)
    _storages[key] = store
    while len(_storages) > _OPEN_STORAGES:
        _storages.popitem(last=False)
    return store
