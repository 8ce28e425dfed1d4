"""Write what the job declared (``inputs.json``) and its effective run config (``config.json``).

The agent reads both back after the run. Writes are atomic (temp file + rename) because the
agent may read while the job is still running, and they happen at each ``manage_*`` call, at
``init``/``finish`` and once more at exit, so values the job set while running are captured.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import payload
from .console import warn
from .schema import secret_paths
from .state import State
from .types import infer_types
from .validation import MASK


def inputs_record(state: State) -> dict[str, Any]:
    """The ``inputs.json`` document: the run config's inputs (or null) and each managed file's."""
    spec = state.run_config_inputs()
    run_config = None
    if spec is not None:
        # The job's own values plus the overrides it took; before init, just those overrides.
        effective = state.run.config if state.run is not None else state.allowed_run_overrides()[0]
        run_config = {**spec.record(), "types": infer_types(spec.split(effective)[0])}
    return {"run_config": run_config, "files": {name: spec.record() for name, spec in state.file_specs.items()}}


def masked_config(state: State) -> dict[str, Any]:
    """The Run's config with every ``format: secret`` field of the run-config schema replaced by ``***``.

    config.json is shown by ``launchbay status``: a secret the job was given must not be in it.
    """
    config = state.run.config.as_dict()
    spec = state.run_config_inputs()
    for path in secret_paths(spec.schema if spec is not None else None):
        node = config
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            node[path[-1]] = MASK
    return config


def write_records(state: State) -> None:
    """Write ``inputs.json`` and, once a Run exists, ``config.json`` into ``$LAUNCHBAY_OUTPUT_DIR``."""
    folder = payload.output_dir()
    if folder is None:
        return
    documents = {payload.INPUTS_RECORD_FILE: inputs_record(state)}
    if state.run is not None:
        documents[payload.EFFECTIVE_CONFIG_FILE] = masked_config(state)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, document in documents.items():
            # default=str: a job may put objects (paths, enums) in its config; record their text.
            text = json.dumps(document, default=str)
            path = folder / name
            if state.written.get(str(path)) != text:
                write_text_atomic(path, text + "\n")
                state.written[str(path)] = text
    except OSError as exc:
        # Losing the record must not kill a training run; the agent reports it as missing.
        warn(f"cannot record the job's inputs in {folder}: {exc}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
