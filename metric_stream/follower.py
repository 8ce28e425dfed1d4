"""A job's metrics: ``metrics.jsonl`` from its output folder, streamed to Redis while it runs.

The job (the SDK's ``log``) appends one JSON object per step to ``$LAUNCHBAY_OUTPUT_DIR/metrics.jsonl``
and keeps ``summary.json`` up to date (the contract is in docs/payload.md). On the agent's host that
folder is ``<state_dir>/jobs/<id>/output``. :class:`JobMetrics` follows the file about once a second
and copies each line, as it is, into the STREAM ``keys.job_metrics(id)`` as ``{"m": line}``; when the
job ends it reads the file to its end and returns ``summary.json`` for the record's ``summary``.
Both pass through the job's secret redaction first (names and values): a line that held a queue
secret's value is stored re-encoded with ``***`` in its place.

The file is the job's, so it is untrusted: it is opened without following symlinks and without
blocking (a FIFO or a device is refused, not read), a line longer than :data:`MAX_LINE_BYTES` is
skipped, a file replaced or shortened is read again from its start, and the stream is capped per job
in entries and bytes, ending with one ``{"truncated": why}`` entry; nothing more is read after it.
Lines that are not a JSON object with an integer ``_step`` are skipped (the first of each kind is
noted in the job's log). Nothing waits on the job: reads are of what is there, never blocking.

An unchanged W&B job writes no metrics.jsonl: its steps are in W&B's own run file under the output
folder, which :class:`~launchbay.metric_stream.wandb_run.WandbRun` reads and turns into the same lines,
and its summary stands in for ``summary.json``. The W&B run is the source only when, as it is first
found, the job has written neither metrics.jsonl nor the SDK's ``config.json`` (a ``launchbay.wandb``
job forwarding to an installed ``wandb`` writes both sources; launchbay's own wins).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import redis
from launchbay.metric_stream import entries as metricstream
from launchbay.metric_stream.job_file import MAX_LINE_BYTES, MetricsFile, parse_object, read_summary
from launchbay.metric_stream.wandb_run import WandbRun
from launchbay.queue_config.secrets import redact_tree
from launchbay.sdk.payload import EFFECTIVE_CONFIG_FILE, METRICS_FILE

from launchbay.text import as_text

logger = logging.getLogger(__name__)

FIELD, TRUNCATED_FIELD = metricstream.FIELD, metricstream.TRUNCATED  # the entry format: metric_stream/entries.py
POLL_S = 1.0
_BATCH_ENTRIES = 500
#: How long the last read, when the job ended, waits for a Redis that stopped answering.
FINAL_RETRY_S = 30.0


def _unchanged(text: str) -> str:
    return text


class JobMetrics:
    """One job's metrics stream: a reader thread while the job runs, a last read and the summary at its end.

    Problems (a skipped line, a refused file) are kept in :attr:`problems` and written to the job's
    log only at the end: the log's own resume counting needs the agent to stay silent while the
    container runs.
    """

    def __init__(
        self, conn: redis.Redis, stream_key: str, *, cap_entries: int, cap_bytes: int, poll_s: float = POLL_S
    ) -> None:
        self.conn = conn
        self.stream_key = stream_key
        self.cap_entries = cap_entries
        self.cap_bytes = cap_bytes
        self.poll_s = poll_s
        self.entries = 0
        self.bytes = 0
        self.truncated = False
        self.problems: List[str] = []
        #: ``summary.json`` as :meth:`finish` read it (None: none, or not readable).
        self.summary: Optional[Dict[str, Any]] = None
        #: Hides the queue's secret values from metric names, values and the summary alike, before
        #: anything goes to Redis (:meth:`for_job` ties it to the job log's).
        self.redact: Callable[[str], str] = _unchanged
        self._skip = 0  # lines already in the stream (adoption): read again, not sent again
        self._lines_seen = 0
        self._kinds_noted: set = set()
        self._file: Optional[MetricsFile] = None
        self._wandb: Optional[WandbRun] = None
        self._wandb_chosen: Optional[bool] = None  # whether W&B's run is the source, once decided
        self._unsent: List[Dict[str, str]] = []
        self._redis_warned = False
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def for_job(cls, ctx: Any, job_id: str, *, redact_as: Any = None) -> JobMetrics:
        """The metrics of ``job_id`` with the caps of ``ctx.settings`` (a ``RunContext``).

        ``redact_as`` (the job's ``JobLog``): its ``redact``, whatever it is when a line is read,
        hides secrets here too, so the log and the metrics never disagree on what is secret.
        """
        settings = ctx.settings
        metrics = cls(
            ctx.conn,
            ctx.keys.job_metrics(job_id),
            cap_entries=settings.metrics_cap_entries,
            cap_bytes=settings.metrics_cap_bytes,
        )
        if redact_as is not None:
            metrics.redact = lambda text: redact_as.redact(text)
        return metrics

    def start(self, output_dir: Path, *, resume: bool) -> None:
        """Follow ``output_dir/metrics.jsonl``; ``resume`` keeps what an earlier agent process already sent.

        A fresh start drops the stream of an earlier attempt (a requeued job starts again at step 0).
        Calling it again is a no-op.
        """
        if self._thread is not None:
            return
        if resume:
            try:
                self._resume()
            except redis.RedisError as exc:  # the job runs on; at worst steps are sent twice
                logger.warning("cannot read the metrics stream %s: %s", self.stream_key, exc)
        else:
            self._drop_earlier_attempt()
        self._file = MetricsFile(Path(output_dir) / METRICS_FILE)
        self._wandb = WandbRun(Path(output_dir))
        self._thread = threading.Thread(target=self._run, name=f"metrics-{Path(output_dir).parent.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the agent leaves the job running); what was sent stays."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._file is not None:
            with self._lock:
                self._file.close()
                if self._wandb is not None:
                    self._wandb.close()

    def finish(self, output_dir: Path) -> Optional[Dict[str, Any]]:
        """After the container ended: send the rest of the file, return ``summary.json`` (None if absent or bad).

        For a job whose container never started, the stream of an earlier attempt is dropped.
        """
        if self._thread is None:
            self._drop_earlier_attempt()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._file is not None:
            try:
                with self._lock:
                    self._poll(final=True)
            except Exception:  # a metrics bug must never keep the job's end from being recorded
                logger.exception("reading the last metrics of %s failed", self.stream_key)
            with self._lock:
                self._file.close()
            self._collect_file_problems()
        summary, problem = read_summary(output_dir)
        self.summary = redact_tree(summary, self.redact) if summary is not None else None
        if problem:
            self.problems.append(problem)
        if self.summary is None and self._wandb_chosen and self._wandb is not None and self._wandb.summary:
            self.summary = redact_tree(dict(self._wandb.summary), self.redact)
        return self.summary

    # -- internals ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_s):
            try:
                with self._lock:
                    self._poll(final=False)
            except Exception:  # a metrics bug must never take the job down
                logger.exception("reading the metrics of %s failed", self.stream_key)
                return

    def _poll(self, *, final: bool) -> None:
        """Send what waits, then read and send new lines: one read's worth, or (``final``) up to the end."""
        assert self._file is not None
        while True:
            if self._unsent and not self._send(self._unsent, FINAL_RETRY_S if final else 0.0):
                return  # Redis is away: these lines wait here, the rest waits in the file
            if self.truncated:
                return
            lines = self._read_lines()
            if not lines:
                return
            self._unsent = self._accept(lines)
            if not final:
                self._send(self._unsent, 0.0)
                return

    def _read_lines(self) -> List[bytes]:
        """New lines from metrics.jsonl, or from the W&B run when that is the job's only source."""
        assert self._file is not None and self._wandb is not None
        lines = self._file.read_lines()
        if self._wandb_chosen is None and self._wandb.locate():
            # Decided once W&B's run exists: launchbay.wandb has written config.json before it starts one.
            output = self._file.path.parent
            self._wandb_chosen = not any((output / name).exists() for name in (METRICS_FILE, EFFECTIVE_CONFIG_FILE))
        if self._wandb_chosen:
            lines += self._wandb.read_lines()
        return lines

    def _accept(self, lines: List[bytes]) -> List[Dict[str, str]]:
        out: List[Dict[str, str]] = []
        for raw in lines:
            self._lines_seen += 1
            text = self._valid_text(raw)
            if text is None:
                continue
            if self._skip:
                self._skip -= 1
                continue
            cost = len(text.encode("utf-8")) + 1
            why = self._over_cap(cost)
            if why:
                out.append({TRUNCATED_FIELD: why})
                self.truncated = True
                break
            self.entries += 1
            self.bytes += cost
            out.append({FIELD: text})
        return out

    def _over_cap(self, cost: int) -> Optional[str]:
        if self.entries + 1 > self.cap_entries:
            return f"the job logged more than {self.cap_entries} steps (metrics_cap_entries); later steps are not kept"
        if self.bytes + cost > self.cap_bytes:
            return f"the job's metrics passed {self.cap_bytes} bytes (metrics_cap); later steps are not kept"
        return None

    def _valid_text(self, raw: bytes) -> Optional[str]:
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            return self._skipped("not UTF-8")
        if not text.strip():
            return None
        value, bare_constants = parse_object(text)
        if value is None:
            return self._skipped("not a JSON object")
        step = value.get("_step")
        if not isinstance(step, int) or isinstance(step, bool):
            return self._skipped("no integer _step")
        redacted = redact_tree(value, self.redact)
        if bare_constants or redacted != value:
            text = json.dumps(redacted, separators=(",", ":"), ensure_ascii=False)
        return text

    def _skipped(self, why: str) -> None:
        if why not in self._kinds_noted:
            self._kinds_noted.add(why)
            self.problems.append(f"{METRICS_FILE} line {self._lines_seen} skipped: {why} (and any later such line)")
        return None

    def _send(self, entries: List[Dict[str, str]], retry_s: float) -> bool:
        """XADD ``entries`` in batches, all or nothing per batch, removing each sent batch from ``entries``.

        False when Redis does not answer within ``retry_s``: what is left stays in ``entries``.
        """
        deadline, delay = time.monotonic() + retry_s, 0.2
        while entries:
            batch = entries[:_BATCH_ENTRIES]
            try:
                with self.conn.pipeline(transaction=True) as pipe:
                    for fields in batch:
                        pipe.xadd(self.stream_key, fields, maxlen=self.cap_entries + 1, approximate=True)
                    pipe.execute()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if not self._redis_warned:
                    logger.warning("cannot write the metrics stream %s (%s); retrying", self.stream_key, exc)
                    self._redis_warned = True
                if time.monotonic() + delay > deadline:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            except redis.RedisError as exc:  # refused (e.g. Redis out of memory): these steps are lost
                logger.warning("the metrics stream %s refused %d entries: %s", self.stream_key, len(batch), exc)
            del entries[: len(batch)]
        return True

    def _resume(self) -> None:
        """Count what the stream holds already: those lines are read again from the file but not sent."""
        start = "-"
        while True:
            found = self.conn.xrange(self.stream_key, min=start, max="+", count=_BATCH_ENTRIES)
            for _entry_id, fields in found:
                fields = {as_text(k): v for k, v in fields.items()}
                if FIELD in fields:
                    self.entries += 1
                    self.bytes += len(as_text(fields[FIELD]).encode("utf-8")) + 1
                elif TRUNCATED_FIELD in fields:
                    self.truncated = True
            if len(found) < _BATCH_ENTRIES:
                break
            start = "(" + as_text(found[-1][0])
        self._skip = self.entries

    def _drop_earlier_attempt(self) -> None:
        try:
            self.conn.delete(self.stream_key)
        except redis.RedisError as exc:  # the job runs on; at worst an earlier attempt's steps stay
            logger.warning("cannot clear the metrics stream %s: %s", self.stream_key, exc)

    def _collect_file_problems(self) -> None:
        file = self._file
        assert file is not None
        if self._wandb is not None:
            self._wandb.close()
        if self._wandb_chosen and self._wandb is not None:
            if self._wandb.problem:
                self.problems.append(self._wandb.problem)
            if self._wandb.long_rows:
                self.problems.append(
                    f"W&B run: {self._wandb.long_rows} step(s) longer than {MAX_LINE_BYTES} bytes as a line skipped"
                )
            if self._wandb.skipped_values:
                self.problems.append(
                    f"W&B run: {self._wandb.skipped_values} logged value(s) that are not a number, text or bool "
                    "(media, tables, histograms) are not in launchbay's metrics"
                )
        if file.problem:
            self.problems.append(file.problem)
        if file.long_lines:
            self.problems.append(
                f"{METRICS_FILE}: {file.long_lines} line(s) longer than {MAX_LINE_BYTES} bytes skipped"
            )
        if file.restarts:
            self.problems.append(
                f"{METRICS_FILE} was replaced or shortened {file.restarts} time(s); read again from its start"
            )
