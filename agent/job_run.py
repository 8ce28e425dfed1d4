"""One job, from a claimed record (or a container found after a restart) to a recorded end.

The job thread does the work in order; two helpers per container run beside it: a
:class:`~launchbay.agent.log_pump.LogPump` copying output, and a waiter blocked in docker's ``wait``
that posts the exit (or "the engine is gone") into the job thread's inbox. ``cancel`` and
``detach`` post there too, so the job thread reacts at once and never polls Docker.

How each end is recorded (state, reason, message) is tabled in ``docs/runtime.md``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, Union

from launchbay.agent import job_end, job_secrets
from launchbay.agent.container_spec import build_container_spec, record_problem
from launchbay.agent.engine_health import died_with_engine
from launchbay.agent.gang_member import GangMember
from launchbay.agent.job_outcome import canceled, exit_outcome, failed, gone
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.log_pump import LogPump
from launchbay.agent.logs import LOG_FILE_LABEL, LOG_STREAM_LABEL, JobLog
from launchbay.agent.payload_dir import PayloadPaths, payload_paths, prepare_payload
from launchbay.agent.run_context import RunContext
from launchbay.agent.runtime import ContainerGoneError, ContainerInfo, ExitStatus, PullInterruptedError
from launchbay.metric_stream.follower import JobMetrics
from launchbay.queue_config import lifecycle
from launchbay.queue_config.job import JobRecord, Outcome, Reason, State
from launchbay.redis_connection.connect import retry_transient

from launchbay.errors import DockerUnavailableError, JobRunError, LaunchbayError

logger = logging.getLogger(__name__)

#: The waiter re-checks for detach at least this often (one docker ``wait`` call per period).
WAIT_PERIOD_S = 30.0
#: How long to wait for the rest of the output once the container exited.
LOG_DRAIN_S = 10.0
#: Redis writes of the end are retried this long before the agent gives up on them.
REDIS_RETRY_S = 60.0
ENGINE_RETRY_MAX_S = 5.0

T = TypeVar("T")
Event = Tuple[str, Any]


class _Running:
    """``_await_engine``'s answer when the engine is back and the container still runs."""


class JobRun:
    """The life of one job on this agent: launch (or adopt), watch, classify the end, hand it to ``job_end``.

    Created and started by :class:`~launchbay.agent.supervisor.JobSupervisor`; everything it needs
    of the agent is in ``ctx``. ``on_done(job_id)`` is called last, on the job's thread.
    """

    def __init__(
        self,
        ctx: RunContext,
        record: Optional[JobRecord],
        alloc: LedgerEntry,
        *,
        on_done: Callable[[str], None],
        adopted: Optional[ContainerInfo] = None,
    ) -> None:
        self.ctx = ctx
        self.on_done = on_done
        self.job_id = alloc.job_id
        self.record = record or JobRecord(alloc.job_id, state=None)  # adopted: read in ``_adopt``
        self.alloc = alloc
        self.adopted = adopted
        self.container_id: Optional[str] = adopted.container_id if adopted else None
        self.paths: Optional[PayloadPaths] = None
        self.secrets: Optional[job_secrets.JobSecrets] = None  # resolved on this host; never sent to Redis
        self.deadline: Optional[float] = None  # time.monotonic() when max_runtime is up
        self.stop_reason: Optional[str] = None  # "cancel", "preempt", "timeout" or "forced" once decided
        self._cancel_kind, self._stop_grace_s = "cancel", ctx.settings.stop_grace_s  # or "preempt", its grace
        self._stop_sent = False
        self._cancel = threading.Event()
        self._forced: Optional[Outcome] = None  # an end decided outside the container (its GPU failed)
        self._detached = threading.Event()
        self._inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._pump: Optional[LogPump] = None
        self._ended_with_engine = False  # the container had exited when the engine answered again
        self.put_back = False  # the engine failed it before its container started: back to its queue
        rank = alloc.gang_rank or 0
        #: A member of a multi-node job: its barrier, env and end (agent/gang_member.py); None otherwise.
        self.member = None if alloc.gang_rank is None else GangMember(ctx, self.job_id, rank, alloc.gang_round or 0)
        self.log = JobLog(
            ctx.conn,
            ctx.keys.job_log_rank(self.job_id, rank),
            ctx.state_dir / "logs" / f"{self.job_id}{f'.rank{rank}' if rank else ''}.log",
            cap_bytes=ctx.settings.log_cap_bytes,
            file_cap_bytes=ctx.log_file_cap_bytes,
        )
        # A multi-node job's metrics are its rank 0's.
        self.metrics = JobMetrics.for_job(ctx, self.job_id, redact_as=self.log) if rank == 0 else None
        self._thread = threading.Thread(target=self._main, name=f"job-{self.job_id}", daemon=True)

    # -- control, from other threads ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: Optional[float]) -> None:
        self._thread.join(timeout_s)

    def request_cancel(self, preempt_grace_s: Optional[float] = None) -> None:
        if preempt_grace_s is not None:  # preempted: put back after the stop, with its queue's grace
            self._cancel_kind, self._stop_grace_s = "preempt", preempt_grace_s
        self._cancel.set()
        self._inbox.put(("wake", None))

    def request_end(self, outcome: Outcome) -> None:
        """Stop the container and record ``outcome`` (state ``queued`` puts the job back in its queue)."""
        self._forced = outcome
        self._inbox.put(("wake", None))

    def detach(self) -> None:
        self._detached.set()
        self._inbox.put(("wake", None))

    # -- the job thread ----------------------------------------------------------------------------

    def _main(self) -> None:
        outcome: Optional[Outcome] = None
        try:
            outcome = self._adopt() if self.adopted else self._launch()
        except Exception as exc:  # a bug here must end the job, not the agent
            logger.exception("job %s: the agent failed while running it", self.job_id, extra={"job_id": self.job_id})
            outcome = failed(Reason.CONTAINER_FAILED, f"the agent failed running the job: {exc}")
        try:
            if outcome is None:
                if self.metrics is not None:
                    self.metrics.stop()
                self.log.close()  # detached: what was copied stays, without an eof
            elif self.put_back:
                job_end.put_back(self.ctx, self._leftovers(), outcome.message, self._redis)
            else:
                job_end.record_end(self.ctx, self._leftovers(), outcome, self._redis)
        except Exception:
            logger.exception("job %s: recording its end failed", self.job_id, extra={"job_id": self.job_id})
        finally:
            if outcome is not None:
                job_end.release(self.ctx, self.job_id, self.alloc)
            self.on_done(self.job_id)

    def _leftovers(self) -> job_end.RunLeftovers:
        run = self.job_id, self.record, self.log, self.paths, self.container_id, self.stop_reason
        return job_end.RunLeftovers(
            *run, metrics=self.metrics, secrets=self.secrets, member=self.member, claimed_from=self.alloc.queue
        )

    def _launch(self) -> Optional[Outcome]:
        # The record was read right after the claim, just before this thread started: its cancel flag is
        # current (a cancel asked since reaches ``request_cancel``); Redis is asked again after the image pull.
        if self._cancel.is_set() or self.record.cancel_requested:
            return canceled("canceled by user before the container started")
        problem = record_problem(self.record)
        if problem:
            message = f"the job's record is malformed ({problem}); launchbay's client never writes that"
            return failed(Reason.CONTAINER_FAILED, message)
        if (self.record.nodes > 1) != (self.member is not None):
            return failed(Reason.REFUSED, "refused: its nodes field changed after an agent took it")
        try:
            queue_config = self.ctx.queue_config_for(self.alloc.queue)
            refused = self.ctx.refusal(self.job_id, self.record, queue_config)
            if refused:
                return failed(Reason.REFUSED, refused)
            self.secrets = job_secrets.resolve_into(self.log, self.record, queue_config)
            self.paths = prepare_payload(
                self.ctx.state_dir, self.job_id, self.secrets.run_config, self.secrets.file_overrides
            )
            spec = build_container_spec(
                self.record,
                queue_config,
                self.alloc,
                agent_id=self.ctx.agent_id,
                payload=self.paths,
                gpu_uuid_for=self.ctx.gpu_uuid_for,
                warn=self.log.note,
                secrets=self.secrets,
            )
        except job_secrets.SecretMissingError as exc:
            return failed(Reason.SECRET_MISSING, str(exc))
        except (OSError, ValueError, KeyError, TypeError, LaunchbayError) as exc:
            return failed(Reason.CONTAINER_FAILED, f"cannot prepare the container: {exc}")
        failure = self._docker_step(
            lambda: self.ctx.runtime.ensure_image(spec["image"], self.log.note, should_stop=self._should_stop),
            before_start=True,
        )
        if failure is not None:
            return failure
        if self._detached.is_set():
            return None
        if self._cancel_requested():
            return canceled("canceled by user before the container started")
        if self.member is not None:  # every member's image is ready before any container starts
            not_started = self.member.wait_for_all(self._should_stop, self._cancel)
            if not_started is not None:
                return not_started
            self.member.apply(spec, queue_config)
        stream_after, file_offset = self.log.position()
        spec["labels"].update({LOG_STREAM_LABEL: stream_after, LOG_FILE_LABEL: str(file_offset)})
        # Not put back on an engine error: a create-and-start whose reply was lost may have started it.
        failure = self._docker_step(lambda: self._create(spec))
        if failure is not None:
            return failure
        self._set_deadline(time.time())
        if not self._mark_running():
            self.stop_reason = "lost"
        return self._watch()

    def _create(self, spec: Dict[str, Any]) -> None:
        began = time.monotonic()
        self.container_id = self.ctx.runtime.create_and_start(spec)
        logger.info(
            "job %s: container %s started in %.2f s",
            self.job_id,
            self.container_id[:12],
            time.monotonic() - began,
            extra={"job_id": self.job_id, "queue": self.alloc.queue},
        )

    def _docker_step(self, step: Callable[[], None], *, before_start: bool = False) -> Optional[Outcome]:
        """Run one docker step; its failure becomes the job's end, but an engine that does not answer
        ``before_start`` is not the job's fault: it is put back (``ctx.engine_trouble`` stops claims)."""
        try:
            step()
        except JobRunError as exc:
            return failed(Reason(exc.reason), str(exc))
        except DockerUnavailableError as exc:
            self.ctx.engine_trouble(str(exc))
            if before_start and not self._cancel_requested():
                self.put_back = True
            return failed(Reason.DOCKER_UNAVAILABLE, str(exc))
        except ContainerGoneError as exc:
            return failed(Reason.CONTAINER_FAILED, str(exc))
        except PullInterruptedError:
            pass  # the caller looks at why: a cancel or a detach
        return None

    def _should_stop(self) -> bool:
        return self._cancel.is_set() or self._detached.is_set()

    def _adopt(self) -> Optional[Outcome]:
        info = self.adopted
        assert info is not None and self.container_id is not None
        self.record = self._redis(lambda: self.ctx.records.load(self.job_id)) or JobRecord(self.job_id, state=None)
        self.paths = payload_paths(self.ctx.state_dir, self.job_id)
        self.secrets = job_secrets.for_adopted(self.log, self.record, self.ctx.queue_config_for, self.alloc.queue)
        file_offset = info.labels.get(LOG_FILE_LABEL)
        self._redis(lambda: self.log.resume(info.labels.get(LOG_STREAM_LABEL), int(file_offset or 0)))
        if not self.record.active:
            logger.info("job %s ended while the agent was away; removing its container", self.job_id)
            self.stop_reason = "lost"
        elif info.status == "created":  # the agent stopped between create and start
            failure = self._docker_step(lambda: self.ctx.runtime.start(self.container_id))
            if failure is not None:
                return failure
            self._set_deadline(time.time())
        elif info.running:
            self._set_deadline(info.started_at or time.time())
        if self.stop_reason is None and self.record.state is State.STARTING and not self._mark_running():
            self.stop_reason = "lost"
        return self._watch()

    def _set_deadline(self, started_at: float) -> None:
        """``max_runtime_s`` counts from the container's start, so a slow image pull is not held against the job."""
        limit = self.alloc.max_runtime_s or self.record.max_runtime_s
        if limit:
            self.deadline = time.monotonic() + (started_at + float(limit) - time.time())

    def _mark_running(self) -> bool:
        """starting -> running; False when someone else moved the job first (that state is kept).

        A member of a multi-node job records its own container; the job is running once rank 0's is."""
        member = self.member
        if member is not None and not self._redis(lambda: member.running(self.container_id)):
            return False
        if member is not None and member.rank != 0:
            return True
        return self._redis(lambda: lifecycle.mark_running(self.ctx.records, self.job_id, container=self.container_id))

    # -- watching ----------------------------------------------------------------------------------

    def _watch(self) -> Optional[Outcome]:
        self._start_helpers(skip_lines=0)
        exit_status: Optional[ExitStatus] = None
        while exit_status is None:
            if self._detached.is_set():
                self._stop_pump()
                return None
            self._apply_stop_rules()
            try:
                kind, value = self._inbox.get(timeout=self._until_deadline())
            except queue.Empty:
                continue
            if kind == "exit":
                exit_status = value
            elif kind == "gone":
                self._stop_pump()
                return gone(f"container {self.container_id[:12]} was removed outside launchbay", engine=False)
            elif kind == "engine_down":
                answer = self._await_engine()
                if answer is None or isinstance(answer, Outcome):
                    self._stop_pump()
                    return answer
                self._start_helpers(skip_lines=self._pump.lines_seen if self._pump else 0)
                if isinstance(answer, ExitStatus):
                    exit_status = answer
        self._drain_output()
        return self._exit_outcome(exit_status)

    def _start_helpers(self, *, skip_lines: int) -> None:
        self._stop_pump()
        self._pump = LogPump(self.ctx.runtime, self.container_id, self.log, skip_lines=skip_lines).start()
        if self.paths is not None and self.metrics is not None:  # an adopted container that never started: nothing yet
            adopted_running = self.adopted is not None and self.adopted.status != "created"
            self.metrics.start(self.paths.output_dir, resume=adopted_running)
        threading.Thread(target=self._wait_loop, name=f"wait-{self.job_id}", daemon=True).start()

    def _wait_loop(self) -> None:
        runtime, container_id = self.ctx.runtime, self.container_id
        while not self._detached.is_set():
            try:
                exit_status = runtime.wait(container_id, WAIT_PERIOD_S)
            except ContainerGoneError as exc:
                self._inbox.put(("gone", exc))
                return
            except Exception as exc:  # DockerUnavailableError, or anything else the engine throws
                self._inbox.put(("engine_down", exc))
                return
            if exit_status is not None:
                self._inbox.put(("exit", exit_status))
                return

    def _until_deadline(self) -> Optional[float]:
        if self.deadline is None or self.stop_reason is not None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def _apply_stop_rules(self) -> None:
        if self.stop_reason is None:
            if self._cancel.is_set():
                self.stop_reason = self._cancel_kind
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                self.stop_reason = "timeout"
            elif self._forced is not None:
                self.stop_reason = "forced"
        if self.stop_reason is None or self._stop_sent:
            return
        try:
            self.ctx.runtime.stop(self.container_id, self._stop_grace_s)
            self._stop_sent = True
        except ContainerGoneError:
            self._stop_sent = True
        except DockerUnavailableError as exc:
            logger.warning("job %s: cannot stop its container yet: %s", self.job_id, exc)

    def _await_engine(self) -> Union[Outcome, ExitStatus, _Running, None]:
        """Wait for the engine to answer again; then the container's fate decides."""
        logger.warning("job %s: the Docker engine does not answer; waiting for it", self.job_id)
        delay = 0.5
        while not self._detached.is_set():
            if self.ctx.runtime.ping():
                try:
                    info = self.ctx.runtime.inspect(self.container_id)
                    if info.running:
                        return _Running()
                    self._ended_with_engine = True
                    return self.ctx.runtime.inspect_exit(self.container_id)
                except ContainerGoneError:
                    return gone(
                        f"the Docker engine went away and container {self.container_id[:12]} with it", engine=True
                    )
                except DockerUnavailableError:
                    pass
            self._detached.wait(delay)
            delay = min(delay * 2, ENGINE_RETRY_MAX_S)
        return None

    def _stop_pump(self) -> None:
        if self._pump is not None:
            self._pump.stop()

    def _drain_output(self) -> None:
        if self._pump is not None:
            self._pump.finish(LOG_DRAIN_S)

    def _exit_outcome(self, status: ExitStatus) -> Outcome:
        return exit_outcome(
            status,
            stop_reason=self.stop_reason,
            alloc=self.alloc,
            record=self.record,
            tail=list(self.log.tail),
            died_with_engine=self._died_with_engine,
            forced=self._forced,
        )

    def _died_with_engine(self, status: ExitStatus) -> bool:
        return died_with_engine(status, found_exited=self._ended_with_engine, engine_answers=self.ctx.runtime.ping)

    # -- helpers -----------------------------------------------------------------------------------

    def _cancel_requested(self) -> bool:
        if self._cancel.is_set():
            return True
        if self._redis(lambda: lifecycle.cancel_was_requested(self.ctx.records, self.job_id)):
            self._cancel.set()
        return self._cancel.is_set()

    def _redis(self, call: Callable[[], T]) -> T:
        """A Redis call, waited out for up to REDIS_RETRY_S while Redis does not answer or takes no writes."""

        def note(exc: BaseException) -> None:
            logger.warning("job %s: Redis does not answer or takes no writes (%s); retrying", self.job_id, exc)

        return retry_transient(call, within_s=REDIS_RETRY_S, stop=self._detached.is_set, on_retry=note)
