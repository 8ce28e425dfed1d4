"""A job's secrets, resolved by the agent on its own host when it starts the container.

The queue config names each secret and its source (``{env: VAR}``: the agent's own environment;
``{file: /path}``: a file on the agent's host, one trailing newline dropped). Values go into the
container's environment and replace ``${secret:NAME}`` references in the overrides; they are
never written to Redis. Every secret of the queue must resolve, else the job fails with reason
``secret_missing`` before any container exists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from launchbay.agent.logs import JobLog
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.secrets import SecretSource, mask_tree, redact_tree, reference_name, section_secret_paths
from launchbay.sdk.filtering import flatten

from launchbay.errors import JobRunError

#: The most of a secret file the agent reads.
SECRET_FILE_LIMIT_BYTES = 64 * 1024
#: Shorter values are not hidden in the log: masking "1" or "true" would garble every line.
MIN_REDACTED_LENGTH = 4
SECRET_MISSING = "secret_missing"

logger = logging.getLogger(__name__)


class SecretMissingError(JobRunError):
    """A secret of the job's queue cannot be read on this agent's host."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason=SECRET_MISSING)


@dataclass(frozen=True)
class JobSecrets:
    """What a job's container gets: secret env vars, and the overrides with references resolved."""

    env: Dict[str, str] = field(default_factory=dict)
    run_config: Dict[str, Any] = field(default_factory=dict)
    file_overrides: Dict[str, Any] = field(default_factory=dict)
    #: Values of the overrides' ``format: secret`` fields, hidden from the log like the queue's secrets.
    field_values: Tuple[str, ...] = ()

    def redact(self, text: str) -> str:
        """``text`` with every secret value (long enough to mean something) replaced by ``***``."""
        for value in sorted({*self.env.values(), *self.field_values}, key=len, reverse=True):
            if len(value) >= MIN_REDACTED_LENGTH and value in text:
                text = text.replace(value, "***")
        return text


def read_secret(name: str, source: SecretSource, environ: Mapping[str, str]) -> str:
    """The value of one secret; SecretMissingError (saying where it looked, never a value) when absent."""
    if source.env is not None:
        value = environ.get(source.env)
        if not value:
            raise SecretMissingError(f"secret {name} is missing: {source.describe()} is not set or empty")
        return value
    try:
        with open(str(source.file), "rb") as handle:
            data = handle.read(SECRET_FILE_LIMIT_BYTES + 1)
    except OSError as exc:
        raise SecretMissingError(f"secret {name} is missing: cannot read {source.describe()}: {exc.strerror}") from None
    if len(data) > SECRET_FILE_LIMIT_BYTES:
        raise SecretMissingError(f"secret {name}: {source.describe()} is larger than {SECRET_FILE_LIMIT_BYTES} bytes")
    value = data.decode("utf-8", errors="replace").removesuffix("\n").removesuffix("\r")
    if not value:
        raise SecretMissingError(f"secret {name} is missing: {source.describe()} is empty")
    return value


def _resolve(tree: Any, values: Mapping[str, str], where: List[str]) -> Any:
    if isinstance(tree, dict):
        return {key: _resolve(child, values, where) for key, child in tree.items()}
    name = reference_name(tree)
    if name is None:
        return tree
    if name not in values:
        where.append(name)
        return tree
    return values[name]


def resolve(record: JobRecord, queue: QueueConfig, environ: Optional[Mapping[str, str]] = None) -> JobSecrets:
    """Read the queue's secrets and put them in the job's overrides; SecretMissingError when one is missing."""
    environ = os.environ if environ is None else environ
    values = {name: read_secret(name, source, environ) for name, source in sorted(queue.secrets.items())}
    unknown: List[str] = []
    run_config = _resolve(record.run_config, values, unknown)
    file_overrides = _resolve(record.file_overrides, values, unknown)
    if unknown:
        names = ", ".join(sorted(set(unknown)))
        raise SecretMissingError(f"the overrides refer to secrets queue {queue.name!r} does not have: {names}")
    return JobSecrets(values, run_config, file_overrides, _field_values(record, run_config, file_overrides))


def _field_values(record: JobRecord, run_config: Dict[str, Any], file_overrides: Dict[str, Any]) -> Tuple[str, ...]:
    run_paths, file_paths = section_secret_paths(record.spec.get("inputs"))
    trees = [(run_config, run_paths)] + [(file_overrides.get(p) or {}, paths) for p, paths in file_paths.items()]
    found = []
    for tree, paths in trees:
        for parts, value in flatten(tree).items():
            if isinstance(value, str) and any(parts[: len(path)] == path for path in paths):
                found.append(value)
    return tuple(found)


def scrub_effective_config(
    record: JobRecord, config: Optional[Dict[str, Any]], secrets: Optional[JobSecrets]
) -> Optional[Dict[str, Any]]:
    """The job's ``config.json`` as it may go to Redis: secret fields masked, queue secret values hidden."""
    if config is None:
        return None
    run_paths, _ = section_secret_paths(record.spec.get("inputs"))
    masked = mask_tree(config, run_paths)
    return redact_tree(masked, secrets.redact) if secrets is not None else masked


def resolve_into(log: JobLog, record: JobRecord, queue_config: QueueConfig) -> JobSecrets:
    """:func:`resolve`, and ``log`` hides the values from then on (SecretMissingError as there).

    The job's metrics and summary go through the same ``log.redact`` (``JobMetrics.for_job``).
    """
    secrets = resolve(record, queue_config)
    log.redact = secrets.redact
    return secrets


def for_adopted(
    log: JobLog, record: JobRecord, queue_config_for: Callable[[str], QueueConfig], queue: str
) -> Optional[JobSecrets]:
    """The secrets again, for a container a restarted agent adopts: only to hide them from what it stores.

    The container already has its env, so a secret that is gone now changes nothing for the job;
    its later output is then stored without that value hidden (None when nothing could be read).
    """
    try:
        return resolve_into(log, record, queue_config_for(queue))
    except SecretMissingError as exc:
        logger.warning("job %s: cannot hide its secrets from its log after adoption: %s", record.id, exc)
    except Exception as exc:  # the queue config is gone or unreadable: adoption must go on
        logger.warning("job %s: cannot read its queue's secrets after adoption: %s", record.id, exc)
    return None
