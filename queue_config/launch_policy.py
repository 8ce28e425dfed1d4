"""What a queue allows: the resource request and runtime a job gets there, and the docker options
a submitter may set. Every check returns problems as text, so one error can list them all.

A request is built from three layers, most specific first: what the submitter asked for (flags or
``resources=``), the job spec's ``resources``, the queue's ``default_resources``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Union

from launchbay.queue_config.models import JobSpec, QueueConfig, Resources, parse_gpus, parse_model
from launchbay.queue_config.submitter_policy import option_problems
from launchbay.queue_config.units import format_duration, format_mib, parse_duration_s

from launchbay.errors import ValidationError

ResourcesArg = Union[Resources, Mapping[str, Any], None]


def parse_resources(asked: ResourcesArg) -> Resources:
    """A request from people's units: ``{"cpus": 4, "memory": "16GiB", "gpus": "A100:2", "gpu_memory": "40g"}``."""
    if asked is None or isinstance(asked, Resources):
        return asked or Resources()
    data = {k: v for k, v in dict(asked).items() if v is not None}
    if "gpus" in data:
        try:
            gpus = parse_gpus(data.pop("gpus"))
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        if "gpu_model" in gpus and data.get("gpu_model") not in (None, gpus["gpu_model"]):
            raise ValidationError(f"gpus names {gpus['gpu_model']!r} but gpu_model is {data['gpu_model']!r}")
        data.update(gpus)
    return parse_model(Resources, data, source="resource request")


def parse_max_runtime(value: Union[str, int, None]) -> Optional[int]:
    if value is None:
        return None
    try:
        return parse_duration_s(value, what="max_runtime")
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def effective_request(asked: Resources, spec: JobSpec, queue: QueueConfig) -> Resources:
    """The request the job is enqueued with: asked, then the spec's, then the queue's defaults."""
    request = asked.merged_over(spec.resources).merged_over(queue.default_resources)
    if request.gpus and not request.gpu_model and queue.limits.gpu_model:
        # A queue that limits GPU models narrows an "any GPU" request to the models it allows.
        request = request.model_copy(update={"gpu_model": queue.limits.gpu_model})
    return request


def effective_max_runtime(asked_s: Optional[int], spec: JobSpec, queue: QueueConfig) -> Optional[int]:
    """Asked, else the spec's, else the queue's default, else the queue's limit (so the limit holds)."""
    for candidate in (asked_s, spec.max_runtime_s, queue.default_max_runtime_s, queue.limits.max_runtime_s):
        if candidate is not None:
            return candidate
    return None


def limit_problems(request: Resources, max_runtime_s: Optional[int], queue: QueueConfig) -> List[str]:
    """One line per field over the queue's limits, naming the request and the limit."""
    limits, problems = queue.limits, []
    checks = (
        ("cpus", request.cpus, limits.cpus, lambda v: f"{v:g}"),
        ("memory", request.memory_mib, limits.memory_mib, format_mib),
        ("gpus", request.gpus, limits.gpus, str),
        ("gpu_memory", request.gpu_memory_mib, limits.gpu_memory_mib, format_mib),
        ("max_runtime", max_runtime_s, limits.max_runtime_s, format_duration),
    )
    for field, asked, limit, show in checks:
        if asked is not None and limit is not None and asked > limit:
            problems.append(f"{field}: requested {show(asked)}, queue {queue.name!r} allows at most {show(limit)}")
    model_problem = _gpu_model_problem(request, queue)
    return problems + ([model_problem] if model_problem else [])


def _gpu_model_problem(request: Resources, queue: QueueConfig) -> str:
    allowed = queue.limits.gpu_model
    if not (allowed and request.gpus and request.gpu_model):
        return ""
    allowed_names = {name.strip().lower() for name in allowed.split("|")}
    outside = [name.strip() for name in request.gpu_model.split("|") if name.strip().lower() not in allowed_names]
    if not outside:
        return ""
    return f"gpu_model: requested {request.gpu_model!r}, queue {queue.name!r} allows only {allowed!r}"


def docker_problems(spec: JobSpec, queue: QueueConfig) -> List[str]:
    """One line per docker option (or value) the spec sets that the queue's ``submitter_may_set`` does not allow."""
    return option_problems(queue.name, queue.submitter_may_set, submitter_docker(spec))


def check_against_queue(request: Resources, max_runtime_s: Optional[int], spec: JobSpec, queue: QueueConfig) -> None:
    problems = limit_problems(request, max_runtime_s, queue) + docker_problems(spec, queue)
    if problems:
        raise ValidationError("; ".join(problems))


def submitter_docker(spec: JobSpec) -> Dict[str, Any]:
    """The docker options the submitter set, as the record's ``spec.docker`` holds them."""
    return spec.docker.model_dump(mode="json", exclude_defaults=True)
