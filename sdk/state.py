"""Process-wide state: what the job declared with ``manage_*``, the payload, and the current Run.

Like W&B's staged launch inputs, declarations may come before or after ``init()``, so they
live here rather than on a Run. The payload is read once, on first use, never at import.
"""

from __future__ import annotations

import atexit
import os
from typing import Any, Mapping, Optional

from . import payload
from .console import warn
from .errors import InputValidationError
from .filtering import filter_tree, flatten
from .paths import KeyPath, join_path
from .validation import find_violations


class InputSpec:
    """The inputs declared for the run config or for one config file: prefixes, schema, types."""

    def __init__(self) -> None:
        self.include: list[str] = []
        self.exclude: list[str] = []
        self.include_paths: list[KeyPath] = []
        self.exclude_paths: list[KeyPath] = []
        self.schema: Optional[dict[str, Any]] = None
        #: Set for a config file when it is declared; the run config's are computed when recorded.
        self.types: dict[str, Any] = {}

    def extended(self, include: tuple, exclude: tuple, schema: Optional[dict[str, Any]]) -> InputSpec:
        """A copy with more prefixes (each ``(texts, paths)``); a given schema replaces the old one."""
        spec = InputSpec()
        spec.include, spec.include_paths = _union(self.include, self.include_paths, *include)
        spec.exclude, spec.exclude_paths = _union(self.exclude, self.exclude_paths, *exclude)
        spec.schema = self.schema if schema is None else schema
        return spec

    def split(self, tree: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """``(the allowed part of tree, dotted paths of the leaves it drops)``."""
        return filter_tree(tree, self.include_paths, self.exclude_paths)

    def check(self, overrides: dict[str, Any], where: str) -> None:
        """Raise :class:`InputValidationError` listing every override value the schema rejects."""
        if self.schema is not None:
            violations = find_violations(self.schema, overrides)
            if violations:
                raise InputValidationError(where, violations)

    def record(self) -> dict[str, Any]:
        """This spec in the shape of ``inputs.json``."""
        return {"include": self.include, "exclude": self.exclude, "types": self.types, "schema": self.schema}


def _union(texts: list[str], paths: list[KeyPath], new_texts: list[str], new_paths: list[KeyPath]) -> tuple:
    texts, paths = list(texts), list(paths)
    for text, path in zip(new_texts, new_paths):
        if text not in texts:
            texts.append(text)
            paths.append(path)
    return texts, paths


class State:
    """Everything the SDK remembers for the life of the process."""

    def __init__(self) -> None:
        #: None until ``manage_config`` is called.
        self.run_config_spec: Optional[InputSpec] = None
        #: Keyed by the normalized relative path.
        self.file_specs: dict[str, InputSpec] = {}
        self.run: Any = None
        self._run_config_payload: Optional[dict[str, Any]] = None
        self._file_payload: Optional[dict[str, Any]] = None
        self._last_ignored: Optional[frozenset] = None
        #: The spec used when nothing was declared: the whole run config is the input.
        self._everything = InputSpec()
        #: ``(spec, result)`` of the last filtering; specs are replaced, never changed, on each call.
        self._allowed: Optional[tuple[Optional[InputSpec], tuple]] = None
        #: Text last written per record file, so unchanged records are not rewritten.
        self.written: dict[str, str] = {}
        self.exit_hook: Any = None

    def run_config_payload(self) -> dict[str, Any]:
        """The run-config overrides the job was launched with, unfiltered (read once)."""
        if self._run_config_payload is None:
            self._run_config_payload = payload.read_run_config()
        return self._run_config_payload

    def file_payload(self) -> dict[str, Any]:
        """The config-file overrides, keyed by normalized relative path (read once)."""
        if self._file_payload is None:
            raw = payload.read_file_overrides()
            self._file_payload = {os.path.normpath(name): value for name, value in raw.items()}
        return self._file_payload

    def run_config_inputs(self) -> Optional[InputSpec]:
        """The run config's input spec; None when it is not an input at all.

        Without any ``manage_*`` call the whole run config is the input (W&B's legacy
        behaviour); ``manage_config_file`` alone makes the run config no input.
        """
        if self.run_config_spec is not None:
            return self.run_config_spec
        return None if self.file_specs else self._everything

    def allowed_run_overrides(self) -> tuple[dict[str, Any], list[str]]:
        """``(run-config overrides that apply, dotted paths of those ignored)``; shared, do not mutate."""
        spec = self.run_config_inputs()
        if self._allowed is None or self._allowed[0] is not spec:
            overrides = self.run_config_payload()
            if spec is None:
                result: tuple = ({}, [join_path(parts) for parts in flatten(overrides)])
            else:
                result = spec.split(overrides)
            self._allowed = (spec, result)
        return self._allowed[1]

    def apply_run_overrides(self) -> None:
        """Validate the run-config overrides that apply and put them into the active Run, if any.

        The warning about ignored overrides is given only once a Run takes them (or from
        ``load_config``): before that, a later ``manage_config`` call may still admit them.
        """
        kept, dropped = self.allowed_run_overrides()
        spec = self.run_config_inputs()
        if spec is not None:
            spec.check(kept, "the run config")
        if self.run is not None and not self.run.finished:
            self.warn_ignored(dropped)
            self.run.config._set_overrides(flatten(kept))

    def warn_ignored(self, dropped: list[str], where: str = "") -> None:
        """One warning line naming all ignored override keys; not repeated for the same run-config set."""
        if not dropped:
            return
        if not where:
            if frozenset(dropped) == self._last_ignored:
                return
            self._last_ignored = frozenset(dropped)
        suffix = f" in {where}" if where else ""
        warn(f"ignored overrides outside the job's inputs{suffix}: {', '.join(dropped)}")

    def register_exit_hook(self, hook: Any) -> None:
        """Run ``hook`` at interpreter exit, once per process."""
        if self.exit_hook is None:
            self.exit_hook = hook
            atexit.register(hook)


STATE = State()


def reset() -> None:
    """Forget every declaration, the cached payload and the Run (for tests of this process)."""
    if STATE.exit_hook is not None:
        atexit.unregister(STATE.exit_hook)
    STATE.__init__()
