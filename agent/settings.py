"""The agent's settings: one typed object, settled once at start-up.

Precedence, highest first: a command-line flag, a ``LAUNCHBAY_AGENT_<NAME>`` environment variable,
the ``--config FILE`` (YAML or JSON), the defaults below. :func:`resolve_settings` is the only place
that merges them. Unknown keys are refused in every source (a misspelt env var or file key is an
error, not a silently ignored setting).

Values may be written as people write them, in any source: ``reserve_memory: 4GiB`` (stored as
``reserve_memory_mib``), ``log_cap: 8MiB`` (stored as ``log_cap_bytes``), ``queues: gpu,cpu``,
``gpus: 0,1,3`` or ``all``, ``labels: zone=eu,rack=7``.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from launchbay.queue_config.models import parse_model
from launchbay.queue_config.structured import read_structured_file
from launchbay.queue_config.units import parse_size_bytes, parse_size_mib, rename_unit_keys
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from launchbay.errors import ConfigError

ENV_PREFIX = "LAUNCHBAY_AGENT_"
#: The env var naming the config file (``--config``); not a setting itself.
CONFIG_ENV = ENV_PREFIX + "CONFIG"
DEFAULT_LOG_CAP_BYTES = 8 << 20
DEFAULT_METRICS_CAP_BYTES = 8 << 20
DEFAULT_METRICS_CAP_ENTRIES = 20_000
AGENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")

# Human spellings accepted in every source, turned into the field with the unit in its name.
_SIZE_ALIASES = {
    "reserve_memory": ("reserve_memory_mib", parse_size_mib),
    "log_cap": ("log_cap_bytes", parse_size_bytes),
    "metrics_cap": ("metrics_cap_bytes", parse_size_bytes),
}


def primary_address() -> str:
    """The address this host sends from on its default route (no packet leaves: a UDP socket is only
    connected); 127.0.0.1 on a host with no route at all."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere, only looked up
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/launchbay/agent`` (``~/.local/state/launchbay/agent``): payloads, outputs and logs."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "launchbay" / "agent"


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class AgentSettings(BaseModel):
    """Everything the agent needs to know about itself; durations in seconds, sizes with the unit in the name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: str = Field(default_factory=socket.gethostname, description="unique id of this agent in Redis")
    host: str = Field(default_factory=socket.gethostname, description="host name recorded on the jobs it runs")
    advertise_addr: str = Field(
        default_factory=lambda: primary_address(),
        min_length=1,
        description="the address other hosts reach this one at: a multi-node job's MASTER_ADDR when rank 0 runs here",
    )
    queues: List[str] = Field(default_factory=lambda: ["default"], min_length=1, description="queues, priority order")
    gpus: Optional[List[str]] = Field(default=None, description="host GPU indices to use; None = all")
    reserve_cpus: float = Field(default=0.0, ge=0, description="CPUs kept back for the host")
    reserve_memory_mib: int = Field(default=0, ge=0, description="memory kept back for the host")
    labels: Dict[str, str] = Field(default_factory=dict, description="labels that job constraints match")
    max_jobs: int = Field(default=8, ge=1, le=1024, description="most jobs running at once")
    state_dir: Path = Field(default_factory=default_state_dir, description="payload, output and log folders")
    log_cap_bytes: int = Field(default=DEFAULT_LOG_CAP_BYTES, ge=1024, description="log bytes kept per job in Redis")
    metrics_cap_bytes: int = Field(
        default=DEFAULT_METRICS_CAP_BYTES, ge=1024, description="metrics bytes kept per job in Redis"
    )
    metrics_cap_entries: int = Field(
        default=DEFAULT_METRICS_CAP_ENTRIES, ge=1, description="metrics steps (lines) kept per job in Redis"
    )
    stop_grace_s: float = Field(default=10.0, ge=0, description="SIGTERM to SIGKILL on cancel/timeout")
    heartbeat_interval_s: float = Field(default=3.0, gt=0)
    heartbeat_ttl_s: float = Field(default=10.0, gt=0)
    lost_grace_s: float = Field(default=15.0, ge=0, description="added to the TTL before the agent counts as lost")
    poll_interval_s: float = Field(default=5.0, gt=0, description="fallback wake-up when no event arrives")
    lookahead: int = Field(default=64, ge=1, le=10000, description="queued jobs read per queue per pass")
    reserve_after_s: float = Field(default=300.0, ge=0, description="head-of-line wait before its resources are held")
    inventory_refresh_s: float = Field(default=10.0, gt=0)
    reaper_interval_s: float = Field(default=5.0, gt=0, description="how often lost agents are looked for")
    redis_url: Optional[str] = Field(
        default=None, description="None = LAUNCHBAY_REDIS_URL, else the private local redis-server"
    )
    docker_host: Optional[str] = Field(default=None, description="None = DOCKER_HOST or the local socket")
    drain: bool = Field(default=False, description="on SIGTERM wait for running jobs instead of leaving them")
    json_logs: bool = Field(default=False, description="one JSON object per log line")
    nvidia_smi: str = Field(default="nvidia-smi", description="the nvidia-smi executable (name on PATH or path)")
    kernel_log: str = Field(
        default="/dev/kmsg", description="kernel log read for NVIDIA XID errors (a file or /dev/kmsg); '' = none"
    )
    metrics_port: Optional[int] = Field(default=None, ge=0, le=65535, description="serve /metrics here; None = off")
    metrics_host: str = Field(default="127.0.0.1", min_length=1, description="address /metrics binds to")

    @model_validator(mode="before")
    @classmethod
    def _accept_human_units(cls, data: Any) -> Any:
        return rename_unit_keys(data, _SIZE_ALIASES)

    @field_validator("queues", mode="before")
    @classmethod
    def _queues(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "all":
            return None
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value]
        return _split_commas(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = _split_commas(value)
        if isinstance(value, (list, tuple)):
            return parse_labels(value)
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("agent_id")
    @classmethod
    def _agent_id(cls, value: str) -> str:
        if not AGENT_ID_RE.match(value):
            raise ValueError(f"agent id {value!r} must be 1-63 letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _heartbeat_fits_ttl(self) -> AgentSettings:
        if self.heartbeat_interval_s >= self.heartbeat_ttl_s:
            raise ValueError(
                f"heartbeat_interval_s ({self.heartbeat_interval_s}) must be shorter than heartbeat_ttl_s "
                f"({self.heartbeat_ttl_s}), or the agent looks dead between beats"
            )
        return self

    @property
    def alive_ttl_s(self) -> float:
        """How long the alive key lives after a beat: the TTL plus the grace."""
        return self.heartbeat_ttl_s + self.lost_grace_s


FIELD_NAMES = tuple(AgentSettings.model_fields)


def parse_labels(items: Any) -> Dict[str, str]:
    """``["zone=eu", "rack=7"]`` -> ``{"zone": "eu", "rack": "7"}``; a malformed item is a ValueError."""
    labels = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"label {item!r} must look like key=value, e.g. zone=eu")
        labels[key.strip()] = value.strip()
    return labels


def env_values(environ: Mapping[str, str]) -> Dict[str, str]:
    """The ``LAUNCHBAY_AGENT_*`` variables as setting names; an unknown one is a ConfigError."""
    known = set(FIELD_NAMES) | set(_SIZE_ALIASES)
    values = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in known:
            raise ConfigError(f"environment variable {name} is not an agent setting; known: {_env_names()}")
        values[key] = value
    return values


def _env_names() -> str:
    return ", ".join(ENV_PREFIX + n.upper() for n in (*FIELD_NAMES, *_SIZE_ALIASES))


def file_values(path: Optional[Path]) -> Dict[str, Any]:
    if path is None:
        return {}
    data = read_structured_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of agent settings, got {type(data).__name__}")
    return data


def _canonical(values: Mapping[str, Any], source: str) -> Dict[str, Any]:
    """Human spellings replaced by field names, so a flag ``reserve_memory`` beats a file ``reserve_memory_mib``."""
    out = {}
    for key, value in values.items():
        if key in _SIZE_ALIASES:
            field, parse = _SIZE_ALIASES[key]
            try:
                out[field] = parse(value, what=key)
            except ValueError as exc:
                raise ConfigError(f"{source}: {exc}") from exc
        else:
            out[key] = value
    return out


def resolve_settings(
    flags: Optional[Mapping[str, Any]] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    config_file: Optional[Path] = None,
) -> AgentSettings:
    """Settle the agent's settings: flags > ``LAUNCHBAY_AGENT_*`` env > config file > defaults.

    ``flags`` holds only the options given on the command line (None values are ignored).
    ``environ`` defaults to ``os.environ``; ``config_file`` to ``$LAUNCHBAY_AGENT_CONFIG``.
    Raises ConfigError naming the source of a bad value.
    """
    environ = os.environ if environ is None else environ
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    layers = [
        (str(config_file), file_values(config_file)),
        ("environment (LAUNCHBAY_AGENT_*)", env_values(environ)),
        ("command line", {k: v for k, v in (flags or {}).items() if v is not None}),
    ]
    merged: Dict[str, Any] = {}
    for source, raw in layers:
        values = _canonical(raw, source)
        # Each layer is checked on its own first, so an error names the source it came from.
        parse_model(AgentSettings, {**values, **_partner_defaults(values)}, source=source)
        merged.update(values)
    return parse_model(AgentSettings, merged, source="agent settings")


def _partner_defaults(values: Mapping[str, Any]) -> Dict[str, Any]:
    # The interval < TTL check needs both; a layer that sets only one is checked against a partner
    # that cannot fail, and the merged result is checked for real.
    if "heartbeat_interval_s" in values and "heartbeat_ttl_s" not in values:
        return {"heartbeat_ttl_s": float("inf")}
    if "heartbeat_ttl_s" in values and "heartbeat_interval_s" not in values:
        return {"heartbeat_interval_s": 1e-9}
    return {}
