"""A job's output: split into lines, capped, and written to its Redis stream and to a file on the host.

- Redis: the STREAM ``keys.job_log(job_id)``, one entry ``{"line": text}`` per line. Each line
  counts its UTF-8 bytes plus one (the newline) against ``cap_bytes``; the line that would cross
  the cap is replaced by one truncation entry, and nothing follows it but ``{"eof": state}``.
  ``XADD MAXLEN ~`` is a second guard in case of a bug here.
- File: ``<state_dir>/logs/<job_id>.log``, the same lines, capped at ``file_cap_bytes`` (by
  default four times the Redis cap) with a truncation note, so a job that prints 1 GB cannot fill
  the disk. A folder that cannot be written gives one warning and the job runs on.
- Lines written by the agent itself (pull progress, warnings, why a job ended) start with
  ``[launchbay] `` and are only written before the container starts and after it ends, so that a
  restarted agent can count the container lines already copied (see :meth:`JobLog.resume`).

Writes happen in batches on a background thread: a chatty job costs one Redis round trip per
batch, not per line, and the thread reading the container never waits on Redis.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Deque, List, Optional, Tuple

import redis
from launchbay.queue_config import logstream
from launchbay.redis_connection.connect import retry_transient

from launchbay.text import as_text

logger = logging.getLogger(__name__)

AGENT_PREFIX = "[launchbay] "
TRUNCATED_PREFIX = AGENT_PREFIX + "log truncated"
#: Lines longer than this are cut into pieces, so one endless line cannot hold memory.
MAX_LINE_BYTES = 64 * 1024
FILE_CAP_FACTOR = 4
#: Lines kept in memory for messages like "exited with code 1: <last line>".
TAIL_LINES = 5
_BATCH_LINES = 500
#: Output waiting to be written, beyond which the reader of the container's output waits for the
#: writer (Redis slow or away): the rest stays in docker's log meanwhile, not in the agent's memory.
MAX_PENDING_CHARS = 32 << 20
#: How long a batch of lines waits for a Redis that stopped answering before it is given up.
REDIS_RETRY_S = 60.0
#: Container labels holding :meth:`JobLog.position` at container start, read back on adoption.
LOG_STREAM_LABEL = "launchbay.log_stream_after"
LOG_FILE_LABEL = "launchbay.log_file_offset"


def line_cost(text: str) -> int:
    """Bytes a line counts against the cap: its UTF-8 length plus the newline."""
    return len(text.encode("utf-8")) + 1


class LineSplitter:
    """Bytes in, text lines out: partial lines wait for their newline, invalid UTF-8 becomes U+FFFD.

    A carriage return keeps only what follows it on the line (what a terminal shows for progress
    bars). Deterministic, so that reading the same output twice gives the same lines.
    """

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> List[str]:
        self._pending += chunk
        lines = []
        while True:
            newline = self._pending.find(b"\n", 0, MAX_LINE_BYTES + 1)
            if newline >= 0:
                raw, cut = self._pending[:newline], newline + 1
            elif len(self._pending) > MAX_LINE_BYTES:
                raw, cut = self._pending[:MAX_LINE_BYTES], MAX_LINE_BYTES
            else:
                return lines
            del self._pending[:cut]
            lines.append(self._decode(bytes(raw)))

    def flush(self) -> List[str]:
        """The last line when the output ended without a newline."""
        if not self._pending:
            return []
        raw, self._pending = bytes(self._pending), bytearray()
        return [self._decode(raw)]

    @staticmethod
    def _decode(raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        if "\r" in text:
            text = text.rsplit("\r", 1)[-1]
        return text


class _FileSink:
    """The capped log file; gives up (one warning) when the folder cannot be written."""

    def __init__(self, path: Path, cap_bytes: int) -> None:
        self.path = path
        self.cap_bytes = cap_bytes
        self.size = 0
        self.truncated = False
        self._handle: Any = None
        self._broken = False

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "ab")  # noqa: SIM115 (kept open for the job's life)
            self.size = self._handle.tell()
        except OSError as exc:
            self._give_up(exc)

    def write(self, lines: List[str]) -> None:
        if self._handle is None or self.truncated:
            return
        out = bytearray()
        for text in lines:
            data = text.encode("utf-8") + b"\n"
            if self.size + len(out) + len(data) > self.cap_bytes:
                out += f"{TRUNCATED_PREFIX} at {self.cap_bytes} bytes (log file cap)\n".encode()
                self.truncated = True
                break
            out += data
        try:
            self._handle.write(out)
            self._handle.flush()
            self.size += len(out)
        except OSError as exc:
            self._give_up(exc)

    @property
    def done(self) -> bool:
        """True when nothing more will be written (capped, or the file cannot be written)."""
        return self.truncated or self._handle is None

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    def _give_up(self, exc: OSError) -> None:
        if not self._broken:
            logger.warning("cannot write the job log file %s (%s); the log goes to Redis only", self.path, exc)
        self._broken = True
        self.close()


def _unchanged(text: str) -> str:
    return text


class JobLog:
    """One job's log, shared by the agent (notes) and the container's output (lines)."""

    def __init__(
        self,
        conn: redis.Redis,
        stream_key: str,
        file_path: Path,
        *,
        cap_bytes: int,
        file_cap_bytes: Optional[int] = None,
    ) -> None:
        self.conn = conn
        self.stream_key = stream_key
        self.cap_bytes = cap_bytes
        self.redis_bytes = 0
        self.redis_truncated = False
        self.tail: Deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._file = _FileSink(file_path, file_cap_bytes or FILE_CAP_FACTOR * cap_bytes)
        self._file.open()
        self._maxlen = cap_bytes + 16  # each entry costs at least one byte
        self._skip_redis = 0
        self._skip_file = 0
        self._queue: List[Tuple[str, bool, bool]] = []  # (text, to redis, to file)
        self._pending_chars = 0
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._redis_failed = False
        self._lines_lost = False
        #: Applied to each container line before it is kept anywhere (the agent hides secret values).
        self.redact: Callable[[str], str] = _unchanged
        self._writer = threading.Thread(target=self._write_loop, name=f"log-{file_path.stem}", daemon=True)
        self._writer.start()

    @property
    def file_path(self) -> Path:
        return self._file.path

    @property
    def full(self) -> bool:
        """True once both the stream and the file are capped: more output would go nowhere."""
        return self.redis_truncated and self._file.done

    def note(self, text: str) -> None:
        """A line from the agent itself, prefixed ``[launchbay] ``."""
        self._put(AGENT_PREFIX + text, True, True)

    def add_line(self, text: str) -> None:
        """One line of the container's output (skipped by a sink that already holds it, after a resume)."""
        text = self.redact(text)
        to_redis = self._skip_redis == 0
        to_file = self._skip_file == 0
        self._skip_redis = max(0, self._skip_redis - 1)
        self._skip_file = max(0, self._skip_file - 1)
        self.tail.append(text)
        if to_redis or to_file:
            self._put(text, to_redis, to_file)

    def position(self) -> Tuple[str, int]:
        """``(last stream id, file size)`` after everything queued so far is written: where container output starts."""
        self.flush()
        last = self.last_entry()
        return (last[0] if last else "0-0"), self._file.size

    def resume(self, stream_after: Optional[str], file_offset: Optional[int]) -> None:
        """After an agent restart: count what the stream and the file already hold of the container's output.

        ``stream_after`` and ``file_offset`` are :meth:`position` as it was when the container
        started (the supervisor keeps them in the container's labels). The next lines given to
        :meth:`add_line` are then skipped by each sink until it catches up.
        """
        container_lines = 0
        for entry_id, fields in self.conn.xrange(self.stream_key):
            fields = {as_text(k): as_text(v) for k, v in fields.items()}
            if logstream.is_eof(fields):  # an earlier attempt of the job (requeued) ended here: start counting again
                container_lines, self.redis_bytes, self.redis_truncated = 0, 0, False
                continue
            text = fields.get(logstream.LINE)
            if text is None:
                continue
            self.redis_bytes += line_cost(text)
            if text.startswith(TRUNCATED_PREFIX):
                self.redis_truncated = True
            elif stream_after is not None:
                container_lines += _stream_id_after(as_text(entry_id), stream_after)
            else:  # no position recorded: count the lines that are not the agent's
                container_lines += not text.startswith(AGENT_PREFIX)
        self._skip_redis = container_lines
        self._skip_file = self._count_file_lines(file_offset or 0)

    def flush(self) -> None:
        """Block until everything queued so far is written."""
        with self._cond:
            while (self._queue or self._busy) and self._writer.is_alive():
                self._cond.wait(0.1)

    def close(self, eof: Optional[str] = None) -> None:
        """Write what is queued, then ``{"eof": eof}`` when given; stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._writer.join()
        if eof is not None:
            self._xadd(logstream.eof_entry(eof))
        self._file.close()

    # -- internals ---------------------------------------------------------------------------------

    def _put(self, text: str, to_redis: bool, to_file: bool) -> None:
        with self._cond:
            while self._pending_chars > MAX_PENDING_CHARS and not self._closed and self._writer.is_alive():
                self._cond.wait(0.5)
            self._queue.append((text, to_redis, to_file))
            self._pending_chars += len(text)
            self._cond.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                batch, self._queue = self._queue[:_BATCH_LINES], self._queue[_BATCH_LINES:]
                self._pending_chars -= sum(len(text) for text, _, _ in batch)
                self._busy = True
            try:
                self._write_redis([text for text, to_redis, _ in batch if to_redis])
                self._file.write([text for text, _, to_file in batch if to_file])
            except Exception:  # a log write must never take the job down
                logger.exception("writing the log of %s failed", self.stream_key)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write_redis(self, lines: List[str]) -> None:
        accepted = []
        for text in lines:
            if self.redis_truncated:
                break
            cost = line_cost(text)
            if self.redis_bytes + cost > self.cap_bytes:
                accepted.append(
                    f"{TRUNCATED_PREFIX}: this job printed more than {self.cap_bytes} bytes; "
                    f"the agent's file {self._file.path} holds more"
                )
                self.redis_truncated = True
                break
            self.redis_bytes += cost
            accepted.append(text)
        if accepted:
            self._xadd_many([logstream.line_entry(text) for text in accepted])

    def _xadd(self, fields: dict) -> None:
        self._xadd_many([fields])

    def _xadd_many(self, entries: List[dict]) -> None:
        """Append ``entries`` in one MULTI/EXEC; a Redis that stopped answering or takes no writes (a
        failover; ``connection.is_transient``) is waited for, up to REDIS_RETRY_S."""

        def append() -> None:
            with self.conn.pipeline(transaction=True) as pipe:  # all or nothing, so a retry never doubles lines
                for fields in entries:
                    pipe.xadd(self.stream_key, fields, maxlen=self._maxlen, approximate=True)
                pipe.execute()

        def note(exc: BaseException) -> None:
            if not self._redis_failed:
                logger.warning("cannot write the log stream %s (%s); retrying", self.stream_key, exc)
            self._redis_failed = True

        try:
            retry_transient(append, within_s=REDIS_RETRY_S, on_retry=note)
        except redis.RedisError as exc:
            self._give_up_redis(exc)

    def _give_up_redis(self, exc: Exception) -> None:
        if not self._lines_lost:
            logger.warning("cannot write the log stream %s (%s); lines are lost", self.stream_key, exc)
        self._redis_failed = self._lines_lost = True

    def last_entry(self) -> Optional[Tuple[str, dict]]:
        try:
            found = self.conn.xrevrange(self.stream_key, count=1)
        except redis.RedisError:
            return None
        if not found:
            return None
        entry_id, fields = found[0]
        return as_text(entry_id), {as_text(k): as_text(v) for k, v in fields.items()}

    def _count_file_lines(self, offset: int) -> int:
        path = self._file.path
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return 0
        lines = data.split(b"\n")[:-1]
        if lines and lines[-1].startswith(TRUNCATED_PREFIX.encode()):
            self._file.truncated = True
            lines.pop()
        return len(lines)


def _stream_id_after(entry_id: str, after: str) -> bool:
    def parts(value: str) -> Tuple[int, int]:
        ms, _, seq = value.partition("-")
        return int(ms), int(seq or 0)

    return parts(entry_id) > parts(after)
