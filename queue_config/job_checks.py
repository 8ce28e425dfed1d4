"""The checks a job passes before it may run: at enqueue, and again on the agent when it is claimed.

A submitter's Redis role may rewrite her own job records (``acl.py``), so a record in Redis is
input, not proof that enqueue's checks passed. ``client/enqueue.py`` runs :func:`check_payload`
and :func:`check_inputs` on what a launch asks; the agent runs :func:`record_problems`, which is
the same checks (and ``launch_policy``'s queue limits and docker options) on the stored record,
before it builds a container from it. One home for each check, so the two never drift apart.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

from launchbay.queue_config.acl import job_owner
from launchbay.queue_config.gang import nodes_problem
from launchbay.queue_config.inputs_check import check_overrides
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.launch_policy import docker_problems, effective_request, limit_problems
from launchbay.queue_config.models import PRIORITIES, JobSpec, QueueConfig, Resources
from launchbay.queue_config.secret_refs import check_references, redact, secret_values, without_references
from launchbay.queue_config.structured import MAX_NESTING, MAX_YAML_VALUES, check_finite, check_shape
from pydantic import ValidationError as PydanticValidationError

from launchbay.errors import ValidationError

#: The most bytes a job's overrides (run config and config files, as JSON) may take, whether they
#: come from the CLI, the API or the launch form: they are stored in Redis with every job.
MAX_OVERRIDES_BYTES = 16 << 20
#: What a job's spec (image, command, env, docker options, declared inputs) may take as JSON.
MAX_SPEC_BYTES = 1 << 20


def check_payload(run_config: Mapping[str, Any], file_overrides: Mapping[str, Any]) -> None:
    """Overrides must be JSON as the job will get it: finite numbers, nesting and size within the limits."""
    try:
        check_finite(run_config, "overrides")
        for path, tree in file_overrides.items():
            check_finite(tree, f"overrides of {path}")
        payload = {"run_config": run_config, "file_overrides": file_overrides}
        check_shape(payload, max_values=MAX_YAML_VALUES)
        size = len(json.dumps(payload))
    except (ValueError, RecursionError) as exc:
        problem = f"nested deeper than {MAX_NESTING} levels" if isinstance(exc, RecursionError) else str(exc)
        raise ValidationError(problem if problem.startswith("overrides") else f"overrides: {problem}") from exc
    if size > MAX_OVERRIDES_BYTES:
        raise ValidationError(f"overrides: {size >> 20} MiB of JSON; at most {MAX_OVERRIDES_BYTES >> 20} MiB")


def check_inputs(
    queue: QueueConfig,
    job_name: str,
    inputs: Optional[Mapping[str, Any]],
    run_config: Mapping[str, Any],
    file_overrides: Mapping[str, Mapping[str, Any]],
    *,
    keys_too: bool = True,
) -> None:
    """Secret references only where ``inputs`` mark a secret field; the other overrides as ``inputs``
    allow (unless not ``keys_too``)."""
    check_references(queue, inputs, run_config, file_overrides)
    if not keys_too:
        return
    # A referenced value is the agent's to fill in: the checks see the rest.
    run_config, file_overrides = without_references(run_config), without_references(file_overrides)
    try:
        check_overrides(job_name, inputs, run_config, file_overrides)
    except ValidationError as exc:
        # A schema message quotes the value it refuses; a secret's must not reach the terminal.
        raise ValidationError(redact(str(exc), secret_values(inputs, run_config, file_overrides))) from None


def record_problems(
    job_id: str, record: JobRecord, queue: QueueConfig, recorded_inputs: Optional[Mapping[str, Any]]
) -> List[str]:
    """Why the stored ``record`` of ``job_id`` must not run in ``queue`` as it is now configured (empty: it may).

    ``recorded_inputs`` are what the job's last run recorded (written by agents only): the
    overrides must fit them, as at enqueue. Without them the record's own declared inputs say only
    where secret references may go: they are the submitter's as much as her overrides are, so
    checking one against the other proves nothing, and the SDK and the agent's W&B filter drop
    what they exclude (``container_spec``).
    """
    owner, claimed = job_owner(job_id), record.submitter_field
    if owner is not None and claimed != owner:
        return [f"its submitter field says {claimed!r}, but its id belongs to {owner!r}"]
    if record.queue != queue.name:
        return [f"its queue field says {record.queue!r}, but it was claimed from {queue.name!r}"]
    if record.priority not in PRIORITIES:
        return [f"priority {record.priority!r} is none of {', '.join(PRIORITIES)}"]
    problem = nodes_problem(record.nodes, queue.gang, queue.name)
    if problem:
        return [problem]
    try:
        spec = _spec_of(record)
        request = _request_of(record.request)
        max_runtime_s = record.max_runtime_s
        problems = limit_problems(request, max_runtime_s, queue) + docker_problems(spec, queue)
        problems += _default_problems(request, spec, queue)
        if max_runtime_s is None and queue.limits.max_runtime_s is not None:
            problems.append(f"max_runtime: none, queue {queue.name!r} allows at most {queue.limits.max_runtime_s} s")
        if problems:
            return problems
        check_payload(record.run_config, record.file_overrides)
        recorded = recorded_inputs is not None
        inputs = recorded_inputs if recorded else record.spec.get("inputs")
        check_inputs(queue, spec.name, inputs, record.run_config, record.file_overrides, keys_too=recorded)
    except PydanticValidationError as exc:
        return [f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}: {exc.errors()[0]['msg']}"]
    except (ValidationError, ValueError, TypeError, AttributeError) as exc:
        return [str(exc)]
    return []


def _default_problems(request: Resources, spec: JobSpec, queue: QueueConfig) -> List[str]:
    """What enqueue would have added to ``request`` (the queue's ``default_resources``, its GPU models)
    and the record left out: without it a job escapes the limits Docker would set."""
    wanted = effective_request(request, spec, queue).request_dict()
    stored = request.request_dict()
    left_out = sorted(name for name in wanted if wanted[name] != stored[name])
    return [f"its request leaves out {name} = {wanted[name]!r}, queue {queue.name!r}'s default" for name in left_out]


def _request_of(stored: Mapping[str, Any]) -> Resources:
    """The request as :meth:`Resources.request_dict` stored it (zeros for "not asked"), validated."""
    if not isinstance(stored, Mapping):
        raise ValueError("its request is not a JSON object")
    return Resources.model_validate({name: value for name, value in stored.items() if value not in (0, "", None)})


def _spec_of(record: JobRecord) -> JobSpec:
    """The job spec the record was made from, as far as it keeps it, validated as the client validates one."""
    spec: Dict[str, Any] = dict(record.spec)
    if len(json.dumps(spec)) > MAX_SPEC_BYTES:
        raise ValueError(f"its spec is over {MAX_SPEC_BYTES >> 20} MiB of JSON")
    fields = {key: spec[key] for key in ("image", "command", "workdir", "env", "docker") if spec.get(key) is not None}
    return JobSpec.model_validate({**fields, "name": record.name, "constraints": record.constraints})
