"""The job folder on the agent's host: the payload going in, the SDK's records coming out.

``<state_dir>/jobs/<job_id>/inputs`` holds ``run_config.json`` and ``file_overrides.json`` (folder
0755, files 0644) and is mounted read-only at ``INPUTS_MOUNT``; ``<state_dir>/jobs/<job_id>/output``
(0777, so images that run as a non-root user can write) is mounted writable at ``OUTPUT_MOUNT``,
where the SDK writes ``inputs.json`` and ``config.json``; ``<state_dir>/jobs`` is 0700, so no
other local user reaches what a job wrote there (a setuid-root file). The same payload also travels in env
vars, unless a value is larger than :data:`ENV_VALUE_LIMIT_BYTES`: then only the file carries it
(the SDK prefers files anyway).

Whatever the job wrote is untrusted: output files are opened without following symlinks and
without blocking (a FIFO or a device answers ``not a regular file`` at once), must be regular files
no larger than :data:`OUTPUT_FILE_LIMIT_BYTES`, are checked for nesting deeper than
:data:`~launchbay.queue_config.structured.MAX_NESTING` before they are parsed (no RecursionError), and
must hold a JSON object. :func:`read_outputs` never raises: what it cannot read is a problem line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Dict, List, Mapping, Optional

from launchbay.queue_config.structured import MAX_NESTING
from launchbay.sdk.payload import (
    EFFECTIVE_CONFIG_FILE,
    ENV_FILE_OVERRIDES,
    ENV_RUN_CONFIG,
    FILE_OVERRIDES_FILE,
    INPUTS_RECORD_FILE,
    RUN_CONFIG_FILE,
)

logger = logging.getLogger(__name__)

#: A payload JSON larger than this goes by file only (env vars share the kernel's ARG_MAX).
ENV_VALUE_LIMIT_BYTES = 64 * 1024
#: The most the agent reads back of ``inputs.json`` or ``config.json``.
OUTPUT_FILE_LIMIT_BYTES = 1 << 20
INPUTS_DIR_MODE = 0o755
INPUTS_FILE_MODE = 0o644
OUTPUT_DIR_MODE = 0o777
#: ``<state_dir>/jobs``: the agent's user only (the containers reach their folders through their mounts).
JOBS_DIR_MODE = 0o700
_SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}\Z")


@dataclass(frozen=True)
class PayloadPaths:
    """Where one job's payload lives on the host, and the payload env vars that fit."""

    job_dir: Path
    inputs_dir: Path
    output_dir: Path
    #: ``LAUNCHBAY_RUN_CONFIG`` / ``LAUNCHBAY_FILE_OVERRIDES`` when small enough; the files always exist.
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobOutputs:
    """What the SDK recorded in the output folder; ``problems`` says what could not be read, for the job log."""

    inputs: Optional[Dict[str, Any]] = None
    effective_config: Optional[Dict[str, Any]] = None
    problems: List[str] = field(default_factory=list)


def payload_paths(state_dir: Path, job_id: str) -> PayloadPaths:
    """The folders of ``job_id`` (nothing is created); a job id that is not a plain name is a ValueError."""
    if not _SAFE_JOB_ID.match(job_id) or ".." in job_id:
        raise ValueError(f"job id {job_id!r} cannot name a folder (letters, digits, '.', '_', '-' only)")
    job_dir = Path(state_dir) / "jobs" / job_id
    return PayloadPaths(job_dir=job_dir, inputs_dir=job_dir / "inputs", output_dir=job_dir / "output")


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def prepare_payload(
    state_dir: Path, job_id: str, run_config: Optional[Mapping[str, Any]], file_overrides: Optional[Mapping[str, Any]]
) -> PayloadPaths:
    """Write a fresh job folder (replacing a stale one from an earlier attempt) and return its paths."""
    paths = payload_paths(state_dir, job_id)
    if paths.job_dir.exists():
        shutil.rmtree(paths.job_dir)
    paths.inputs_dir.mkdir(parents=True)
    paths.output_dir.mkdir()
    # Only the agent's user may pass: a job can chmod 4755 what it writes to its output folder
    # (as root in the container, root on the host), and no other local user must reach that file.
    paths.job_dir.parent.chmod(JOBS_DIR_MODE)
    env = {}
    for name, env_name, value in (
        (RUN_CONFIG_FILE, ENV_RUN_CONFIG, run_config or {}),
        (FILE_OVERRIDES_FILE, ENV_FILE_OVERRIDES, file_overrides or {}),
    ):
        text = _compact_json(value)
        target = paths.inputs_dir / name
        target.write_text(text, encoding="utf-8")
        target.chmod(INPUTS_FILE_MODE)
        if len(text.encode("utf-8")) <= ENV_VALUE_LIMIT_BYTES:
            env[env_name] = text
    # chmod after mkdir: the process umask would otherwise take bits away.
    paths.inputs_dir.chmod(INPUTS_DIR_MODE)
    paths.output_dir.chmod(OUTPUT_DIR_MODE)
    return PayloadPaths(paths.job_dir, paths.inputs_dir, paths.output_dir, env)


#: Open flags for a file the job wrote: no symlink followed, never blocking (a FIFO opens at once).
_UNTRUSTED_OPEN = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
#: A string, or one bracket: what the nesting scan looks at in a JSON text.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _read_json_object(path: Path) -> Any:
    """Parse a JSON object from ``path`` without following a symlink the job may have planted."""
    fd = os.open(path, _UNTRUSTED_OPEN)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > OUTPUT_FILE_LIMIT_BYTES:
            raise ValueError(f"larger than {OUTPUT_FILE_LIMIT_BYTES} bytes")
        data = handle.read(OUTPUT_FILE_LIMIT_BYTES + 1)
    if len(data) > OUTPUT_FILE_LIMIT_BYTES:  # it grew after the fstat
        raise ValueError(f"larger than {OUTPUT_FILE_LIMIT_BYTES} bytes")
    text = data.decode("utf-8")
    check_nesting(text)
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def check_nesting(text: str, limit: int = MAX_NESTING) -> None:
    """ValueError when the JSON ``text`` nests objects and arrays deeper than ``limit``; a loop, no recursion."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token[0] in "[{":
            depth += 1
            if depth > limit:
                raise ValueError(f"nested deeper than {limit} levels")
        elif token[0] in "]}":
            depth -= 1


def read_outputs(paths: PayloadPaths) -> JobOutputs:
    """Read the SDK's ``inputs.json`` and ``config.json``; a missing file is normal (job without the SDK).

    Never raises and never blocks: whatever the job left there, the caller goes on to record its end.
    """
    found: Dict[str, Optional[Dict[str, Any]]] = {}
    problems = []
    for name in (INPUTS_RECORD_FILE, EFFECTIVE_CONFIG_FILE):
        path = paths.output_dir / name
        found[name] = None
        if not os.path.lexists(path):
            continue
        try:
            found[name] = _read_json_object(path)
        except (OSError, ValueError, RecursionError) as exc:
            problems.append(f"ignored {name} from the job's output folder: {exc}")
    return JobOutputs(found[INPUTS_RECORD_FILE], found[EFFECTIVE_CONFIG_FILE], problems)


def remove_stale_job_dirs(state_dir: Path, keep: Collection[str]) -> List[str]:
    """Delete the job folders of jobs not in ``keep``; returns their job ids.

    For the agent's start-up, after adoption: a folder of a job this agent no longer runs was left
    by a process killed between the job's recorded end and its clean-up.
    """
    try:
        folders = sorted((Path(state_dir) / "jobs").iterdir())
    except OSError:
        return []
    removed = []
    for folder in folders:
        if folder.name not in keep and folder.is_dir() and not folder.is_symlink():
            remove_job_dir(PayloadPaths(folder, folder / "inputs", folder / "output"))
            removed.append(folder.name)
    return removed


def remove_job_dir(paths: PayloadPaths) -> None:
    """Delete the job folder (the log file lives elsewhere); a failure is logged, never raised."""

    try:
        shutil.rmtree(paths.job_dir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot remove the job folder %s: %s", paths.job_dir, exc)
