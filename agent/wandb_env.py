"""W&B Launch's own env contract, so a job that imports the real ``wandb`` gets launchbay's overrides.

W&B's launch agent hands a run (``wandb/sdk/launch/_project_spec.py``, ``get_env_vars_dict``):

- ``WANDB_LAUNCH=True``: ``wandb.init`` reads the overrides only when it is set;
- ``WANDB_CONFIG``: the run-config overrides as JSON, which ``wandb.init(config=...)`` merges over
  the job's own config (``Config.merge_locked``, so later ``config.update`` calls do not undo them);
- ``WANDB_LAUNCH_FILE_OVERRIDES``: ``{relative path: overrides}`` as JSON, which
  ``launch.manage_config_file(path)`` merges into the file.

A JSON text longer than W&B's limit (``MAX_ENV_LENGTHS``, 32670 characters for its local runners)
is cut into ``NAME_0``, ``NAME_1``, ... instead, and ``wandb`` joins the pieces back.

Beside W&B Launch's names, the agent points W&B's run files into the job's output folder
(``WANDB_DIR``, always the agent's), where it follows the run's logged steps and summary
(``metric_stream/wandb_run.py``); and when the queue gives no ``WANDB_API_KEY`` and the job's env sets
no ``WANDB_MODE``, it sets ``WANDB_MODE=offline``, so ``wandb.init`` never waits at a login prompt
(such runs can be uploaded later with ``wandb sync``).

The real ``wandb`` applies every key it is given, excluded or not, so the agent first keeps only
what the job's inputs allow (recorded by the SDK, or declared in the job spec; enqueue stored the
ones it checked in the record's ``spec.inputs``). With no inputs at all, everything goes, as on W&B.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from launchbay.sdk.filtering import filter_tree, flatten
from launchbay.sdk.paths import join_path, parse_prefixes
from launchbay.sdk.payload import OUTPUT_MOUNT

ENV_LAUNCH = "WANDB_LAUNCH"
ENV_CONFIG = "WANDB_CONFIG"
ENV_FILE_OVERRIDES = "WANDB_LAUNCH_FILE_OVERRIDES"
ENV_DIR = "WANDB_DIR"
ENV_MODE = "WANDB_MODE"
ENV_API_KEY = "WANDB_API_KEY"
#: W&B's ``MAX_ENV_LENGTHS`` default: the longest value before it splits one into numbered pieces.
MAX_ENV_LENGTH = 32670
#: Above this many bytes in all, the contract is left out (with a note): env shares the kernel's
#: ARG_MAX (2 MiB) with the command line. launchbay's own payload travels by file whatever its size.
MAX_TOTAL_BYTES = 1 << 20
_OWN_NAME = re.compile(rf"^(?:{ENV_LAUNCH}|{ENV_DIR}|{ENV_CONFIG}(?:_\d+)?|{ENV_FILE_OVERRIDES}(?:_\d+)?)$")


def is_contract_name(name: str) -> bool:
    """Whether ``name`` is one of the variables the contract sets (only the agent may set them)."""
    return bool(_OWN_NAME.match(name))


def split_value(name: str, text: str, limit: int = MAX_ENV_LENGTH) -> Dict[str, str]:
    """``{name: text}``, or ``{name_0: ..., name_1: ...}`` pieces of at most ``limit`` characters, as W&B does."""
    if len(text) <= limit:
        return {name: text}
    return {f"{name}_{i}": text[start : start + limit] for i, start in enumerate(range(0, len(text), limit))}


def _filter_section(tree: Mapping[str, Any], section: Any) -> Tuple[Dict[str, Any], List[str]]:
    if not isinstance(section, Mapping):
        return {}, [
            join_path(parts) for parts in flatten(tree)
        ]  # the inputs name no such section: nothing in it is an input
    _, include = parse_prefixes(section.get("include"), "include")
    _, exclude = parse_prefixes(section.get("exclude"), "exclude")
    return filter_tree(tree, include, exclude)


def filter_by_inputs(
    run_config: Mapping[str, Any], file_overrides: Mapping[str, Mapping[str, Any]], inputs: Optional[Mapping[str, Any]]
) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]], List[str]]:
    """``(run config, file overrides, dropped keys)`` that the job's ``inputs`` allow; all of it when None."""
    if inputs is None:
        return dict(run_config), {path: dict(tree) for path, tree in file_overrides.items()}, []
    kept_run, dropped = _filter_section(run_config, inputs.get("run_config"))
    files = inputs.get("files") if isinstance(inputs.get("files"), Mapping) else {}
    kept_files: Dict[str, Dict[str, Any]] = {}
    for path, tree in file_overrides.items():
        kept, lost = _filter_section(tree, files.get(path))
        if kept:
            kept_files[path] = kept
        dropped += [f"{path}:{key}" for key in lost]
    return kept_run, kept_files, dropped


def contract_env(
    run_config: Mapping[str, Any], file_overrides: Mapping[str, Mapping[str, Any]], inputs: Optional[Mapping[str, Any]]
) -> Tuple[Dict[str, str], List[str]]:
    """``(env, notes for the job's log)``: the contract's variables for one container."""
    kept_run, kept_files, dropped = filter_by_inputs(run_config, file_overrides, inputs)
    notes = []
    if dropped:
        notes.append("W&B env: left out overrides outside the job's inputs: " + ", ".join(dropped))
    # json.dumps' defaults (ASCII only) as W&B writes it, so characters and bytes agree.
    env = {ENV_LAUNCH: "true", **split_value(ENV_CONFIG, json.dumps(kept_run))}
    env.update(split_value(ENV_FILE_OVERRIDES, json.dumps(kept_files)))
    total = sum(len(name) + len(value) + 2 for name, value in env.items())
    if total > MAX_TOTAL_BYTES:
        notes.append(
            f"W&B env: left out, the overrides take {total} bytes (more than {MAX_TOTAL_BYTES}); "
            "a job using launchbay's SDK still gets them by file"
        )
        return {}, notes
    return env, notes


def run_files_env(job_env: Mapping[str, str], secret_env: Mapping[str, str]) -> Dict[str, str]:
    """``WANDB_DIR`` in the output folder, and ``WANDB_MODE=offline`` when no key is given and no mode chosen."""
    env = {ENV_DIR: OUTPUT_MOUNT}
    if not secret_env.get(ENV_API_KEY) and not job_env.get(ENV_API_KEY) and ENV_MODE not in job_env:
        env[ENV_MODE] = "offline"
    return env
