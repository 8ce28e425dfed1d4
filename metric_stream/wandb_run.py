"""Following an unchanged W&B job's own run: its logged steps and summary, read with W&B's reader.

A job that keeps ``import wandb`` logs into W&B's run folder, which the agent points inside the job's
output folder (``WANDB_DIR``, ``agent/wandb_env.py``): ``<output>/wandb/[offline-]run-<time>-<id>/
run-<id>.wandb``, a LevelDB-style log of ``wandb_internal_pb2.Record`` protobufs. :class:`WandbRun`
reads it with W&B's own reader (``wandb.sdk.internal.datastore`` from the ``wandb`` package on the
agent's host, the ``launchbay[wandb]`` extra) and turns each ``history`` record into one
metrics.jsonl-shaped line and the ``summary`` records into a summary, which
:class:`~launchbay.metric_stream.follower.JobMetrics` then handles exactly as it handles a ``launchbay.wandb``
job's files (caps, resume, the stream).

The folders and the file are the job's, so untrusted: each level is opened without following
symlinks (a ``wandb`` link out of the output folder is not followed), only a regular file is read,
a record that is not complete yet is read again at the next poll, and a corrupt one stops the
reading with one problem line. Only the first W&B run a job starts is followed (a second ``init``
would count its steps from 0 again).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from launchbay.metric_stream.job_file import MAX_LINE_BYTES

logger = logging.getLogger(__name__)

#: The folder W&B makes under ``WANDB_DIR``.
RUNS_FOLDER = "wandb"
_RUN_DIR = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-([A-Za-z0-9]+)\Z")
#: The most records one poll reads, so a poll of a large file stays short.
RECORDS_PER_POLL = 5000
#: The step keys W&B adds to every history row that launchbay's lines carry too.
_STEP_KEYS = ("_step", "_timestamp", "_runtime")
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)

NO_READER = (
    "this job logs with W&B (its run is in {where}), but the agent's host has no W&B reader "
    "({why}), so its wandb.log steps are not in launchbay: install launchbay[wandb] on the agent's host"
)
_warned_no_reader = False


def load_reader() -> Tuple[Any, Any, Optional[str]]:
    """``(datastore module, wandb_internal_pb2 module, None)``, or ``(None, None, why)`` without them."""
    try:
        from wandb.proto import wandb_internal_pb2
        from wandb.sdk.internal import datastore
    except ImportError as exc:  # not installed, or a wandb that no longer ships the Python reader
        return None, None, f"import {exc.name or 'wandb'} failed: {exc}"
    return datastore, wandb_internal_pb2, None


def first_run_file(output_dir: Path) -> Optional[Tuple[str, int]]:
    """``(relative path, open fd)`` of the first W&B run's ``.wandb`` file in ``output_dir``, or None.

    Every level is opened with O_NOFOLLOW, so a job cannot point the agent outside its folder.
    """
    fds: List[int] = []
    try:
        fds.append(os.open(output_dir, _DIR_FLAGS))
        fds.append(os.open(RUNS_FOLDER, _DIR_FLAGS, dir_fd=fds[-1]))
        runs = sorted(
            (match.group(1), name, match.group(2)) for name in os.listdir(fds[-1]) if (match := _RUN_DIR.match(name))
        )
        if not runs:
            return None
        _time, name, run_id = runs[0]
        fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
        fd = os.open(f"run-{run_id}.wandb", _FILE_FLAGS, dir_fd=fds[-1])
    except OSError:
        return None
    finally:
        for opened in fds:
            os.close(opened)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return f"{RUNS_FOLDER}/{name}/run-{run_id}.wandb", fd


def _key(item: Any) -> str:
    # W&B splits a nested logged dict into nested_key; launchbay's lines name it "a/b".
    return "/".join(item.nested_key) if len(item.nested_key) else item.key


def _value(value_json: str) -> Tuple[bool, Any]:
    """``(usable, value)`` of one W&B ``value_json``; bare NaN/Infinity become the strings launchbay's lines use."""
    try:
        return True, json.loads(value_json, parse_constant=str)
    except ValueError:  # empty or not JSON
        return False, None


class WandbRun:
    """One job's W&B run file, read as it grows: metrics lines (:meth:`read_lines`) and :attr:`summary`."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self.path: Optional[str] = None  # relative to the output folder, once found
        self.problem: Optional[str] = None  # why it cannot be read, once
        self.skipped_values = 0  # values that are not a number, text, bool or null (media, tables)
        self.long_rows = 0  # history rows longer than MAX_LINE_BYTES as a line, skipped as metrics.jsonl's are
        self.summary: Dict[str, Any] = {}
        self._store: Any = None
        self._pb2: Any = None
        self._handle: Any = None
        self._fd: Optional[int] = None
        self._header_read = False

    def read_lines(self) -> List[bytes]:
        """The history rows written since the last call, as JSON lines (no newline)."""
        if self.problem is not None or not self._open():
            return []
        lines: List[bytes] = []
        for _ in range(RECORDS_PER_POLL):
            data = self._next_record()
            if data is None:
                break
            record = self._pb2.Record()
            try:
                record.ParseFromString(data)
            except Exception as exc:  # protobuf's DecodeError; a bad record stops the reading
                self._fail(f"a record of {self.path} is not W&B's: {exc}")
                break
            kind = record.WhichOneof("record_type")
            if kind == "history":
                line = self._history_line(record.history)
                if line is not None:
                    lines.append(line)
            elif kind == "summary":
                self._apply_summary(record.summary)
        return lines

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    # -- internals ---------------------------------------------------------------------------------

    def locate(self) -> bool:
        """Whether the job has started a W&B run (its file is then held open for reading)."""
        if self._fd is None and self._handle is None:
            found = first_run_file(self.output_dir)
            if found is not None:
                self.path, self._fd = found
        return self.path is not None

    def _open(self) -> bool:
        if self._handle is not None:
            return True
        if not self.locate():
            return False
        fd, self._fd = self._fd, None
        datastore, pb2, why = load_reader()
        if datastore is None:
            os.close(fd)
            self._fail(NO_READER.format(where=self.path, why=why))
            global _warned_no_reader
            if not _warned_no_reader:  # the agent's own log says it once; each job's log says it too
                _warned_no_reader = True
                logger.warning("%s", self.problem)
            return False
        self._pb2 = pb2
        self._handle = os.fdopen(fd, "rb")
        self._store = _Scanner(datastore.DataStore, self._handle)
        return True

    def _next_record(self) -> Optional[bytes]:
        """One record's bytes, or None at the end of what is complete (read again from there next time)."""
        store = self._store
        start = store.offset()
        try:
            if not self._header_read:
                store.read_header()
                self._header_read = True
                start = store.offset()
            data = store.scan_data()
        except AssertionError:  # W&B's reader asserts on a record cut short: still being written
            data = None
        except Exception as exc:  # a wrong header: not a W&B run file
            self._fail(f"cannot read {self.path}: {exc}")
            return None
        if data is None:
            store.seek(start)
        return data

    def _history_line(self, history: Any) -> Optional[bytes]:
        row: Dict[str, Any] = {}
        for item in history.item:
            key = _key(item)
            if key.startswith("_") and key not in _STEP_KEYS:
                continue  # W&B's own bookkeeping (_wandb...)
            usable, value = _value(item.value_json)
            if usable and not isinstance(value, (dict, list)):
                row[key] = value
            else:
                self.skipped_values += 1
        row["_step"] = history.step.num if history.HasField("step") else row.get("_step")
        if not isinstance(row["_step"], int):
            return None
        line = json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(line) > MAX_LINE_BYTES:
            self.long_rows += 1
            return None
        return line

    def _apply_summary(self, summary: Any) -> None:
        for item in summary.update:
            key = _key(item)
            usable, value = _value(item.value_json)
            # Media and tables are dicts W&B marks with "_type": not a summary value here.
            if key.startswith("_") or not usable or (isinstance(value, dict) and "_type" in value):
                continue
            self.summary[key] = value
        for item in summary.remove:
            self.summary.pop(_key(item), None)

    def _fail(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem
        self.close()


class _Scanner:
    """W&B's ``DataStore`` reading an already opened file (the agent opens it, without following links)."""

    def __init__(self, store_class: Any, handle: Any) -> None:
        self.store = store_class()
        # W&B's open_for_scan would reopen the path read-write; hand it the safe handle instead.
        self.store._fp = handle
        self.store._fname = getattr(handle, "name", "")
        self.store._opened_for_scan = True
        self.store._index = 0

    def read_header(self) -> None:
        self.store._read_header()

    def offset(self) -> int:
        return self.store._fp.tell()

    def seek(self, offset: int) -> None:
        self.store.seek(offset)

    def scan_data(self) -> Optional[bytes]:
        return self.store.scan_data()
