"""Job specs, resource requests and queue configs (pydantic v2), with loaders whose errors name
the file and the field. Sizes and durations are accepted as people write them (``16GiB``, ``2h``)
and stored normalized, with the unit in the field name (``memory_mib``, ``max_runtime_s``).
Unknown fields are refused, so a misspelt option is an error instead of being silently ignored.
The options of a shared queue (``preemption``, ``fair_share``) live in ``sharing.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

from launchbay.queue_config.gang import MAX_NODES, GangOptions
from launchbay.queue_config.inputs_decl import InputsDeclaration
from launchbay.queue_config.quotas import Quotas
from launchbay.queue_config.secrets import SecretSource
from launchbay.queue_config.sharing import SharingOptions
from launchbay.queue_config.structured import check_finite, read_structured_file
from launchbay.queue_config.submitter_policy import normalize_allow_list, normalize_path
from launchbay.queue_config.units import parse_duration_s, parse_size_mib, rename_unit_keys
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from launchbay.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
#: Env names a queue secret may not take: launchbay's payload and W&B Launch's contract own them.
RESERVED_ENV_PREFIXES = ("LAUNCHBAY_", "WANDB_CONFIG", "WANDB_LAUNCH")
#: The smallest CPU request (Docker's smallest ``--cpus``).
MIN_CPUS = 0.01


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _check_env(env: Dict[str, Any]) -> Dict[str, str]:
    out = {}
    for name, value in env.items():
        if not ENV_NAME_RE.match(str(name)):
            raise ValueError(
                f"env name {name!r} is not a valid variable name (letters, digits, '_', not starting with a digit)"
            )
        if value is None or isinstance(value, (dict, list)):
            raise ValueError(f"env {name} must be a string, number or bool, got {type(value).__name__}")
        out[str(name)] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


class Resources(_Strict):
    """A resource request, or a queue's limits. ``None`` means "not set" (a default or no limit applies)."""

    # Docker's smallest CPU limit is 0.01; a smaller request would round to NanoCpus=0, which is "no limit".
    cpus: Optional[float] = Field(default=None, ge=MIN_CPUS, le=4096)
    memory_mib: Optional[int] = Field(default=None, gt=0)
    gpus: Optional[int] = Field(default=None, ge=0, le=64)
    gpu_model: Optional[str] = None
    gpu_memory_mib: Optional[int] = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _acceptrename_unit_keys(cls, data: Any) -> Any:
        return rename_unit_keys(
            data, {"memory": ("memory_mib", parse_size_mib), "gpu_memory": ("gpu_memory_mib", parse_size_mib)}
        )

    @field_validator("gpu_model")
    @classmethod
    def _gpu_model_pattern(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not value.strip() or any(not part.strip() for part in value.split("|"))):
            raise ValueError(f"gpu_model {value!r} must be names separated by '|', e.g. A100 or H100|A100")
        return value

    def merged_over(self, default: Resources) -> Resources:
        """This request with unset fields taken from ``default``."""
        values = default.model_dump()
        values.update({k: v for k, v in self.model_dump().items() if v is not None})
        return Resources(**values)

    def request_dict(self) -> Dict[str, Any]:
        """The canonical request the claim script reads (zeros instead of None)."""
        return {
            "cpus": float(self.cpus or 0.0),
            "memory_mib": int(self.memory_mib or 0),
            "gpus": int(self.gpus or 0),
            "gpu_model": self.gpu_model or "",
            "gpu_memory_mib": int(self.gpu_memory_mib or 0),
        }


_GPUS_RE = re.compile(r"^(?:(?P<model>[^:]+):)?(?P<count>\d+)\Z")


def parse_gpus(value: object) -> Dict[str, Any]:
    """A GPU request as SkyPilot writes it: ``2``, ``A100`` (one), ``A100:2``, ``H100|A100:2``.

    Returns ``{"gpus": count}`` plus ``"gpu_model"`` when a model is named; ValueError otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"gpus must be a count (2) or MODEL:COUNT (A100:2), got {value!r}")
    text = str(value).strip()
    match = _GPUS_RE.match(text)
    if match is None:
        if text and ":" not in text and text[0].isalpha():
            return {"gpus": 1, "gpu_model": text}
        raise ValueError(f"gpus {text!r} must be a count (2), a model (A100) or MODEL:COUNT (A100:2)")
    result: Dict[str, Any] = {"gpus": int(match.group("count"))}
    if match.group("model"):
        result["gpu_model"] = match.group("model").strip()
    return result


GPU_MODES = ("device_request", "nvidia_runtime_env", "env_only")
PRIORITIES = ("high", "normal", "low")
#: Docker option names people may also write, and the field each means (``shm_size: 2g``).
DOCKER_OPTION_ALIASES = {"shm_size": "shm_size_mib"}


class Mount(_Strict):
    """A bind mount from the host into the job's container."""

    source: str
    target: str
    read_only: bool = True

    @field_validator("source", "target")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or "\x00" in value or ":" in value:
            raise ValueError(f"mount path {value!r} must be absolute and contain no ':'")
        return normalize_path(value)  # //launchbay/inputs and /a/../launchbay are /launchbay/...


class DockerOptions(_Strict):
    """Docker options for a job's container.

    A queue's ``docker`` section is what its agents add to every job. A job spec may carry its own
    ``docker`` section only for the fields named in the queue's ``submitter_may_set``.
    """

    env: Dict[str, str] = Field(default_factory=dict)
    mounts: List[Mount] = Field(default_factory=list)
    shm_size_mib: Optional[int] = Field(default=None, gt=0)
    network: Optional[str] = None
    runtime: Optional[str] = None
    gpu_mode: Literal["device_request", "nvidia_runtime_env", "env_only"] = "device_request"
    privileged: bool = False
    cap_add: List[str] = Field(default_factory=list)
    devices: List[str] = Field(default_factory=list)
    pid_mode: Optional[str] = None
    ipc_mode: Optional[str] = None
    user: Optional[str] = None

    @model_validator(mode="before")
    @classmethod
    def _acceptrename_unit_keys(cls, data: Any) -> Any:
        return rename_unit_keys(data, {alias: (name, parse_size_mib) for alias, name in DOCKER_OPTION_ALIASES.items()})

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return _check_env(value) if isinstance(value, dict) else value

    def set_fields(self) -> List[str]:
        """Names of the fields that differ from their defaults (what a submitter asks for)."""
        return sorted(self.model_dump(exclude_defaults=True))


DOCKER_OPTION_NAMES = tuple(DockerOptions.model_fields)


class RetryPolicy(_Strict):
    """What happens to a running job whose agent disappears, or whose GPU fails under it."""

    on_agent_lost: Literal["fail", "requeue"] = "fail"
    #: A GPU fault is not the job's doing, so by default it runs again on a healthy GPU.
    on_gpu_failed: Literal["fail", "requeue"] = "requeue"
    max_requeues: int = Field(default=1, ge=0, le=100)


class QueueLimits(Resources):
    """The largest request a queue accepts, and the longest ``max_runtime``."""

    max_runtime_s: Optional[int] = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _accept_duration(cls, data: Any) -> Any:
        return rename_unit_keys(data, {"max_runtime": ("max_runtime_s", parse_duration_s)})


class QueueConfig(SharingOptions, _Strict):
    """A queue: where jobs wait, with its defaults, limits and container options."""

    name: str
    description: str = ""
    default_resources: Resources = Field(default_factory=Resources)
    default_max_runtime_s: Optional[int] = Field(default=None, gt=0)
    limits: QueueLimits = Field(default_factory=QueueLimits)
    docker: DockerOptions = Field(default_factory=DockerOptions)
    submitter_may_set: Dict[str, Optional[List[Any]]] = Field(default_factory=dict)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    quotas: Quotas = Field(default_factory=Quotas)
    #: Multi-node jobs: the largest ``nodes``, the members' network, the assembly timeout (gang.py).
    gang: GangOptions = Field(default_factory=GangOptions)
    #: Hand every container W&B Launch's own env contract (WANDB_LAUNCH, WANDB_CONFIG...).
    wandb_env: bool = True
    #: Env var name in the container -> where the agent reads the value on its host.
    secrets: Dict[str, SecretSource] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _accept_duration(cls, data: Any) -> Any:
        return rename_unit_keys(data, {"default_max_runtime": ("default_max_runtime_s", parse_duration_s)})

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "queue name")

    @field_validator("submitter_may_set", mode="before")
    @classmethod
    def _known_options(cls, value: Any) -> Any:
        # {option: [allowed values] | any}, or the older list of option names (submitter_policy.py)
        return normalize_allow_list(value, DOCKER_OPTION_NAMES, DOCKER_OPTION_ALIASES)

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: Dict[str, SecretSource]) -> Dict[str, SecretSource]:
        for name in value:
            if not ENV_NAME_RE.match(name):
                raise ValueError(f"secret name {name!r} is not a valid variable name")
            if name.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(f"secret name {name!r} would replace one of launchbay's or W&B Launch's variables")
        return value


class JobSpec(_Strict):
    """What to run: image, command and defaults. Overrides and resources can change at enqueue."""

    name: str
    image: str
    command: Optional[List[str]] = None
    workdir: Optional[str] = None
    env: Dict[str, str] = Field(default_factory=dict)
    config: Dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    max_runtime_s: Optional[int] = Field(default=None, gt=0)
    constraints: Dict[str, str] = Field(default_factory=dict)
    docker: DockerOptions = Field(default_factory=DockerOptions)
    #: How many hosts run the job at once (ranks 0..N-1, one per agent); resources are per node.
    nodes: int = Field(default=1, ge=1, le=MAX_NODES)
    #: The launch inputs, for jobs that have not recorded any (see queue_config/inputs_decl.py).
    inputs: Optional[InputsDeclaration] = None

    @model_validator(mode="before")
    @classmethod
    def _accept_duration(cls, data: Any) -> Any:
        return rename_unit_keys(data, {"max_runtime": ("max_runtime_s", parse_duration_s)})

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "job name")

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value or value.startswith("-") or any(c.isspace() for c in value):
            raise ValueError(f"image {value!r} is not an image reference such as python:3.12-slim")
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _command_is_argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError("command must be a list of arguments, e.g. [python, train.py], not one string")
        if isinstance(value, list):
            return [str(v) for v in value]
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"workdir {value!r} must be an absolute path")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return _check_env(value) if isinstance(value, dict) else value

    @field_validator("config")
    @classmethod
    def _config_is_json(cls, value: Dict[str, Any]) -> Dict[str, Any]:
        check_finite(value, "config")
        return value

    @field_validator("constraints", mode="before")
    @classmethod
    def _constraints(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if not LABEL_RE.match(str(key)):
                    raise ValueError(f"constraint label {key!r} must be letters, digits, '.', '_' or '-'")
            return {str(k): str(v) for k, v in value.items()}
        return value


def _format_pydantic_error(source: str, exc: PydanticValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        # A unit parser's message already names the field ("memory '16x' is not a size ...").
        problems.append(f"{where}: {message}" if where else message)
    return f"{source}: " + "; ".join(problems)


def parse_model(model: type[BaseModel], data: Any, *, source: str) -> Any:
    """Validate ``data`` into ``model``; a failure is a ConfigError naming the source and fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(_format_pydantic_error(source, exc)) from exc


def load_job_spec(path: str | Path) -> JobSpec:
    return parse_model(JobSpec, read_structured_file(path), source=str(path))


def load_queue_config(path: str | Path) -> QueueConfig:
    return parse_model(QueueConfig, read_structured_file(path), source=str(path))
