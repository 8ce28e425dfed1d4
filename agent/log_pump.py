"""Copies a running container's output into its :class:`~launchbay.agent.logs.JobLog`, on its own thread."""

from __future__ import annotations

import logging
import threading
from typing import Optional

from launchbay.agent.logs import JobLog, LineSplitter
from launchbay.agent.runtime import ContainerGoneError, LogStream, Runtime

from launchbay.errors import DockerUnavailableError

logger = logging.getLogger(__name__)


class LogPump:
    """Copies a container's output into its :class:`JobLog` on a thread.

    ``skip_lines`` lines are read and dropped first: a pump restarted after the engine came back
    reads the output from the beginning again.

    docker's follow stream can end before the container's last message reaches it (seen on
    20.10 for a final line without a newline, about one run in three), so once the container has
    exited :meth:`finish` reads again from the last timestamp seen, without following, and only
    then writes out a last partial line.
    """

    def __init__(self, runtime: Runtime, container_id: str, job_log: JobLog, *, skip_lines: int = 0) -> None:
        self.runtime = runtime
        self.container_id = container_id
        self.job_log = job_log
        self.lines_seen = 0
        self.error: Optional[BaseException] = None
        self._skip = skip_lines
        self._splitter = LineSplitter()
        self._last_timestamp = ""
        self._chunks_at_last_timestamp = 0
        self._stream: Optional[LogStream] = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"logs-{container_id[:12]}", daemon=True)

    def start(self) -> LogPump:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading now, leaving a partial last line unread (a later reader gets it whole)."""
        self._stopping.set()
        self._close_stream()
        self._thread.join(5)

    def finish(self, timeout_s: float) -> None:
        """After the container exited: wait for the stream's end, read what it missed, write the last line."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("the output of container %s did not end with it; stopped reading", self.container_id[:12])
            self._stopping.set()
            self._close_stream()
            self._thread.join(5)
        if self.error is None and not self.job_log.full:
            self._catch_up()
        for text in self._splitter.flush():
            self._emit(text)

    def _run(self) -> None:
        try:
            self._stream = self.runtime.stream_logs(self.container_id)
            if self._stopping.is_set():
                return
            for timestamp, data in self._stream:
                self._feed(timestamp, data)
                if self._stopping.is_set() or self.job_log.full:
                    return
        except (DockerUnavailableError, ContainerGoneError) as exc:
            self.error = exc
        except Exception as exc:  # the watcher must outlive any surprise from the stream
            logger.exception("reading the output of container %s failed", self.container_id[:12])
            self.error = exc
        finally:
            self._close_stream()

    def _catch_up(self) -> None:
        skip_at_last = self._chunks_at_last_timestamp
        try:
            stream = self.runtime.stream_logs(self.container_id, since=self._last_timestamp or None, follow=False)
            for timestamp, data in stream:
                if timestamp and timestamp < self._last_timestamp:
                    continue
                if timestamp and timestamp == self._last_timestamp and skip_at_last > 0:
                    skip_at_last -= 1
                    continue
                self._feed(timestamp, data)
        except (DockerUnavailableError, ContainerGoneError) as exc:
            logger.warning("could not read the end of container %s's output: %s", self.container_id[:12], exc)

    def _feed(self, timestamp: str, data: bytes) -> None:
        if timestamp > self._last_timestamp:
            self._last_timestamp, self._chunks_at_last_timestamp = timestamp, 1
        elif timestamp == self._last_timestamp:
            self._chunks_at_last_timestamp += 1
        for text in self._splitter.feed(data):
            self._emit(text)

    def _emit(self, text: str) -> None:
        self.lines_seen += 1
        if self.lines_seen > self._skip:
            self.job_log.add_line(text)

    def _close_stream(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.close()
