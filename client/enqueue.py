"""Enqueue a job: validate everything first, then write it in one transaction.

Every check runs before anything is written, and the record, the queue index and the RQ job land
in one MULTI/EXEC, so a refused request leaves Redis exactly as it was and an accepted one is never
half there. The CLI's ``launchbay enqueue`` is a thin layer over :func:`enqueue`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import redis
from launchbay.queue_config import launch_policy
from launchbay.queue_config.acl import OWNER_RE, new_job_id, owner_of_connection
from launchbay.queue_config.gang import nodes_problem
from launchbay.queue_config.inputs_decl import effective_inputs
from launchbay.queue_config.job_checks import check_inputs, check_payload
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import PRIORITIES, JobSpec, QueueConfig, load_job_spec, parse_model
from launchbay.queue_config.store import QueueStore
from launchbay.queue_config.submit import write_job
from launchbay.redis_connection.connect import connect

from launchbay.errors import ValidationError

from . import submitter
from .fit import fit_notes
from .handle import JobHandle
from .overrides import merge_trees

SpecArg = Union[JobSpec, Mapping[str, Any], str, Path]


def load_spec(spec: SpecArg) -> JobSpec:
    """A JobSpec from a model, a mapping or a YAML/JSON file path."""
    if isinstance(spec, JobSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_model(JobSpec, dict(spec), source="job spec")
    return load_job_spec(spec)


def adhoc_spec(
    image: str, command: Sequence[str] = (), *, name: Optional[str] = None, env: Optional[Mapping[str, str]] = None
) -> JobSpec:
    """A spec for ``launchbay enqueue --image IMG -- CMD``; the name defaults to one made from the image."""
    fields: Dict[str, Any] = {"name": name or name_from_image(image), "image": image, "env": dict(env or {})}
    if command:
        fields["command"] = list(command)
    return parse_model(JobSpec, fields, source="--image")


def name_from_image(image: str) -> str:
    """``ghcr.io/org/train:1.2`` -> ``train-1.2``: the last path part, made a valid job name."""
    last = image.rsplit("/", 1)[-1].split("@", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", last).strip("-._")[:63]
    return name or "adhoc"


def with_changes(
    spec: JobSpec,
    *,
    command: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
    constraints: Optional[Mapping[str, str]] = None,
) -> JobSpec:
    """The spec with a new command and extra env and constraints (given ones win), re-validated."""
    data = spec.model_dump(mode="json")
    if command:
        data["command"] = list(command)
    data["env"] = {**data["env"], **dict(env or {})}
    data["constraints"] = {**data["constraints"], **dict(constraints or {})}
    return parse_model(JobSpec, data, source=f"job {spec.name!r}")


def enqueue(
    spec: SpecArg,
    queue: str,
    *,
    overrides: Optional[Mapping[str, Any]] = None,
    file_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
    resources: launch_policy.ResourcesArg = None,
    max_runtime: Union[str, int, None] = None,
    priority: str = "normal",
    redis_url: Optional[str] = None,
    conn: Optional[redis.Redis] = None,
    keys: Optional[Keys] = None,
    user: Optional[str] = None,
    on_behalf_of: Optional[str] = None,
    nodes: Optional[int] = None,
) -> JobHandle:
    """Validate and enqueue one job; returns its handle (``handle.notes`` says what to know).

    ``overrides`` are run-config overrides (nested), merged over the spec's ``config``;
    ``file_overrides`` map a config file's relative path to its overrides. ``user`` is the
    submitter when the connection has no ACL user (see ``client/submitter.py``). ``on_behalf_of`` is
    for a caller that authenticated its own user (the UI's named token): the job is that user's
    (id ``NAME_...``, submitter, quota) whatever Redis user the connection logs in as; Redis' ACL
    still decides whether the connection may write it (docs/security.md). ``resources`` takes
    people's units (``{"memory": "16GiB", "gpus": "A100:2"}``), per node; ``max_runtime`` a duration (``2h``).
    ``nodes`` (default: the spec's) runs the job on that many agents at once (docs/multi-node.md).
    Raises ValidationError / NotFoundError / ConfigError (nothing written) on any problem.
    """
    conn = conn or connect(redis_url)
    keys = keys or Keys.from_env()
    launch = Launch(overrides, file_overrides, resources, max_runtime, priority, user, on_behalf_of, nodes)
    fields, notes = prepare(spec, queue, launch, conn=conn, keys=keys)
    job_id = new_job_id(launch.owner(conn))
    write_job(conn, keys, job_id, fields)
    return JobHandle(job_id, conn, keys, notes=notes)


@dataclass(frozen=True)
class Launch:
    """What one launch asks on top of the job spec (the arguments of :func:`enqueue`)."""

    overrides: Optional[Mapping[str, Any]] = None
    file_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None
    resources: launch_policy.ResourcesArg = None
    max_runtime: Union[str, int, None] = None
    priority: str = "normal"
    user: Optional[str] = None
    on_behalf_of: Optional[str] = None
    nodes: Optional[int] = None

    def owner(self, conn: redis.Redis) -> Optional[str]:
        """The ``NAME_`` prefix of the job's id: the key the ACL pins to whose job it is (acl.py)."""
        if self.on_behalf_of is not None:
            return self.on_behalf_of if OWNER_RE.match(self.on_behalf_of) else None
        return owner_of_connection(conn)  # a named Redis user's jobs are NAME_<hex>: its ACL role


def prepare(
    spec: SpecArg, queue: str, launch: Launch, *, conn: redis.Redis, keys: Keys
) -> Tuple[Dict[str, Any], List[str]]:
    """``(record fields, notes)`` of a launch, every check done and nothing written (a sweep keeps them as its template)."""
    job_spec = load_spec(spec)
    if launch.priority not in PRIORITIES:
        raise ValidationError(f"priority {launch.priority!r} must be one of {', '.join(PRIORITIES)}")
    asked = launch_policy.parse_resources(launch.resources)
    asked_runtime_s = launch_policy.parse_max_runtime(launch.max_runtime)
    store = QueueStore(conn, keys)
    queue_config, paused = store.get_and_paused(queue)
    request = launch_policy.effective_request(asked, job_spec, queue_config)
    max_runtime_s = launch_policy.effective_max_runtime(asked_runtime_s, job_spec, queue_config)
    launch_policy.check_against_queue(request, max_runtime_s, job_spec, queue_config)
    nodes = job_spec.nodes if launch.nodes is None else launch.nodes
    problem = nodes_problem(nodes, queue_config.gang, queue_config.name)
    if problem:
        raise ValidationError(problem)
    overrides, file_overrides = launch.overrides or {}, launch.file_overrides or {}
    check_payload(dict(overrides), dict(file_overrides))
    user = (
        submitter.check_user_name(launch.on_behalf_of, what="submitter")
        if launch.on_behalf_of is not None
        else submitter.resolve(conn, launch.user)
    )
    run_config = merge_trees(job_spec.config, overrides, what="overrides")
    file_overrides = {path: dict(tree) for path, tree in file_overrides.items()}
    check_payload(run_config, file_overrides)
    # Checked against the recorded inputs, else the declared ones, kept in ``spec.inputs``: the agent
    # filters W&B's env contract by the same inputs, and status/list/UI mask their secret fields.
    inputs, source = effective_inputs(store.get_inputs(job_spec.name), job_spec.inputs)
    check_inputs(queue_config, job_spec.name, inputs, run_config, file_overrides)
    asks = request.request_dict()
    fields = _build_record(job_spec, queue_config, asks, max_runtime_s, launch.priority, (inputs, source))
    fields.update(submitter=user, run_config=run_config, file_overrides=file_overrides)
    if nodes > 1:
        fields["nodes"] = nodes
    notes = _notes(conn, keys, paused, queue, asks, job_spec.constraints)
    notes += submitter.quota_notes(conn, keys, queue_config, user, asks)
    return fields, notes


def _build_record(
    spec: JobSpec,
    queue: QueueConfig,
    request: Dict[str, Any],
    max_runtime_s: Optional[int],
    priority: str,
    inputs: Tuple[Optional[Dict[str, Any]], Optional[str]],
) -> Dict[str, Any]:
    """The job's record fields but its submitter and overrides; ``inputs``: (the inputs it was checked
    against, where they came from)."""
    job_spec: Dict[str, Any] = {
        "image": spec.image,
        "command": spec.command,
        "workdir": spec.workdir,
        "env": spec.env,
        "docker": launch_policy.submitter_docker(spec),
    }
    if inputs[0] is not None:
        job_spec.update(inputs=inputs[0], inputs_source=inputs[1])
    return {
        "name": spec.name,
        "queue": queue.name,
        "priority": priority,
        "spec": job_spec,
        "request": request,
        "constraints": spec.constraints,
        "max_runtime_s": max_runtime_s,
    }


def _notes(
    conn: redis.Redis,
    keys: Keys,
    paused: bool,
    queue: str,
    request: Dict[str, Any],
    constraints: Mapping[str, str],
) -> List[str]:
    notes = []
    if paused:
        notes.append(f"note: queue {queue!r} is paused; the job waits until `launchbay queue resume {queue}`")
    return notes + fit_notes(conn, keys, queue, request, constraints)
