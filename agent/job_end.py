"""The end of one job on this agent: what the container left, the recorded end, clean-up, release.

:func:`record_end` runs on the job's thread once :class:`~launchbay.agent.job_run.JobRun` has
classified the end. The record moves through ``lifecycle.end`` (state, RQ's mirror, the log's
``eof``, the expiry), the one way every job ends, or ``lifecycle.put_back`` for a job whose GPU
failed and whose queue requeues it; then the container and the job's folder go, and
the resources are released (``ctx.release``, then a ``released`` event).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import redis
from launchbay.agent.gang_member import GangMember, record_member_end
from launchbay.agent.job_secrets import JobSecrets, scrub_effective_config
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.logs import JobLog
from launchbay.agent.payload_dir import JobOutputs, PayloadPaths, read_outputs, remove_job_dir
from launchbay.agent.run_context import RunContext
from launchbay.agent.sharing import record_usage
from launchbay.agent.wandb_offline import keep_offline_runs
from launchbay.metric_stream.follower import JobMetrics
from launchbay.queue_config import events, lifecycle, rq_bridge
from launchbay.queue_config.job import TERMINAL_STATES, JobRecord, Outcome, Reason, State
from launchbay.queue_config.logstream import is_eof

from launchbay.errors import LaunchbayError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class RunLeftovers:
    """What a job run hands to its end: where its files and container are, and how it was stopped."""

    job_id: str
    record: JobRecord
    log: JobLog
    paths: Optional[PayloadPaths]
    container_id: Optional[str]
    stop_reason: Optional[str]  # "lost" when the job had been taken away from this agent
    metrics: Optional[JobMetrics] = None
    secrets: Optional[JobSecrets] = None  # the queue's secrets as resolved for this job (values to scrub)
    member: Optional[GangMember] = None  # a multi-node job's member run here (agent/gang_member.py)
    #: The queue this agent claimed it from (its ledger entry's; the record's field is the submitter's to rewrite).
    claimed_from: str = ""


def record_end(ctx: RunContext, run: RunLeftovers, outcome: Outcome, retry: Callable[[Callable[[], T]], T]) -> None:
    """Record ``outcome`` (``retry`` runs a Redis call through an outage), then clean up after the job."""
    outcome = _asked_reason(ctx, run, outcome, retry)
    if run.secrets is not None:  # an engine's or the job's words may quote a secret's value
        outcome = replace(outcome, message=run.secrets.redact(outcome.message))
    outputs = _read_outputs(run)
    summary, metrics_problems = _finish_metrics(run)
    for problem in outputs.problems + metrics_problems:
        run.log.note(problem)
    if run.paths is not None:  # the job folder goes below; W&B's offline runs are kept for `wandb sync`
        for kept in keep_offline_runs(run.paths.output_dir, run.paths.job_dir.parent.parent, run.job_id):
            run.log.note(f"W&B offline run kept on the agent's host for `wandb sync`: {kept}")
    _record_inputs(ctx, run, outputs)
    if outcome.state != State.FINISHED and run.stop_reason != "lost":
        run.log.note(f"{outcome.state.value} ({outcome.reason.value if outcome.reason else ''}): {outcome.message}")
    run.log.flush()
    try:
        won = _end(ctx, run, outcome, retry, outputs, summary)
    except redis.RedisError as exc:
        logger.error("job %s: cannot record its end (%s); its container is kept for adoption", run.job_id, exc)
        run.log.close()
        return
    if won:
        record_usage(ctx.conn, ctx.keys, ctx.queue_config_for, run.job_id, run.record, time.time())
        logger.info("job %s %s %s", run.job_id, outcome.state.value, outcome.message, extra={"job_id": run.job_id})
        # lifecycle.end wrote the eof on the job's log (a job put back gets none: its log goes on with its
        # next run); another rank's own log gets its eof here
        other_rank = run.member is not None and run.member.rank != 0
        run.log.close(eof=_eof_for(run.log, retry(lambda: ctx.records.state(run.job_id))) if other_rank else None)
    else:
        run.log.close(eof=_eof_for(run.log, retry(lambda: ctx.records.state(run.job_id))))
    _remove_container(ctx, run)
    if run.paths is not None:
        remove_job_dir(run.paths)


def _asked_reason(
    ctx: RunContext, run: RunLeftovers, outcome: Outcome, retry: Callable[[Callable[[], T]], T]
) -> Outcome:
    """A cancel asked with a reason (a sweep pruning its trial) ends with that reason and message."""
    if outcome.reason != Reason.CANCELED_BY_USER:
        return outcome
    try:
        asked = retry(lambda: lifecycle.cancel_reason(ctx.records, run.job_id))
    except redis.RedisError:
        return outcome
    return replace(outcome, reason=asked[0], message=asked[1] or outcome.message) if asked else outcome


def _end(
    ctx: RunContext,
    run: RunLeftovers,
    outcome: Outcome,
    retry: Callable[[Callable[[], T]], T],
    outputs: JobOutputs,
    summary: Optional[Dict[str, Any]],
) -> Any:
    """The end through :func:`_record`; should the job's config.json be what keeps it from being written, without it."""

    def record(config: Optional[Dict[str, Any]]) -> Any:
        return _record(ctx, run, outcome, config, summary)

    try:
        return retry(lambda: record(scrub_effective_config(run.record, outputs.effective_config, run.secrets)))
    except redis.RedisError:
        raise
    except Exception as exc:
        if outputs.effective_config is None:
            raise
        run.log.note(f"ignored config.json from the job's output folder: {exc}")
        return retry(lambda: record(None))


def _record(
    ctx: RunContext,
    run: RunLeftovers,
    outcome: Outcome,
    effective_config: Optional[Dict[str, Any]],
    summary: Optional[Dict[str, Any]],
) -> bool:
    """The end through ``lifecycle.end``; or the job back at the front of its queue: preempted
    (``lifecycle.put_back_preempted``), or its GPU failed and its queue's retry policy requeues it.
    A multi-node job's member records its own end, and the job's when it decides it (gang_member.py)."""
    if run.member is not None:

        def end(final: Outcome) -> bool:
            return _record_job(ctx, run, final, effective_config, summary)

        return record_member_end(ctx, run.member, run.record, outcome, run.stop_reason, end)
    if outcome.reason == Reason.PREEMPTED:
        return lifecycle.put_back_preempted(ctx.records, run.job_id, run.record, outcome.message)
    return _record_job(ctx, run, outcome, effective_config, summary)


def _record_job(
    ctx: RunContext,
    run: RunLeftovers,
    outcome: Outcome,
    effective_config: Optional[Dict[str, Any]],
    summary: Optional[Dict[str, Any]],
) -> bool:
    if outcome.state == State.QUEUED:
        return lifecycle.put_back(ctx.records, run.job_id, run.record, reason=outcome.reason, message=outcome.message)
    return lifecycle.end(
        ctx.records,
        run.job_id,
        outcome,
        rq_execution=run.record.rq_execution,
        eof_once=False,
        effective_config=effective_config,
        summary=summary,
        known=_known(ctx, run),
    )


def _known(ctx: RunContext, run: RunLeftovers) -> Optional[lifecycle.KnownRun]:
    """What this agent knows of the run it ends: RQ shows a single-node job started by this agent in the
    queue it claimed it from (the claim cycle's ``record_rq_start``); a multi-node job's start is its rank
    0's, so it is read."""
    if run.member is not None or run.record.nodes > 1 or not run.claimed_from:
        return None
    return lifecycle.KnownRun(rq_bridge.StartedBy(run.claimed_from, ctx.agent_id), multi_node=False)


def _finish_metrics(run: RunLeftovers) -> Tuple[Optional[Dict[str, Any]], List[str]]:
    """The rest of metrics.jsonl into its stream; summary.json for the record, and what went wrong reading them."""
    if run.metrics is None or run.paths is None:
        return None, []
    run.metrics.finish(run.paths.output_dir)
    return run.metrics.summary, list(run.metrics.problems)


def put_back(ctx: RunContext, run: RunLeftovers, message: str, retry: Callable[[Callable[[], T]], T]) -> None:
    """The engine failed the job before its container ran: back to the front of its queue, not failed."""
    run.log.note(f"put back in its queue, the Docker engine failed before the container started: {message}")
    run.log.flush()
    try:
        back = retry(lambda: lifecycle.put_back(ctx.records, run.job_id, run.record, message=message))
    except redis.RedisError as exc:
        logger.error("job %s: cannot put it back (%s); the reaper will", run.job_id, exc)
        run.log.close()
        return
    logger.warning("job %s %s: %s", run.job_id, "put back in its queue" if back else "moved on", message)
    run.log.close()  # no eof: the job runs again
    _remove_container(ctx, run)
    if run.paths is not None:
        remove_job_dir(run.paths)


def _read_outputs(run: RunLeftovers) -> JobOutputs:
    """What the job left in its output folder; anything unexpected is a log line, never a missing end."""
    if run.paths is None:
        return JobOutputs()
    try:
        return read_outputs(run.paths)
    except Exception as exc:  # read_outputs means never to raise; the end must not depend on it
        logger.warning("job %s: its output folder could not be read: %s", run.job_id, exc, exc_info=True)
        return JobOutputs(problems=[f"ignored the job's output folder: {type(exc).__name__}: {exc}"])


def _record_inputs(ctx: RunContext, run: RunLeftovers, outputs: JobOutputs) -> None:
    name = run.record.name
    if outputs.inputs is None or not name:
        return
    try:
        ctx.record_inputs(name, outputs.inputs, run.job_id)
    except Exception as exc:  # a bad inputs.json must not change how the job ended
        logger.warning("job %s: its inputs were not recorded: %s", run.job_id, exc)
        run.log.note(f"the job's recorded inputs (inputs.json) were not kept: {exc}")


def _eof_for(log: JobLog, final: Optional[State]) -> Optional[str]:
    """Someone else ended the job: the eof to write, unless they wrote it already."""
    if final not in TERMINAL_STATES:
        return None
    last = log.last_entry()
    if last is not None and is_eof(last[1]):
        return None
    return final.value


def _remove_container(ctx: RunContext, run: RunLeftovers) -> None:
    if run.container_id is None:
        return
    try:
        ctx.runtime.remove(run.container_id)
    except LaunchbayError as exc:
        logger.warning("job %s: its container %s stays: %s", run.job_id, run.container_id[:12], exc)


def release(ctx: RunContext, job_id: str, entry: Optional[LedgerEntry] = None) -> None:
    """Free the job's resources (``entry``: its ledger entry, as the job's thread knows it), then tell the
    other agents (``released``)."""
    try:
        ctx.release(job_id, entry)
    except Exception:
        logger.exception("job %s: releasing its resources failed", job_id, extra={"job_id": job_id})
    try:
        events.publish(ctx.conn, ctx.keys, events.Released(ctx.agent_id))
    except redis.RedisError as exc:
        logger.warning("could not publish the released event for job %s: %s", job_id, exc)
