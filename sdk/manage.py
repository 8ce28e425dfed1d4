"""The job author's declarations: which run-config keys and config files take launch input.

Mirrors ``wandb.sdk.launch`` (``manage_wandb_config``, ``manage_config_file``,
``load_wandb_config``) with two deliberate differences: filtering is enforced (an override of
a key outside the inputs is not applied), and overrides are validated against the schema.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

from .console import warn
from .errors import SdkError
from .files import normalize_config_path, patch_config_file, read_config_file
from .paths import PrefixArg, parse_prefixes
from .record import write_records
from .schema import prepare_schema
from .state import STATE, InputSpec
from .types import infer_types


def manage_config(
    include: PrefixArg = None,
    exclude: PrefixArg = None,
    schema: Any = None,
    *,
    input_schema: Any = None,
) -> None:
    """Declare which run-config keys take launch input, and optionally their schema.

    ``include``/``exclude`` are dotted key-path prefixes (a string or a list); exclude wins over
    include, and repeated calls add to both. ``schema`` (or its synonym ``input_schema``) is a
    JSON-Schema dict or a pydantic model class or instance; the last one given wins.

    Overrides outside the inputs are not applied (one warning names them when a Run takes the
    config), and an existing Run's config is re-filtered. Raises :class:`ConfigPathError`,
    :class:`SchemaError` or, when the launch overrides break the schema,
    :class:`InputValidationError` listing every violation.
    """
    include_arg = parse_prefixes(include, "include")
    exclude_arg = parse_prefixes(exclude, "exclude")
    prepared = _prepared_schema(schema, input_schema)
    current = STATE.run_config_spec or InputSpec()
    STATE.run_config_spec = current.extended(include_arg, exclude_arg, prepared)
    track()
    try:
        STATE.apply_run_overrides()
    finally:
        write_records(STATE)


def manage_config_file(
    path: str,
    include: PrefixArg = None,
    exclude: PrefixArg = None,
    schema: Any = None,
    *,
    input_schema: Any = None,
) -> None:
    """Declare a JSON/YAML config file as a job input and patch it now with its launch overrides.

    ``path`` is relative to the working directory, has no ``..`` component and ends in
    ``.yaml``, ``.yml`` or ``.json``. Call this before the job reads the file. The overrides for
    this path, filtered by ``include``/``exclude`` and checked against ``schema``, are merged in
    place (dicts deep-merged, lists and scalars replaced, YAML comments kept where possible).
    Raises :class:`ConfigFileError`, :class:`ConfigPathError`, :class:`SchemaError` or
    :class:`InputValidationError`.
    """
    name = normalize_config_path(path)
    spec = InputSpec().extended(
        parse_prefixes(include, "include"), parse_prefixes(exclude, "exclude"), _prepared_schema(schema, input_schema)
    )
    content, text = read_config_file(Path(name))
    kept, dropped = spec.split(STATE.file_payload().get(name, {}))
    STATE.warn_ignored(dropped, where=name)
    # Record the declaration even if this launch's values are rejected: it describes the job.
    spec.types = infer_types(spec.split(content)[0]) if isinstance(content, dict) else {}
    STATE.file_specs[name] = spec
    track()
    try:
        spec.check(kept, f"config file {name}")
        content = patch_config_file(name, text, content, kept)
        spec.types = infer_types(spec.split(content)[0])
        # Without manage_config, declaring a file takes the run config off the inputs.
        STATE.apply_run_overrides()
    finally:
        write_records(STATE)


def load_config() -> dict[str, Any]:
    """The run-config launch overrides that apply to this job, filtered, as a nested dict.

    ``{}`` when the job was not launched by launchbay. Useful where no Run is created (for
    example in data-parallel worker processes).
    """
    kept, dropped = STATE.allowed_run_overrides()
    STATE.warn_ignored(dropped)
    return copy.deepcopy(kept)


manage_wandb_config = manage_config
load_wandb_config = load_config


def _prepared_schema(schema: Any, input_schema: Any) -> Optional[dict[str, Any]]:
    if schema is not None and input_schema is not None:
        raise SdkError("pass the schema as schema= or as input_schema=, not both")
    given = schema if schema is not None else input_schema
    return None if given is None else prepare_schema(given)


def track() -> None:
    """Make sure the records are written once more when the interpreter exits."""
    STATE.register_exit_hook(_at_exit)


def _at_exit() -> None:
    try:
        unmanaged = sorted(set(STATE.file_payload()) - set(STATE.file_specs))
        if unmanaged:
            warn(
                f"ignored overrides for config files the job never passed to manage_config_file: {', '.join(unmanaged)}"
            )
    except SdkError as exc:
        warn(str(exc))
    run = STATE.run
    if run is not None and not run.finished:
        # A job that never calls finish() still gets its last step and its summary written.
        run.metrics.close()
    write_records(STATE)
