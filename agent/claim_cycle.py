"""The claim cycle: read the queues, place, claim what fits, hand it to the supervisor, act on cancels.

One pass (:meth:`ClaimCycle.run_pass`, on the agent's main thread) claims jobs one at a time until
none fits or lost races leave none to try: it goes ``SharedQueue.claim_pass`` -> ``ClaimPass.next``
(placement's order, the claim script; a multi-node job's member is held instead, by the gang
service it builds: ``gang_assembly.py``) -> :meth:`ClaimCycle.launch`; after it, the shared queue's
preemption hook runs. Why the jobs left behind wait is written by the cycle's ``pending`` thread
(``pending_pass.py``), for the queues whose lease this agent holds.
Before a pass the agent offers itself on its queues' idle lists, after it takes itself off them
once full (``counters.EventListener``, whose thread also brings cancel requests here).
A pass that a job's release set off is skipped when it could find nothing: the last pass left no
queued job behind, nothing was enqueued since (the agent, on the idle lists, would have heard) and
that pass is less than ``poll_interval_s`` old (the poll's pass, the safety net, always reads).

A launched job is announced with :class:`~launchbay.agent.notices.JobStarted`; the cycle learns of a
job's end from :class:`~launchbay.agent.notices.JobReleased`, like every other service.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Optional, Set, Tuple

import redis
from launchbay.agent.claim import Claimer, QueueReader
from launchbay.agent.counters import Counters, EventListener
from launchbay.agent.gang_assembly import GangAssembly, quota_limits_for
from launchbay.agent.ledger import Ledger, LedgerEntry
from launchbay.agent.notices import RELEASED_FIELDS, JobReleased, JobStarted, Notices
from launchbay.agent.pending_pass import PendingPass
from launchbay.agent.settings import AgentSettings
from launchbay.agent.shared_queue import SharedQueue
from launchbay.queue_config import lifecycle
from launchbay.queue_config.job import JobRecord, Outcome, Reason, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.matching import Capacity
from launchbay.queue_config.models import QueueConfig

log = logging.getLogger(__name__)

#: Claims tried in one pass before the loop looks at cancels and Docker again.
MAX_CLAIMS_PER_PASS = 64


class ClaimCycle:
    """Claims and launches jobs for one agent; cancels reach its jobs through :meth:`handle_cancels`."""

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        settings: AgentSettings,
        *,
        records: Records,
        supervisor: Any,
        counters: Counters,
        notices: Notices,
        capacity: Callable[[], Capacity],
        queue_config_for: Callable[[str], QueueConfig],
        config_seen: Optional[Callable[[str, Optional[bytes]], None]] = None,
        wake: threading.Event,
        stopping: threading.Event,
        closing: threading.Event,
        on_drain: Callable[[], None],
        ledger: Optional[Ledger] = None,
    ) -> None:
        self.settings, self.records, self.supervisor = settings, records, supervisor
        self.counters, self.notices, self.capacity = counters, notices, capacity
        self.wake, self.stopping = wake, stopping
        self.claimer = Claimer(conn, keys, agent_id=settings.agent_id, host=settings.host)
        self.reader = QueueReader(
            conn, keys, settings.agent_id, settings.queues, settings.lookahead, config_seen=config_seen
        )
        self.pending = PendingPass(conn, keys, settings.queues, settings.lookahead, agent_id=settings.agent_id)
        self.shared = SharedQueue(conn, keys, queue_config_for, settings, supervisor)
        #: Multi-node jobs' members: held in the pass instead of claimed, launched once complete.
        self.gangs = GangAssembly(
            conn,
            keys,
            settings,
            records=records,
            ledger=ledger or Ledger(conn, keys, settings.agent_id),
            queue_config_for=queue_config_for,
            launch=lambda entry: self.launch(entry, backfilled=False),
            quota_limits=quota_limits_for(queue_config_for),
        )
        self.cancels: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.listener = EventListener(
            conn,
            keys,
            settings.queues,
            wake=wake,
            cancels=self.cancels,
            closing=closing,
            agent_id=settings.agent_id,
            on_drain=on_drain,
        )
        self._cancel_sent: Set[str] = set()
        notices.on_released(self._forget_cancel)
        #: (listener's count heard before the read, time.monotonic()) of the last pass that left no
        #: queued job behind; and whether a job was released since the last pass
        self._emptied: Optional[Tuple[int, float]] = None
        self._released = False
        notices.on_released(self._note_release)

    # -- a pass ----------------------------------------------------------------------------------

    def run_pass(self) -> int:
        """Claim jobs one at a time until none fits (or lost races leave none to try); how many were claimed."""
        released, self._released = self._released, False
        if released and self._nothing_to_find():
            return 0
        self._emptied = None  # until this pass completes and says so (a pass that raises says nothing)
        self.listener.offer(len(self.supervisor.running_job_ids()), self.capacity().slots)
        heard = self.listener.heard
        self.gangs.tend()  # holds whose round is over free their resources before this pass
        claims = self.shared.claim_pass(self.claimer, self.reader, self.gangs.hold)
        claims.skip.update(self.gangs.held_ids())  # a member held here already: nothing more to do this pass
        try:
            for _ in range(MAX_CLAIMS_PER_PASS):
                if self.stopping.is_set():
                    break
                got = claims.next(self.capacity())
                if got is None:
                    break
                entry, decision = got
                self.launch(entry, backfilled=decision.backfilled)
            self.shared.after_pass(claims, self.capacity())
            self._emptied = (heard, time.monotonic()) if self._left_nothing(claims) else None
        finally:
            self.gangs.tend()  # a gang this pass completed starts its member here now
            self.counters.inc("lost_races", claims.lost_races)
            self.listener.offer(len(self.supervisor.running_job_ids()), self.capacity().slots, again=True)
        return claims.claimed

    def launch(self, entry: LedgerEntry, *, backfilled: bool) -> None:
        """Hand a claimed job to the supervisor (unless no replica has the claim); a failed hand-over ends it."""
        self.counters.inc("claimed")
        job_id = entry.job_id
        if not self.claimer.replicated(job_id):
            return  # not launched; the sweep settles the claim (back to the front of its queue)
        member = "" if entry.gang_rank is None else f"multi-node rank {entry.gang_rank}: "
        what = f"{member}{entry.cpus:g} CPUs, {entry.memory_mib} MiB, GPUs [{','.join(entry.gpus)}]{' (backfilled)' * backfilled}"
        log.info(
            "claimed job %s from %s: %s", job_id, entry.queue, what, extra={"job_id": job_id, "queue": entry.queue}
        )
        try:
            if not entry.gang_rank:  # RQ shows a multi-node job started once, by its rank 0
                lifecycle.record_rq_start(self.records, job_id, queue=entry.queue, worker_name=self.settings.agent_id)
        except Exception as exc:  # RQ's mirror is for dashboards; the job runs without it
            log.warning("job %s: RQ does not show it as started: %s", job_id, exc, extra={"job_id": job_id})
        record = self.records.load(job_id) or JobRecord(job_id, state=None)
        self.notices.started(JobStarted(job_id, record))
        try:
            self.supervisor.start(record, entry)  # the job's thread reads the stored fields it runs with
        except Exception as exc:
            log.error("job %s could not be handed to the supervisor: %s", job_id, exc, exc_info=True)
            outcome = Outcome(State.FAILED, Reason.CONTAINER_FAILED, message=str(exc))
            lifecycle.end(self.records, job_id, outcome, rq_execution=record.rq_execution)
            self.release(job_id, entry)
            return
        if record.cancel_requested:
            self.cancels.put(job_id)

    def _left_nothing(self, claims: Any) -> bool:
        """Whether the pass's last read saw every queued job it could take and left none behind (a job
        refused, for a quota say, is still queued: any refusal counts as one left)."""
        snapshot = claims.snapshot
        if snapshot is None or claims.lost_races or self.reader.more_behind or self.gangs.held_ids():
            return False
        return not any(c.job_id not in claims.skip for c in snapshot.candidates)

    def _nothing_to_find(self) -> bool:
        """A pass now would read what the last one read (see the module's docstring)."""
        if self._emptied is None or not self.listener.listed():
            return False
        heard, at = self._emptied
        return heard == self.listener.heard and time.monotonic() - at < self.settings.poll_interval_s

    def _note_release(self, notice: JobReleased) -> None:
        self._released = True

    def release(self, job_id: str, entry: Optional[LedgerEntry] = None) -> None:
        """The supervisor's callback once a job's end is recorded (``entry``: the ledger entry its thread held):
        tell every subscriber (ledger, counts, ...), with the record's state and times read once for all."""
        record = self.records.load(job_id, RELEASED_FIELDS)
        self.notices.released(JobReleased(job_id, record.state if record else None, record=record, entry=entry))

    # -- cancels ---------------------------------------------------------------------------------

    def request_cancel(self, job_id: str) -> None:
        """A cancel seen by another thread (the heartbeat's look at the records): acted on at the next pass."""
        self.cancels.put(job_id)
        self.wake.set()

    def handle_cancels(self) -> None:
        """Ask the supervisor to stop each job a cancel was requested for, once per job."""
        while True:
            try:
                job_id = self.cancels.get_nowait()
            except queue.Empty:
                return
            if job_id in self._cancel_sent or job_id not in self.supervisor.running_job_ids():
                continue
            self._cancel_sent.add(job_id)
            log.info("cancel requested for job %s", job_id, extra={"job_id": job_id})
            self.supervisor.cancel(job_id)

    def _forget_cancel(self, notice: JobReleased) -> None:
        self._cancel_sent.discard(notice.job_id)
