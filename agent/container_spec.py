"""The container a job runs in, as docker ``containers.create`` keyword arguments: a pure function.

Precedence, lowest first:

- environment: the queue's ``docker.env``, the submitter's ``spec.docker.env`` (if the queue
  allows it), the job's ``spec.env``, then the queue's secrets (resolved on the agent's host),
  W&B Launch's env contract (``agent/wandb_env.py``, unless the queue sets ``wandb_env: false``)
  and launchbay's own names (payload, identity, GPU visibility), which always win;
- docker options: the queue's ``docker`` section, then the submitter's ``spec.docker`` fields,
  but only those the queue lists in ``submitter_may_set`` (the client checked this at enqueue;
  it is checked again here, and anything else is dropped with a warning). Lists (mounts,
  cap_add, devices) are joined; single values from the submitter replace the queue's.

Secure defaults: ``init`` (signals reach the command, zombies are reaped), no-new-privileges,
no swap beyond the memory limit, no privileged mode, host network, extra capabilities, devices
or host mounts unless the queue config (or a submitter it allows) asks for them. The command is
an argv list handed to docker as is, never through a shell; the image's ENTRYPOINT is kept.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from docker.types import DeviceRequest, Mount
from launchbay.agent import wandb_env
from launchbay.agent.job_secrets import JobSecrets
from launchbay.agent.payload_dir import PayloadPaths
from launchbay.agent.runtime import AGENT_ID_LABEL, JOB_ID_LABEL, MANAGED_LABEL, QUEUE_LABEL
from launchbay.queue_config.agents import AllocationLike
from launchbay.queue_config.job import JSON_LIST_FIELDS, JobRecord
from launchbay.queue_config.models import DOCKER_OPTION_ALIASES, ENV_NAME_RE, MIN_CPUS, DockerOptions, QueueConfig
from launchbay.queue_config.submitter_policy import normalize_path, value_problems
from launchbay.sdk.payload import (
    ENV_FILE_OVERRIDES,
    ENV_GPUS,
    ENV_INPUTS_DIR,
    ENV_JOB_ID,
    ENV_OUTPUT_DIR,
    ENV_PREEMPTED,
    ENV_QUEUE,
    ENV_RUN_CONFIG,
    INPUTS_MOUNT,
    OUTPUT_MOUNT,
)
from pydantic import ValidationError as PydanticValidationError

CONTAINER_NAME_PREFIX = "launchbay-"
#: What a container without GPUs sees in the nvidia variables: none at all.
NO_GPU_ENV = {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
_LIST_OPTIONS = ("mounts", "cap_add", "devices")
_PAYLOAD_ROOT = INPUTS_MOUNT.rsplit("/", 1)[0]

Warn = Callable[[str], None]


def _ignore(_message: str) -> None:
    return None


def record_problem(record: JobRecord) -> Optional[str]:
    """What makes ``record`` unfit to build a container from, or None.

    The client only ever writes well-formed records, but anyone with write access to Redis can
    write one; the agent refuses those instead of guessing (a string command is not split, an env
    name with ``=`` is not passed on). A stored value the record could not read, or read in the
    wrong shape (``JobRecord.problems``, ``JobRecord.wrong_shape``: its attribute reads as empty),
    is named here, never taken as empty.
    """
    if record.problems:
        return f"not readable: {', '.join(record.problems)}"
    spec = record.spec
    if not isinstance(spec.get("image"), str) or not spec["image"].strip():
        return "spec.image must be an image name"
    command = spec.get("command")
    if command is not None and not (isinstance(command, list) and all(isinstance(a, str) for a in command)):
        return "spec.command must be a list of strings"
    env = spec.get("env") or {}
    if not isinstance(env, dict) or any(not ENV_NAME_RE.match(str(name)) for name in env):
        return "spec.env must map valid variable names to values"
    if any(isinstance(value, (dict, list)) for value in env.values()):
        return "spec.env values must be strings"
    if record.wrong_shape:
        name = record.wrong_shape[0]
        return f"{name} must be a JSON {'array' if name in JSON_LIST_FIELDS else 'object'}"
    return None


def submitter_options(record: JobRecord, queue: QueueConfig, warn: Warn = _ignore) -> Dict[str, Any]:
    """The submitter's ``spec.docker`` fields that ``queue`` allows, validated; the rest dropped with a warning."""
    requested = dict(record.spec.get("docker") or {})
    for alias, name in DOCKER_OPTION_ALIASES.items():
        if alias in requested and name not in requested:
            requested[name] = requested.pop(alias)
    allowed = queue.submitter_may_set
    kept = {}
    for name in sorted(requested):
        if name in allowed:
            kept[name] = requested[name]
        else:
            warn(f"ignored the job's docker option {name!r}: queue {queue.name!r} does not let submitters set it")
    try:
        validated = DockerOptions.model_validate(kept).model_dump(mode="json")
    except PydanticValidationError as exc:
        warn(f"ignored the job's docker options {sorted(kept)}: {exc.errors()[0]['msg']}")
        return {}
    for name in sorted(kept):
        problems = value_problems(name, validated[name], allowed[name])
        if problems:
            warn(f"ignored the job's docker option {name!r}: {problems[0]}")
            del kept[name]
    return kept


def merge_docker_options(queue: QueueConfig, allowed: Mapping[str, Any]) -> DockerOptions:
    """The queue's docker section with the (already allowed) submitter fields applied."""
    merged = queue.docker.model_dump()
    submitted = DockerOptions.model_validate(dict(allowed)).model_dump()
    for name in allowed:
        if name in _LIST_OPTIONS:
            merged[name] = merged[name] + [v for v in submitted[name] if v not in merged[name]]
        elif name == "env":
            merged["env"] = {**merged["env"], **submitted["env"]}
        else:
            merged[name] = submitted[name]
    return DockerOptions.model_validate(merged)


def gpu_settings(
    gpus: Sequence[str], gpu_mode: str, gpu_uuid_for: Callable[[str], Optional[str]], runtime: Optional[str] = None
) -> Tuple[Dict[str, str], Dict[str, Any]]:
    """``(env, create kwargs)`` that give a container exactly ``gpus`` (host GPU ids) in ``gpu_mode``.

    ``device_request`` and ``nvidia_runtime_env`` name each GPU by its UUID when ``gpu_uuid_for``
    knows it (stable even if indexes shift), else by its id. ``env_only`` sets the ids themselves,
    with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA numbers GPUs as nvidia-smi does.
    """
    env: Dict[str, str] = {ENV_GPUS: ",".join(gpus)}
    kwargs: Dict[str, Any] = {}
    if not gpus:
        env.update(NO_GPU_ENV)
        return env, kwargs
    names = [gpu_uuid_for(gpu) or gpu for gpu in gpus]
    if gpu_mode == "device_request":
        kwargs["device_requests"] = [DeviceRequest(device_ids=names, capabilities=[["gpu"]])]
    elif gpu_mode == "nvidia_runtime_env":
        kwargs["runtime"] = runtime or "nvidia"
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(names)
    elif gpu_mode == "env_only":
        ids = ",".join(gpus)
        env.update({"CUDA_VISIBLE_DEVICES": ids, "NVIDIA_VISIBLE_DEVICES": ids, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    else:
        raise ValueError(f"unknown gpu_mode {gpu_mode!r}")
    return env, kwargs


def _mounts(options: DockerOptions, payload: PayloadPaths, warn: Warn) -> List[Mount]:
    mounts = [
        Mount(target=INPUTS_MOUNT, source=str(payload.inputs_dir), type="bind", read_only=True),
        Mount(target=OUTPUT_MOUNT, source=str(payload.output_dir), type="bind", read_only=False),
    ]
    for mount in options.mounts:
        target = normalize_path(mount.target)  # the model normalizes too; a record may bypass it
        if target == _PAYLOAD_ROOT or target.startswith(_PAYLOAD_ROOT + "/") or target == "/":
            warn(f"ignored the mount on {mount.target}: it would hide launchbay's payload folders")
            continue
        mounts.append(Mount(target=target, source=normalize_path(mount.source), type="bind", read_only=mount.read_only))
    return mounts


def _host_options(options: DockerOptions) -> Dict[str, Any]:
    """The docker options that map one to one onto create kwargs, only when set."""
    kwargs: Dict[str, Any] = {}
    if options.shm_size_mib:
        kwargs["shm_size"] = options.shm_size_mib << 20
    if options.network:
        kwargs["network_mode"] = options.network
    if options.runtime:
        kwargs["runtime"] = options.runtime
    if options.ipc_mode:
        kwargs["ipc_mode"] = options.ipc_mode
    if options.pid_mode:
        kwargs["pid_mode"] = options.pid_mode
    if options.privileged:
        kwargs["privileged"] = True
    if options.cap_add:
        kwargs["cap_add"] = list(options.cap_add)
    if options.devices:
        kwargs["devices"] = list(options.devices)
    if options.user:
        kwargs["user"] = options.user
    return kwargs


def _limits(alloc: AllocationLike) -> Dict[str, Any]:
    kwargs: Dict[str, Any] = {}
    if alloc.cpus and alloc.cpus > 0:
        # Never below Docker's floor: NanoCpus=0 means unlimited (a record may bypass the client's check).
        kwargs["nano_cpus"] = max(round(alloc.cpus * 1e9), round(MIN_CPUS * 1e9))
    if alloc.memory_mib and alloc.memory_mib > 0:
        limit = int(alloc.memory_mib) << 20
        kwargs["mem_limit"] = limit
        kwargs["memswap_limit"] = limit  # the same value: no swap on top of the limit
    return kwargs


def _environment(
    record: JobRecord,
    queue: QueueConfig,
    options: DockerOptions,
    secrets: JobSecrets,
    warn: Warn,
) -> Dict[str, str]:
    """The env below launchbay's own names: the queue's and the job's, the secrets, W&B's contract."""
    spec = record.spec
    environment = {**options.env, **{str(k): str(v) for k, v in (spec.get("env") or {}).items()}}
    for name in (ENV_RUN_CONFIG, ENV_FILE_OVERRIDES):
        environment.pop(name, None)  # only the payload speaks for these, even when it goes by file only
    if not queue.wandb_env:
        return {**environment, **secrets.env}
    environment = {name: value for name, value in environment.items() if not wandb_env.is_contract_name(name)}
    inputs = spec.get("inputs") if isinstance(spec.get("inputs"), dict) else None
    contract, notes = wandb_env.contract_env(secrets.run_config, secrets.file_overrides, inputs)
    for line in notes:
        warn(line)
    contract.update(wandb_env.run_files_env(environment, secrets.env))
    return {**environment, **secrets.env, **contract}


def build_container_spec(
    record: JobRecord,
    queue: QueueConfig,
    alloc: AllocationLike,
    *,
    agent_id: str,
    payload: PayloadPaths,
    gpu_uuid_for: Callable[[str], Optional[str]],
    warn: Warn = _ignore,
    secrets: Optional[JobSecrets] = None,
) -> Dict[str, Any]:
    """Keyword arguments for ``docker.containers.create`` (``image`` included) that run ``record``'s job.

    ``warn`` receives one line per dropped option, for the job's log. ``secrets`` are the queue's,
    resolved (``agent/job_secrets.py``); without them the record's overrides are used as they are.
    """
    # The key it was claimed under names the container: the record's own ``id`` field is the
    # submitter's to write.
    spec, job_id = record.spec, alloc.job_id
    if secrets is None:
        secrets = JobSecrets(run_config=record.run_config, file_overrides=record.file_overrides)
    options = merge_docker_options(queue, submitter_options(record, queue, warn))
    gpu_env, gpu_kwargs = gpu_settings(alloc.gpus, options.gpu_mode, gpu_uuid_for, options.runtime)
    environment = {
        **_environment(record, queue, options, secrets, warn),
        **payload.env,
        ENV_INPUTS_DIR: INPUTS_MOUNT,
        ENV_OUTPUT_DIR: OUTPUT_MOUNT,
        ENV_JOB_ID: job_id,
        ENV_QUEUE: queue.name,
        ENV_PREEMPTED: str(record.preemptions),
        **gpu_env,
    }
    kwargs: Dict[str, Any] = {
        "image": spec["image"],
        "name": CONTAINER_NAME_PREFIX + job_id,
        "environment": environment,
        "labels": {JOB_ID_LABEL: job_id, AGENT_ID_LABEL: agent_id, QUEUE_LABEL: queue.name, MANAGED_LABEL: "1"},
        "mounts": _mounts(options, payload, warn),
        "init": True,
        "security_opt": ["no-new-privileges"],
        "auto_remove": False,
        **_host_options(options),
        **_limits(alloc),
        **gpu_kwargs,
    }
    if spec.get("command"):
        kwargs["command"] = [str(arg) for arg in spec["command"]]
    if spec.get("workdir"):
        kwargs["working_dir"] = spec["workdir"]
    return kwargs
