"""The one contract between the agent and a job's container.

The agent imports these names to build a container; the SDK reads them at startup. Change a
name here and both sides follow. Files win over env when both exist, because env vars have size
limits; env alone lets a person run a job by hand::

    LAUNCHBAY_RUN_CONFIG='{"seed": 7}' python train.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from .errors import SdkError

#: Run-config overrides, a JSON object.
ENV_RUN_CONFIG = "LAUNCHBAY_RUN_CONFIG"
#: Config-file overrides, a JSON object ``{relative path: object}``.
ENV_FILE_OVERRIDES = "LAUNCHBAY_FILE_OVERRIDES"
#: Folder holding the payload files, mounted read-only.
ENV_INPUTS_DIR = "LAUNCHBAY_INPUTS_DIR"
#: Writable folder where the SDK records ``inputs.json`` and ``config.json``.
ENV_OUTPUT_DIR = "LAUNCHBAY_OUTPUT_DIR"
ENV_JOB_ID = "LAUNCHBAY_JOB_ID"
ENV_QUEUE = "LAUNCHBAY_QUEUE"
#: How many times this job was preempted before this run ("0" on its first): resume from a checkpoint.
ENV_PREEMPTED = "LAUNCHBAY_PREEMPTED"
#: Host GPU ids given to the job, comma-separated (empty when none).
ENV_GPUS = "LAUNCHBAY_GPUS"

#: W&B Launch's own names for the same two payloads (read when launchbay's are absent, so a job
#: launched by W&B's agent, or a person's ``WANDB_CONFIG=... python train.py``, works too). Over
#: a size limit each is cut into ``<NAME>_0``, ``<NAME>_1``, ... pieces, joined in order.
WANDB_ENV_RUN_CONFIG = "WANDB_CONFIG"
WANDB_ENV_FILE_OVERRIDES = "WANDB_LAUNCH_FILE_OVERRIDES"

#: Where the agent mounts the two folders inside a container.
INPUTS_MOUNT = "/launchbay/inputs"
OUTPUT_MOUNT = "/launchbay/output"

RUN_CONFIG_FILE = "run_config.json"
FILE_OVERRIDES_FILE = "file_overrides.json"
#: Written by the SDK into the output folder; read back by the agent after the run.
INPUTS_RECORD_FILE = "inputs.json"
EFFECTIVE_CONFIG_FILE = "config.json"
#: Written by ``run.log``: one JSON object per step, appended; the agent streams the lines.
METRICS_FILE = "metrics.jsonl"
#: Written beside it: the last value of each logged key (or what the job set in ``run.summary``).
SUMMARY_FILE = "summary.json"


class PayloadError(SdkError):
    """Raised when an override payload is present but is not a JSON object (a ``ValueError``)."""


def _read_source(env: Mapping[str, str], file_name: str, env_name: str, wandb_name: str) -> Optional[tuple[str, str]]:
    """Return ``(text, source description)`` for one payload part, or None.

    launchbay's file first, then launchbay's env, then W&B's env (whole, or its pieces).
    """
    inputs_dir = env.get(ENV_INPUTS_DIR)
    if inputs_dir:
        path = Path(inputs_dir) / file_name
        if path.is_file():
            return path.read_text(encoding="utf-8"), str(path)
    for name in (env_name, wandb_name):
        text = env.get(name)
        if text is not None and text.strip():
            return text, f"env {name}"
    pieces = []
    while f"{wandb_name}_{len(pieces)}" in env:
        pieces.append(env[f"{wandb_name}_{len(pieces)}"])
    if pieces and "".join(pieces).strip():
        return "".join(pieces), f"env {wandb_name}_0..{len(pieces) - 1}"
    return None


def _load_object(env: Mapping[str, str], file_name: str, env_name: str, wandb_name: str) -> dict[str, Any]:
    found = _read_source(env, file_name, env_name, wandb_name)
    if found is None:
        return {}
    text, source = found
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"malformed launchbay payload in {source}: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(value, dict):
        raise PayloadError(
            f"malformed launchbay payload in {source}: expected a JSON object, got {type(value).__name__}"
        )
    return value


def read_run_config(env: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """The run-config overrides the job was launched with, unfiltered; ``{}`` when none."""
    return _load_object(os.environ if env is None else env, RUN_CONFIG_FILE, ENV_RUN_CONFIG, WANDB_ENV_RUN_CONFIG)


def read_file_overrides(env: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """The config-file overrides, ``{relative path: object}``; ``{}`` when none."""
    overrides = _load_object(
        os.environ if env is None else env, FILE_OVERRIDES_FILE, ENV_FILE_OVERRIDES, WANDB_ENV_FILE_OVERRIDES
    )
    for path, value in overrides.items():
        if not isinstance(value, dict):
            raise PayloadError(f"malformed launchbay file overrides: the value for {path!r} must be an object")
    return overrides


def output_dir(env: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """The folder the SDK records into, or None when the job was not started by an agent."""
    value = (os.environ if env is None else env).get(ENV_OUTPUT_DIR)
    return Path(value) if value else None
