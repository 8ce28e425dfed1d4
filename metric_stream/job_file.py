"""Reading what a job writes to its output folder, as the untrusted input it is.

:class:`MetricsFile` gives the complete lines of a growing file (the job's ``metrics.jsonl``)
without ever blocking on it: the file is opened without following symlinks and with O_NONBLOCK, and
only a regular file is read (a FIFO or a device is refused); a line longer than
:data:`MAX_LINE_BYTES` is skipped whole, and a file replaced or shortened is read again from its
start. :func:`read_summary` reads ``summary.json`` under the same rules, bounded in size.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from launchbay.sdk.payload import SUMMARY_FILE

#: A line longer than this is skipped whole: no metrics step is that large, and it caps memory.
MAX_LINE_BYTES = 64 * 1024
#: The most the agent reads of ``summary.json``.
SUMMARY_LIMIT_BYTES = 256 * 1024
#: Read per system call, and at most this many per poll, so one poll of a huge file stays short.
CHUNK_BYTES = 1 << 20
CHUNKS_PER_POLL = 8
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


def open_regular(path: Path) -> Tuple[int, os.stat_result]:
    """An fd on ``path`` if it is a regular file (no symlink followed, no blocking open); else OSError/ValueError."""
    fd = os.open(path, _OPEN_FLAGS)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError("not a regular file")
    return fd, info


def parse_object(text: str) -> Tuple[Optional[Dict[str, Any]], bool]:
    """``(object or None, whether it held a bare NaN/Infinity)``.

    Python's json reads bare ``NaN``/``Infinity``, which no browser's JSON.parse does: they become
    the strings the contract writes instead ("NaN", "Infinity", "-Infinity").
    """
    seen = []

    def constant(name: str) -> str:
        seen.append(name)
        return name

    try:
        value = json.loads(text, parse_constant=constant)
    except ValueError:
        return None, False
    return (value if isinstance(value, dict) else None), bool(seen)


def read_summary(output_dir: Path) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(summary, problem)`` from ``summary.json``; both None when the job wrote none."""
    path = Path(output_dir) / SUMMARY_FILE
    if not os.path.lexists(path):
        return None, None
    try:
        fd, info = open_regular(path)
        with os.fdopen(fd, "rb") as handle:
            if info.st_size > SUMMARY_LIMIT_BYTES:
                raise ValueError(f"larger than {SUMMARY_LIMIT_BYTES} bytes")
            data = handle.read(SUMMARY_LIMIT_BYTES + 1)
        summary, _ = parse_object(data.decode("utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        return None, f"ignored {SUMMARY_FILE} from the job's output folder: {exc}"
    if summary is None:
        return None, f"ignored {SUMMARY_FILE} from the job's output folder: not a JSON object"
    return summary, None


class MetricsFile:
    """Complete lines of one growing file, read without blocking and without holding more than a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: Optional[str] = None  # why the file cannot be read, once
        self.restarts = 0  # times the file was replaced or shortened and read again from its start
        self.long_lines = 0
        self._fd: Optional[int] = None
        self._ident: Tuple[int, int] = (0, 0)
        self._offset = 0
        self._pending = bytearray()
        self._skipping = False  # inside a line longer than MAX_LINE_BYTES

    def read_lines(self, max_chunks: int = CHUNKS_PER_POLL) -> List[bytes]:
        """The complete lines written since the last call (at most ``max_chunks`` reads' worth)."""
        if not self._check_open():
            return []
        lines: List[bytes] = []
        for _ in range(max_chunks):
            try:
                data = os.pread(self._fd, CHUNK_BYTES, self._offset)
            except OSError as exc:
                self._fail(f"cannot read {self.path.name}: {exc}")
                break
            if not data:
                break
            self._offset += len(data)
            lines.extend(self._split(data))
        return lines

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _check_open(self) -> bool:
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return self._fd is not None  # not written yet, or removed: keep what is open
        ident = (now.st_dev, now.st_ino)
        if self._fd is not None and ident == self._ident and now.st_size >= self._offset:
            return True
        if self._fd is not None:
            self.restarts += 1
            self.close()
        try:
            self._fd, info = open_regular(self.path)
        except (OSError, ValueError) as exc:
            self._fail(f"cannot read {self.path.name}: {exc}")
            return False
        self._ident = (info.st_dev, info.st_ino)
        self._offset, self._pending, self._skipping = 0, bytearray(), False
        return True

    def _split(self, data: bytes) -> List[bytes]:
        lines = []
        start = 0
        while True:
            newline = data.find(b"\n", start)
            piece = data[start:] if newline < 0 else data[start:newline]
            if not self._skipping:
                self._pending += piece
            if len(self._pending) > MAX_LINE_BYTES:
                self._pending, self._skipping = bytearray(), True
                self.long_lines += 1
            if newline < 0:
                return lines
            if not self._skipping:
                lines.append(bytes(self._pending))
            self._pending, self._skipping = bytearray(), False
            start = newline + 1

    def _fail(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem
        self.close()
