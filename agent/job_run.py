"""One job, from a claimed record (or a container found after a restart) to a recorded end.

The job thread does the work in order; two helpers per container run beside it: a
:class:`~launchbay.agent.logs.LogPump` copying output, and a waiter blocked in docker's ``wait``
that posts the exit (or "the engine is gone") into the job thread's inbox. ``cancel`` and
``detach`` post there too, so the job thread reacts at once and never polls Docker.

How each end is recorded (state, reason, message) is tabled in ``docs/runtime.md``.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, TypeVar, Union

import redis
from launchbay.agent.container_spec import build_container_spec, record_problem
from launchbay.agent.logs import LOG_FILE_LABEL, LOG_STREAM_LABEL, JobLog, LogPump
from launchbay.agent.payload_dir import (
    JobOutputs,
    PayloadPaths,
    payload_paths,
    prepare_payload,
    read_outputs,
    remove_job_dir,
)
from launchbay.agent.reaper import expire_ended, put_back
from launchbay.agent.runtime import ContainerGoneError, ContainerInfo, ExitStatus, PullInterruptedError
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.records import ACTIVE_STATES, TERMINAL_STATES, Reason, State

from launchbay.errors import DockerUnavailableError, JobRunError, LaunchbayError

if TYPE_CHECKING:
    from launchbay.agent.ledger import LedgerEntry
    from launchbay.agent.supervisor import JobSupervisor

logger = logging.getLogger(__name__)

#: The waiter re-checks for detach at least this often (one docker ``wait`` call per period).
WAIT_PERIOD_S = 30.0
#: How long to wait for the rest of the output once the container exited.
LOG_DRAIN_S = 10.0
#: Redis writes of the end are retried this long before the agent gives up on them.
REDIS_RETRY_S = 60.0
ENGINE_RETRY_MAX_S = 5.0
#: How long a container killed by a signal from outside waits to see whether its engine is going away.
ENGINE_VERDICT_S = 3.0
#: tini (docker's ``--init``) saying it could not exec the command: the command is not in the image.
_EXEC_FAILED = re.compile(r"^\[FATAL tini \(\d+\)\] (exec .* failed: .*)$")
#: Shell and tini exit codes for "cannot execute" and "not found".
_EXEC_EXIT_CODES = (126, 127)
#: 128 + SIGKILL, 128 + SIGTERM: how a container stopped from outside exits.
_SIGNAL_EXIT_CODES = (137, 143)

T = TypeVar("T")
Event = Tuple[str, Any]


@dataclass(frozen=True)
class Outcome:
    """A job's end, as it will be recorded."""

    state: State
    reason: Optional[Reason] = None
    exit_code: Optional[int] = None
    message: str = ""


def _canceled(message: str = "canceled by user", exit_code: Optional[int] = None) -> Outcome:
    return Outcome(State.CANCELED, Reason.CANCELED_BY_USER, exit_code, message)


class _Running:
    """``_await_engine``'s answer when the engine is back and the container still runs."""


class JobRun:
    """The life of one job on this agent; created and driven by :class:`JobSupervisor`."""

    def __init__(
        self,
        supervisor: JobSupervisor,
        record: Optional[Dict[str, Any]],
        alloc: LedgerEntry,
        *,
        adopted: Optional[ContainerInfo] = None,
    ) -> None:
        self.sup = supervisor
        self.job_id = alloc.job_id
        self.record: Dict[str, Any] = record or {}
        self.alloc = alloc
        self.adopted = adopted
        self.container_id: Optional[str] = adopted.container_id if adopted else None
        self.paths: Optional[PayloadPaths] = None
        self.deadline: Optional[float] = None  # time.monotonic() when max_runtime is up
        self.stop_reason: Optional[str] = None  # "cancel" or "timeout" once a stop was decided
        self._stop_sent = False
        self._cancel = threading.Event()
        self._forced: Optional[Outcome] = None  # an end decided outside the container (a failed GPU)
        self._detached = threading.Event()
        self._inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._pump: Optional[LogPump] = None
        #: The container had exited when the engine answered again after going away.
        self._ended_with_engine = False
        self.log = JobLog(
            supervisor.conn,
            supervisor.keys.job_log(self.job_id),
            supervisor.state_dir / "logs" / f"{self.job_id}.log",
            cap_bytes=supervisor.settings.log_cap_bytes,
            file_cap_bytes=supervisor.log_file_cap_bytes,
        )
        self._thread = threading.Thread(target=self._main, name=f"job-{self.job_id}", daemon=True)

    # -- control, from other threads ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: Optional[float]) -> None:
        self._thread.join(timeout_s)

    def request_cancel(self) -> None:
        self._cancel.set()
        self._inbox.put(("wake", None))

    def detach(self) -> None:
        self._detached.set()
        self._inbox.put(("wake", None))

    def request_end(self, outcome: Outcome) -> None:
        """Stop the container and record ``outcome`` (state ``queued`` puts the job back in its queue)."""
        self._forced = outcome
        self._inbox.put(("wake", None))

    # -- the job thread ----------------------------------------------------------------------------

    def _main(self) -> None:
        outcome: Optional[Outcome] = None
        try:
            outcome = self._adopt() if self.adopted else self._launch()
        except Exception as exc:  # a bug here must end the job, not the agent
            logger.exception("job %s: the agent failed while running it", self.job_id, extra={"job_id": self.job_id})
            outcome = Outcome(State.FAILED, Reason.CONTAINER_FAILED, message=f"the agent failed running the job: {exc}")
        try:
            if outcome is None:
                self.log.close()  # detached: what was copied stays, without an eof
            else:
                self._finish(outcome)
        except Exception:
            logger.exception("job %s: recording its end failed", self.job_id, extra={"job_id": self.job_id})
        finally:
            if outcome is not None:
                self._release()
            self.sup._forget(self.job_id)

    def _launch(self) -> Optional[Outcome]:
        if self._cancel_requested():
            return _canceled("canceled by user before the container started")
        problem = record_problem(self.record)
        if problem:
            message = f"the job's record is malformed ({problem}); launchbay's client never writes that"
            return Outcome(State.FAILED, Reason.CONTAINER_FAILED, message=message)
        try:
            self.paths = prepare_payload(
                self.sup.state_dir, self.job_id, self.record.get("run_config"), self.record.get("file_overrides")
            )
            queue_config = self.sup.queue_config_for(self.alloc.queue)
            spec = build_container_spec(
                self.record,
                queue_config,
                self.alloc,
                agent_id=self.sup.agent_id,
                payload=self.paths,
                gpu_uuid_for=self.sup.gpu_uuid_for,
                warn=self.log.note,
            )
        except (OSError, ValueError, KeyError, TypeError, LaunchbayError) as exc:
            return Outcome(State.FAILED, Reason.CONTAINER_FAILED, message=f"cannot prepare the container: {exc}")
        failure = self._docker_step(
            lambda: self.sup.runtime.ensure_image(spec["image"], self.log.note, should_stop=self._should_stop)
        )
        if failure is not None:
            return failure
        if self._detached.is_set():
            return None
        if self._cancel_requested():
            return _canceled("canceled by user before the container started")
        stream_after, file_offset = self.log.position()
        spec["labels"].update({LOG_STREAM_LABEL: stream_after, LOG_FILE_LABEL: str(file_offset)})
        failure = self._docker_step(lambda: self._create(spec))
        if failure is not None:
            return failure
        self._set_deadline(time.time())
        if not self._mark_running():
            self.stop_reason = "lost"
        return self._watch()

    def _create(self, spec: Dict[str, Any]) -> None:
        began = time.monotonic()
        self.container_id = self.sup.runtime.create_and_start(spec)
        logger.info(
            "job %s: container %s started in %.2f s",
            self.job_id,
            self.container_id[:12],
            time.monotonic() - began,
            extra={"job_id": self.job_id, "queue": self.alloc.queue},
        )

    def _docker_step(self, step: Callable[[], None]) -> Optional[Outcome]:
        """Run one docker step before the container runs; its failure becomes the job's end."""
        try:
            step()
        except JobRunError as exc:
            return Outcome(State.FAILED, Reason(exc.reason), message=str(exc))
        except DockerUnavailableError as exc:
            return Outcome(State.FAILED, Reason.DOCKER_UNAVAILABLE, message=str(exc))
        except ContainerGoneError as exc:
            return Outcome(State.FAILED, Reason.CONTAINER_FAILED, message=str(exc))
        except PullInterruptedError:
            pass  # the caller looks at why: a cancel or a detach
        return None

    def _should_stop(self) -> bool:
        return self._cancel.is_set() or self._detached.is_set()

    def _adopt(self) -> Optional[Outcome]:
        info = self.adopted
        assert info is not None and self.container_id is not None
        self.record = self._redis(lambda: self.sup.records.get(self.job_id)) or {}
        self.paths = payload_paths(self.sup.state_dir, self.job_id)
        file_offset = info.labels.get(LOG_FILE_LABEL)
        self._redis(lambda: self.log.resume(info.labels.get(LOG_STREAM_LABEL), int(file_offset or 0)))
        if self.record.get("state") not in {s.value for s in ACTIVE_STATES}:
            logger.info("job %s ended while the agent was away; removing its container", self.job_id)
            self.stop_reason = "lost"
        elif info.status == "created":  # the agent stopped between create and start
            failure = self._docker_step(lambda: self.sup.runtime.start(self.container_id))
            if failure is not None:
                return failure
            self._set_deadline(time.time())
        elif info.running:
            self._set_deadline(info.started_at or time.time())
        if self.stop_reason is None and self.record.get("state") == State.STARTING.value and not self._mark_running():
            self.stop_reason = "lost"
        return self._watch()

    def _set_deadline(self, started_at: float) -> None:
        """``max_runtime_s`` counts from the container's start, so a slow image pull is not held against the job."""
        limit = self.alloc.max_runtime_s or self.record.get("max_runtime_s")
        if limit:
            self.deadline = time.monotonic() + (started_at + float(limit) - time.time())

    def _mark_running(self) -> bool:
        """starting -> running; False when someone else moved the job first (that state is kept)."""
        return self._redis(
            lambda: self.sup.records.transition(
                self.job_id, State.RUNNING, allowed_from=(State.STARTING,), container=self.container_id
            )
        )

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
                return self._gone(f"container {self.container_id[:12]} was removed outside launchbay", engine=False)
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
        self._pump = LogPump(self.sup.runtime, self.container_id, self.log, skip_lines=skip_lines).start()
        threading.Thread(target=self._wait_loop, name=f"wait-{self.job_id}", daemon=True).start()

    def _wait_loop(self) -> None:
        runtime, container_id = self.sup.runtime, self.container_id
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
                self.stop_reason = "cancel"
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                self.stop_reason = "timeout"
            elif self._forced is not None:
                self.stop_reason = "forced"
        if self.stop_reason is None or self._stop_sent:
            return
        try:
            self.sup.runtime.stop(self.container_id, self.sup.settings.stop_grace_s)
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
            if self.sup.runtime.ping():
                try:
                    info = self.sup.runtime.inspect(self.container_id)
                    if info.running:
                        return _Running()
                    self._ended_with_engine = True
                    return self.sup.runtime.inspect_exit(self.container_id)
                except ContainerGoneError:
                    return self._gone(
                        f"the Docker engine went away and container {self.container_id[:12]} with it", engine=True
                    )
                except DockerUnavailableError:
                    pass
            self._detached.wait(delay)
            delay = min(delay * 2, ENGINE_RETRY_MAX_S)
        return None

    def _gone(self, message: str, *, engine: bool) -> Outcome:
        reason = Reason.DOCKER_UNAVAILABLE if engine else Reason.CONTAINER_FAILED
        return Outcome(State.FAILED, reason, message=message)

    def _stop_pump(self) -> None:
        if self._pump is not None:
            self._pump.stop()

    def _drain_output(self) -> None:
        if self._pump is not None:
            self._pump.finish(LOG_DRAIN_S)

    def _exit_outcome(self, status: ExitStatus) -> Outcome:
        code = status.exit_code
        if self.stop_reason == "cancel":
            return _canceled(exit_code=code)
        if self.stop_reason == "forced" and self._forced is not None:
            return replace(self._forced, exit_code=code)
        if self.stop_reason == "timeout":
            limit = self.alloc.max_runtime_s or self.record.get("max_runtime_s")
            message = f"ran longer than its max_runtime of {limit} s and was stopped"
            return Outcome(State.FAILED, Reason.TIMEOUT, code, message)
        if status.oom_killed:
            limit = f" of {self.alloc.memory_mib} MiB" if self.alloc.memory_mib else ""
            return Outcome(State.FAILED, Reason.OOM_KILLED, code, f"killed for using more than its memory limit{limit}")
        if self._died_with_engine(status):
            message = f"the Docker engine stopped while the job ran, and its container with it (exit code {code})"
            return Outcome(State.FAILED, Reason.DOCKER_UNAVAILABLE, code, message)
        if code == 0 and not status.error:
            return Outcome(State.FINISHED, None, 0, "")
        start_failure = self._start_failure(status)
        if start_failure:
            return Outcome(State.FAILED, Reason.CONTAINER_FAILED, code, start_failure)
        last = next((line for line in reversed(self.log.tail) if line.strip()), "")
        message = f"exited with code {code}" + (f"; last output: {last[:300]}" if last else "")
        return Outcome(State.FAILED, Reason.EXIT_CODE, code, message)

    def _died_with_engine(self, status: ExitStatus) -> bool:
        """The container ended because its engine stopped, not by its own doing.

        Either it was found exited when the engine answered again, or a signal from outside
        launchbay ended it (a stopping engine sends SIGTERM, then SIGKILL) and the engine stops
        answering within ENGINE_VERDICT_S (a person's ``docker stop`` leaves it answering).
        """
        if status.exit_code == 0:
            return False
        if self._ended_with_engine:
            return True
        if status.exit_code not in _SIGNAL_EXIT_CODES:
            return False
        deadline = time.monotonic() + ENGINE_VERDICT_S
        while time.monotonic() < deadline:
            if not self.sup.runtime.ping():
                return True
            time.sleep(0.2)
        return False

    def _start_failure(self, status: ExitStatus) -> Optional[str]:
        """docker's (or tini's) explanation when the command could not be run at all."""
        if status.error:
            return f"docker could not run the container: {status.error}"
        if status.exit_code not in _EXEC_EXIT_CODES:
            return None
        for line in self.log.tail:
            match = _EXEC_FAILED.match(line)
            if match:
                command = (self.record.get("spec") or {}).get("command")
                return f"the container could not run {command}: {match.group(1)}"
        return None

    # -- the end -----------------------------------------------------------------------------------

    def _finish(self, outcome: Outcome) -> None:
        outputs = read_outputs(self.paths) if self.paths else JobOutputs()
        for problem in outputs.problems:
            self.log.note(problem)
        self._record_inputs(outputs)
        if outcome.state != State.FINISHED and self.stop_reason != "lost":
            self.log.note(
                f"{outcome.state.value} ({outcome.reason.value if outcome.reason else ''}): {outcome.message}"
            )
        self.log.flush()
        try:
            won = self._redis(lambda: self._record_end(outcome, outputs))
        except redis.RedisError as exc:
            logger.error("job %s: cannot record its end (%s); its container is kept for adoption", self.job_id, exc)
            self.log.close()
            return
        final = outcome.state if won else self._redis(lambda: self.sup.records.state(self.job_id))
        if won:
            logger.info(
                "job %s %s %s", self.job_id, outcome.state.value, outcome.message, extra={"job_id": self.job_id}
            )
        self.log.close(eof=self._eof_for(final, won))
        if won and final in TERMINAL_STATES:
            self._redis(self._expire_ended)
        self._remove_container()
        if self.paths is not None:
            remove_job_dir(self.paths)

    def _record_inputs(self, outputs: JobOutputs) -> None:
        name = self.record.get("name")
        if outputs.inputs is None or not name:
            return
        try:
            self.sup.record_inputs(name, outputs.inputs, self.job_id)
        except Exception as exc:  # a bad inputs.json must not change how the job ended
            logger.warning("job %s: its inputs were not recorded: %s", self.job_id, exc)
            self.log.note(f"the job's recorded inputs (inputs.json) were not kept: {exc}")

    def _record_end(self, outcome: Outcome, outputs: JobOutputs) -> bool:
        if outcome.state == State.QUEUED:  # back in its queue, as the reaper puts a lost agent's job
            return put_back(
                self.sup.conn,
                self.sup.records,
                self.job_id,
                self.record,
                reason=outcome.reason,
                message=outcome.message,
            )
        won = self.sup.records.transition(
            self.job_id,
            outcome.state,
            allowed_from=(State.STARTING, State.RUNNING),
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            message=outcome.message or None,
            effective_config=outputs.effective_config,
        )
        if won:
            try:
                rq_bridge.mark_ended(
                    self.sup.conn,
                    self.job_id,
                    self.record.get("rq_execution"),
                    state=outcome.state.value,
                    message=outcome.message,
                )
            except Exception as exc:  # RQ's mirror is for dashboards; the record is the truth
                logger.warning("job %s: RQ does not show its end: %s", self.job_id, exc, extra={"job_id": self.job_id})
        return won

    def _expire_ended(self) -> None:
        """The record and its log expire with RQ's copy of the job; without it every job stays in Redis for ever."""
        with self.sup.conn.pipeline(transaction=False) as pipe:
            expire_ended(pipe, self.sup.keys, self.job_id)
            pipe.execute()

    def _eof_for(self, final: Optional[State], won: bool) -> Optional[str]:
        """The eof entry to write: the recorded end, unless someone else ended the job and wrote it already."""
        if final not in TERMINAL_STATES:
            return None
        if not won:
            last = self.log.last_entry()
            if last is not None and "eof" in last[1]:
                return None
        return final.value

    def _remove_container(self) -> None:
        if self.container_id is None:
            return
        try:
            self.sup.runtime.remove(self.container_id)
        except LaunchbayError as exc:
            logger.warning("job %s: its container %s stays: %s", self.job_id, self.container_id[:12], exc)

    def _release(self) -> None:
        try:
            self.sup.release(self.job_id)
        except Exception:
            logger.exception("job %s: releasing its resources failed", self.job_id, extra={"job_id": self.job_id})
        try:
            event = json.dumps({"type": "released", "agent": self.sup.agent_id})
            self.sup.conn.publish(self.sup.keys.events, event)
        except redis.RedisError as exc:
            logger.warning("could not publish the released event for job %s: %s", self.job_id, exc)

    # -- helpers -----------------------------------------------------------------------------------

    def _cancel_requested(self) -> bool:
        if self._cancel.is_set():
            return True
        flag = self._redis(lambda: self.sup.conn.hget(self.sup.keys.job(self.job_id), "cancel_requested"))
        if flag in (b"1", "1"):
            self._cancel.set()
        return self._cancel.is_set()

    def _redis(self, call: Callable[[], T]) -> T:
        """Run a Redis call, retrying a lost connection for up to REDIS_RETRY_S."""
        deadline = time.monotonic() + REDIS_RETRY_S
        delay = 0.2
        while True:
            try:
                return call()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() + delay > deadline or self._detached.is_set():
                    raise
                logger.warning("job %s: Redis does not answer (%s); retrying", self.job_id, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
