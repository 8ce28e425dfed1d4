"""How a job's container ended, as the job's recorded :class:`~launchbay.queue_config.job.Outcome`.

Pure: the exit status, why the agent stopped it (if it did), its allocation and the last lines of
its output in, the outcome out. The table of ends is in ``docs/runtime.md``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable, Optional, Sequence

from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.runtime import ExitStatus
from launchbay.queue_config.job import JobRecord, Outcome, Reason, State

#: tini (docker's ``--init``) saying it could not exec the command: the command is not in the image.
_EXEC_FAILED = re.compile(r"^\[FATAL tini \(\d+\)\] (exec .* failed: .*)$")
#: Shell and tini exit codes for "cannot execute" and "not found".
_EXEC_EXIT_CODES = (126, 127)


#: A preempted job's end: not an end, it goes back to the front of its queue (job_end puts it back).
PREEMPTED = Outcome(
    State.QUEUED, Reason.PREEMPTED, None, "stopped for a higher-priority job; queued again at the front"
)


def canceled(message: str = "canceled by user", exit_code: Optional[int] = None) -> Outcome:
    return Outcome(State.CANCELED, Reason.CANCELED_BY_USER, exit_code, message)


def failed(reason: Reason, message: str, exit_code: Optional[int] = None) -> Outcome:
    return Outcome(State.FAILED, reason, exit_code, message)


def gone(message: str, *, engine: bool) -> Outcome:
    """The container disappeared: with its engine (``docker_unavailable``) or removed by someone."""
    return failed(Reason.DOCKER_UNAVAILABLE if engine else Reason.CONTAINER_FAILED, message)


def exit_outcome(
    status: ExitStatus,
    *,
    stop_reason: Optional[str],
    alloc: LedgerEntry,
    record: JobRecord,
    tail: Sequence[str],
    died_with_engine: Callable[[ExitStatus], bool],
    forced: Optional[Outcome] = None,
) -> Outcome:
    """The outcome of a container that exited; ``stop_reason`` is "cancel", "timeout" or "forced" when the
    agent stopped it ("forced": the agent decided the end, ``forced``, e.g. its GPU failed).

    ``died_with_engine`` is asked only when nothing before it explains the end; it may wait a few seconds
    (:func:`~launchbay.agent.engine_health.died_with_engine`), which is why it is passed in.
    """
    code = status.exit_code
    if stop_reason == "cancel":
        return canceled(exit_code=code)
    if stop_reason == "forced" and forced is not None:
        return replace(forced, exit_code=code)
    if stop_reason == "preempt":
        return PREEMPTED if code is None else replace(PREEMPTED, exit_code=code)
    if stop_reason == "timeout":
        limit = alloc.max_runtime_s or record.max_runtime_s
        return failed(Reason.TIMEOUT, f"ran longer than its max_runtime of {limit} s and was stopped", code)
    if status.oom_killed:
        limit = f" of {alloc.memory_mib} MiB" if alloc.memory_mib else ""
        return failed(Reason.OOM_KILLED, f"killed for using more than its memory limit{limit}", code)
    if died_with_engine(status):
        message = f"the Docker engine stopped while the job ran, and its container with it (exit code {code})"
        return failed(Reason.DOCKER_UNAVAILABLE, message, code)
    if code == 0 and not status.error:
        return Outcome(State.FINISHED, None, 0, "")
    start_failure = _start_failure(status, record, tail)
    if start_failure:
        return failed(Reason.CONTAINER_FAILED, start_failure, code)
    last = next((line for line in reversed(tail) if line.strip()), "")
    message = f"exited with code {code}" + (f"; last output: {last[:300]}" if last else "")
    return failed(Reason.EXIT_CODE, message, code)


def _start_failure(status: ExitStatus, record: JobRecord, tail: Sequence[str]) -> Optional[str]:
    """docker's (or tini's) explanation when the command could not be run at all."""
    if status.error:
        return f"docker could not run the container: {status.error}"
    if status.exit_code not in _EXEC_EXIT_CODES:
        return None
    for line in tail:
        match = _EXEC_FAILED.match(line)
        if match:
            command = record.spec.get("command")
            return f"the container could not run {command}: {match.group(1)}"
    return None
