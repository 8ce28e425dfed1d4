"""Launching a job definition from the form: what it runs, and the one call that enqueues it.

A job definition holds only the inputs its last run recorded, so what to run (image, command,
env, docker options, constraints) comes from that run's record, or from the newest record with
the job's name. The launch starts from an empty run config, so the record's ``run_config`` is
exactly what the person entered. Validation is the client's ``enqueue``, the same call the CLI makes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import redis
from launchbay.client import JobHandle, enqueue
from launchbay.client.jobs import list_records
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.store import QueueStore

from launchbay.errors import ConfigError, NotFoundError, UserError

from . import form, problems

#: How many of the newest jobs to look through for one with the definition's name.
RECENT_JOBS_SEARCHED = 200
#: The launch options of the form (besides the queue): posted name -> ``enqueue`` resource key.
RESOURCE_FIELDS = {"gpus": "gpus", "gpu_model": "gpu_model", "cpus": "cpus", "memory": "memory"}
LAUNCH_FIELDS = ("queue", "image", "priority", "max_runtime", *RESOURCE_FIELDS)
#: Hidden field: the job whose command, env, docker options and constraints the shown form inherits.
BASED_ON_FIELD = "based_on"


@dataclass
class LaunchPage:
    """Everything the launch form shows for one job definition."""

    name: str
    jobdef: Optional[Dict[str, Any]]
    sections: List[form.Section]
    last_spec: Dict[str, Any]
    last_job_id: Optional[str]
    constraints: Dict[str, str]
    queues: List[Dict[str, Any]]
    values: Dict[str, str] = field(default_factory=dict)
    errors: Dict[str, List[str]] = field(default_factory=dict)
    general_errors: List[str] = field(default_factory=list)
    notices: List[str] = field(default_factory=list)

    def inherited(self) -> List[Tuple[str, str]]:
        """What the launch takes from the last run besides the image, as ``(what, value)`` rows for the form."""
        spec = self.last_spec
        rows = [("command", " ".join(spec.get("command") or []) or "the image's default")]
        if spec.get("workdir"):
            rows.append(("workdir", str(spec["workdir"])))
        rows += [(f"env {key}", str(value)) for key, value in sorted((spec.get("env") or {}).items())]
        rows += [(f"docker {key}", json.dumps(value)) for key, value in sorted((spec.get("docker") or {}).items())]
        rows += [(f"constraint {key}", str(value)) for key, value in sorted(self.constraints.items())]
        return rows


def load_page(conn: redis.Redis, keys: Keys, name: str) -> LaunchPage:
    """The form for job ``name``; NotFoundError when no such job definition exists."""
    store = QueueStore(conn, keys)
    known = {entry["name"] for entry in store.list_jobdefs()}
    if name not in known:
        raise NotFoundError(f"unknown job {name!r}; known jobs: {', '.join(sorted(known)) or 'none'}")
    notices = []
    try:
        jobdef = store.get_jobdef(name)
    except ConfigError as exc:  # written by a job's own code or by hand: shown, never half-used
        jobdef, notices = None, [str(exc)]
    record = last_record(conn, keys, name, jobdef)
    queues = [{"name": q.name, "paused": store.is_paused(q.name), "description": q.description} for q in store.list()]
    page = LaunchPage(
        name=name,
        jobdef=jobdef,
        sections=form.build_form(jobdef["inputs"] if jobdef else None),
        last_spec=record.spec if record else {},
        last_job_id=record.id if record else None,
        constraints=record.constraints if record else {},
        queues=queues,
        notices=notices,
    )
    page.values = {"image": page.last_spec.get("image", ""), "priority": "normal"}
    if record:
        page.values["queue"] = record.queue
    return page


def last_record(conn: redis.Redis, keys: Keys, name: str, jobdef: Optional[Mapping[str, Any]]) -> Optional[JobRecord]:
    """The record of the run that recorded the inputs, else the newest job named ``name`` (or None)."""
    if jobdef and jobdef.get("job_id"):
        record = Records(conn, keys).load(str(jobdef["job_id"]))
        if record and record.name == name:
            return record
    for record in list_records(conn, keys, limit=RECENT_JOBS_SEARCHED):
        if record.name == name:
            return record
    return None


def submit(
    conn: redis.Redis, keys: Keys, page: LaunchPage, posted: Mapping[str, str], *, user: Optional[str] = None
) -> Optional[JobHandle]:
    """Enqueue what the form asks for, as ``user`` (from the token or trusted header, never the form):
    the job is theirs (id prefix, submitter, quota), whoever the UI logs in to Redis as; with no
    ``user`` the UI's own. On refusal fill ``page.errors`` and return None."""
    submission = form.read_submission(page.sections, posted)
    page.values = {**{name: posted.get(name, "") for name in LAUNCH_FIELDS}, **submission.values}
    if BASED_ON_FIELD in posted and posted[BASED_ON_FIELD] != (page.last_job_id or ""):
        # Another run of this name came in since the form was shown: what it would inherit changed.
        page.general_errors = [
            f"the launch settings of {page.name!r} now come from job {page.last_job_id or 'none'} "
            "(a newer run); check what the form now shows it runs, then launch again"
        ]
        return None
    if submission.errors:
        page.errors = {name: [message] for name, message in submission.errors.items()}
        return None
    try:
        return enqueue(
            _spec(page, posted.get("image", "").strip()),
            posted.get("queue", ""),
            overrides=submission.run_config,
            file_overrides=submission.files,
            resources={key: _posted(posted, name) for name, key in RESOURCE_FIELDS.items()},
            max_runtime=_posted(posted, "max_runtime"),
            priority=posted.get("priority") or "normal",
            conn=conn,
            keys=keys,
            on_behalf_of=user,
        )
    except UserError as exc:
        fields = list(form.iter_fields(page.sections))
        by_field, page.general_errors = problems.attribute(str(exc), fields)
        shown = {item.name for item in fields} | set(LAUNCH_FIELDS)
        page.errors = {name: found for name, found in by_field.items() if name in shown}
        page.general_errors += [problem for name, found in by_field.items() if name not in shown for problem in found]
        return None


def _spec(page: LaunchPage, image: str) -> Dict[str, Any]:
    """A job spec that runs what the last run ran, with no run-config values of its own."""
    last = page.last_spec
    spec: Dict[str, Any] = {"name": page.name, "image": image, "env": last.get("env") or {}}
    for key in ("command", "workdir", "docker"):
        if last.get(key):
            spec[key] = last[key]
    if page.constraints:
        spec["constraints"] = page.constraints
    return spec


def _posted(posted: Mapping[str, str], name: str) -> Optional[str]:
    value = (posted.get(name) or "").strip()
    return value or None
