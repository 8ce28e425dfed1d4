"""``run.log``: each committed step as one JSON line in ``$LAUNCHBAY_OUTPUT_DIR/metrics.jsonl``.

The agent streams that file (see docs/payload.md for the contract); ``summary.json`` beside it
holds the last value of each key, or what the job set in ``run.summary``. Step handling follows
W&B's ``run.log``: without ``step`` each call is its own step; with ``step`` values gather until
the step moves on (or ``commit=True``); a step lower than the current one is ignored with a
warning.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from . import payload
from .console import warn
from .errors import SdkError
from .record import write_text_atomic

METRICS_FILE = payload.METRICS_FILE
SUMMARY_FILE = payload.SUMMARY_FILE
#: summary.json is rewritten at most this often while logging (and always at finish).
SUMMARY_INTERVAL_S = 1.0
_RESERVED = "_"


def flatten_metrics(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become ``"train/loss"`` keys, as in W&B's history."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def json_value(value: Any) -> tuple[bool, Any]:
    """``(usable, value)``: a JSON number, string, bool or null; NaN/Infinity as strings; else float()."""
    if value is None or isinstance(value, (bool, str, int)):
        return True, value
    if not isinstance(value, float):
        try:
            value = float(value)  # numpy scalars, 0-d tensors
        except (TypeError, ValueError):
            return False, None
    if math.isnan(value):
        return True, "NaN"
    if math.isinf(value):
        return True, "Infinity" if value > 0 else "-Infinity"
    return True, value


class Summary(MutableMapping):
    """``run.summary``: the last logged value of each key unless the job set it here."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._logged: dict[str, Any] = {}
        self._set: dict[str, Any] = {}
        self._on_change = on_change

    def __getitem__(self, key: str) -> Any:
        return self._set[key] if key in self._set else self._logged[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._set[key] = value
        self._on_change()

    def __delitem__(self, key: str) -> None:
        found = self._set.pop(key, None) is not None
        if self._logged.pop(key, None) is None and not found:
            raise KeyError(key)
        self._on_change()

    def __iter__(self) -> Iterator[str]:
        return iter({**self._logged, **self._set})

    def __len__(self) -> int:
        return len({**self._logged, **self._set})

    def __repr__(self) -> str:
        return f"Summary({self.as_dict()!r})"

    def as_dict(self) -> dict[str, Any]:
        return {**self._logged, **self._set}


class MetricsLog:
    """The metrics of one Run: pending step, step counter, summary, and the two files."""

    def __init__(self, folder: Optional[Path] = None) -> None:
        self.folder = folder if folder is not None else payload.output_dir()
        self.started = time.time()
        self.step = 0
        self.pending: dict[str, Any] = {}
        self.summary = Summary(self._summary_changed)
        self._warned: set[str] = set()
        self._summary_written_at = 0.0
        self._summary_dirty = False

    def log(self, data: Mapping[str, Any], step: Optional[int] = None, commit: Optional[bool] = None) -> None:
        """Add ``data`` to the current step and commit it as W&B does (see the module docstring)."""
        if not isinstance(data, Mapping):
            raise SdkError(f"log() takes a dict of metrics, got {type(data).__name__}")
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, int):
                raise SdkError(f"log(step=...) must be an integer, got {step!r}")
            if step < self.step:
                warn(f"log(step={step}) ignored: the current step is already {self.step}")
                return
            if step > self.step:
                self.commit()
                self.step = step
        self.pending.update(self._clean(flatten_metrics(data)))
        if commit or (commit is None and step is None):
            self.commit()

    def commit(self) -> None:
        """Write the pending values as one line for the current step, then move to the next step."""
        if not self.pending:
            return
        now = time.time()
        line = {"_step": self.step, "_timestamp": now, "_runtime": now - self.started, **self.pending}
        self.summary._logged.update(self.pending)
        self.pending = {}
        self.step += 1
        self._append(json.dumps(line, ensure_ascii=False, allow_nan=False))
        self._summary_dirty = True
        if now - self._summary_written_at >= SUMMARY_INTERVAL_S:
            self.write_summary()

    def close(self) -> None:
        """Commit what is pending and write the summary (at finish and at exit)."""
        self.commit()
        if self._summary_dirty:
            self.write_summary()

    def write_summary(self) -> None:
        self._summary_written_at = time.time()
        self._summary_dirty = False
        if self.folder is None:
            return
        document = {key: _summary_value(value) for key, value in self.summary.as_dict().items()}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.folder / SUMMARY_FILE, json.dumps(document, ensure_ascii=False, default=str) + "\n")
        except OSError as exc:
            warn(f"cannot write {SUMMARY_FILE} in {self.folder}: {exc}")

    def _summary_changed(self) -> None:
        self._summary_dirty = True

    def _clean(self, flat: dict[str, Any]) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for key, value in flat.items():
            usable, converted = json_value(value)
            if key.startswith(_RESERVED):
                self._warn_once(key, f"log key {key!r} dropped: keys starting with '_' are reserved")
            elif not usable:
                self._warn_once(
                    key, f"log key {key!r} dropped: a value of type {type(value).__name__} is not a number or text"
                )
            else:
                clean[key] = converted
        return clean

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warn(message)

    def _append(self, line: str) -> None:
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / METRICS_FILE, "a", encoding="utf-8") as stream:
                stream.write(line + "\n")
        except OSError as exc:
            # Losing metrics must not kill a training run.
            self._warn_once("\0io", f"cannot write {METRICS_FILE} in {self.folder}: {exc}")


def _summary_value(value: Any) -> Any:
    usable, converted = json_value(value)
    return converted if usable else value  # lists and dicts the job set; anything else as its text
