"""Making this agent's containers, ledger and job records agree, at start-up and every few seconds.

At start-up (the agent restarted on the same host, same agent id):

- a labelled container whose record is ``starting``/``running`` for this agent, with a ledger entry,
  is adopted (the supervisor sees it through to the end; it is not started again);
- any other labelled container is an orphan (its job ended, belongs to another agent, was freed by
  the reaper while this agent was away, or has no record): it is stopped and removed;
- a ledger entry without a container whose record is still ``starting`` (the agent died between
  claim and container create) is released and the job put back at the front of its queue;
- one whose record is ``running`` (the container vanished while the agent was down) is treated as
  a lost job, by the queue's retry policy;
- one whose record ended, or is no longer this agent's, is released.

Every few seconds :meth:`Reconciler.sweep` removes containers that were taken away from this agent
(by the reaper, while it was frozen or cut off) and releases ledger entries nobody runs any more.
It also settles claims whose launch was cut short while the agent ran (Redis went away between
the claim and the hand-over to the supervisor): such a job is active for this agent and in its
ledger, but no thread watches it. As at start-up, its container is adopted if there is one, and
otherwise the job goes back to the front of its queue (``starting``) or is handled as lost.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Optional, Set

import redis
from launchbay.agent.ledger import Ledger, LedgerEntry
from launchbay.agent.reaper import QueueConfigFor, resolve_lost_job
from launchbay.agent.runtime import ContainerInfo, Runtime
from launchbay.queue_config import lifecycle
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.lifecycle import Records

log = logging.getLogger(__name__)


class Reconciler:
    """Start-up adoption and periodic clean-up for one agent."""

    def __init__(
        self,
        conn: redis.Redis,
        records: Records,
        ledger: Ledger,
        runtime: Runtime,
        *,
        agent_id: str,
        adopt: Callable[[ContainerInfo, LedgerEntry], None],
        tracked: Callable[[], Set[str]],
        queue_config_for: QueueConfigFor,
        on_orphan: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.conn = conn
        self.records = records
        self.ledger = ledger
        self.runtime = runtime
        self.agent_id = agent_id
        self.adopt = adopt
        self.tracked = tracked
        self.queue_config_for = queue_config_for
        self.on_orphan = on_orphan or (lambda job_id: None)

    def _runs_here(self, record: JobRecord, entry: Optional[LedgerEntry]) -> bool:
        """The record names this agent, or the ledger holds a member of the multi-node job here (a
        member's record names its rank 0's agent; the member checks its own round: gang_member.py)."""
        return record.agent == self.agent_id or (entry is not None and entry.gang_rank is not None)

    def _ours(self, record: Optional[JobRecord], entry: Optional[LedgerEntry], container_id: str) -> bool:
        """The record says this agent runs the job in this container, and the ledger agrees."""
        if not record or entry is None:
            return False
        if not record.active or not self._runs_here(record, entry):
            return False
        if entry.gang_rank is not None:
            return True  # the record keeps rank 0's container
        return not record.container or record.container == container_id

    def on_start(self) -> Dict[str, str]:
        """Adopt or clean up after a restart; returns ``{job id: what was done}``."""
        entries = self.ledger.entries()
        done: Dict[str, str] = {}
        for container in self.runtime.list_managed(self.agent_id):
            record = self.records.load(container.job_id) if container.job_id else None
            if (
                self._ours(record, entries.get(container.job_id), container.container_id)
                and container.job_id not in done
            ):
                self.adopt(container, entries[container.job_id])
                done[container.job_id] = "adopted"
            else:
                self._remove_orphan(container, record)
                done.setdefault(container.job_id, "orphan removed")
        for job_id, entry in entries.items():
            if done.get(job_id) != "adopted":
                done[job_id] = self._settle_entry(job_id, entry)
        return done

    def _settle_entry(
        self, job_id: str, entry: LedgerEntry, *, why: str = "", record: Optional[JobRecord] = None
    ) -> str:
        record = record if record is not None else self.records.load(job_id)
        if record is not None and record.active and self._runs_here(record, entry):
            if record.state is State.STARTING and lifecycle.put_back(self.records, job_id, record):
                self.ledger.release(job_id)
                log.info(
                    "job %s was claimed but never started; put back in its queue", job_id, extra={"job_id": job_id}
                )
                return "requeued"
            why = why or f"agent {self.agent_id} restarted and the job's container was gone"
            outcome = resolve_lost_job(
                self.records, job_id, owner=self.agent_id, queue_config_for=self.queue_config_for, why=why,
                member_rank=entry.gang_rank,
            )  # fmt: skip
            self.ledger.release(job_id)
            return outcome
        self._complete_interrupted_end(job_id, record)
        self.ledger.release(job_id)
        return "released"

    def _complete_interrupted_end(self, job_id: str, record: Optional[JobRecord]) -> None:
        """This agent recorded the job's end, then died before RQ, the log's eof and the expiry were written."""
        if record and record.terminal and record.agent == self.agent_id:
            lifecycle.complete_end(
                self.records, job_id, record.state, rq_execution=record.rq_execution, message=record.message
            )

    def _remove_orphan(self, container: ContainerInfo, record: Optional[JobRecord]) -> None:
        state = (record.state or "in no state of ours") if record else "no record"
        owner = record.agent if record else None
        log.warning(
            "removing orphan container %s of job %s (job %s%s)",
            container.container_id[:12],
            container.job_id or "?",
            state,
            f", agent {owner}" if owner and owner != self.agent_id else "",
            extra={"job_id": container.job_id},
        )
        self.runtime.remove(container.container_id)
        self.on_orphan(container.job_id)

    def sweep(self) -> Dict[str, str]:
        """Remove containers taken away from this agent, settle claims no thread watches, release stale entries.

        Returns ``{job id: what was done}`` for the claims it settled.
        """
        entries = self.ledger.entries()
        tracked = self.tracked()  # read after the ledger: a job claimed in between is not in ``entries``
        settled: Dict[str, str] = {}
        for container in self.runtime.list_managed(self.agent_id):
            record = self.records.load(container.job_id) if container.job_id else None
            if self._ours(record, entries.get(container.job_id), container.container_id):
                if container.job_id not in tracked and container.job_id not in settled:
                    self.adopt(container, entries[container.job_id])
                    settled[container.job_id] = "adopted"
                continue
            if container.job_id in tracked and not self._taken_away(container, record, entries):
                continue  # the supervisor is finishing it
            self._remove_orphan(container, record)
        settled.update(self._settle_untracked(entries, tracked | set(settled)))
        for job_id, outcome in sorted(settled.items()):
            log.warning(
                "job %s was claimed by this agent but no one watched it (its launch was cut short): %s",
                job_id,
                outcome,
                extra={"job_id": job_id},
            )
        return settled

    def _taken_away(self, container: ContainerInfo, record: Optional[JobRecord], entries: Dict) -> bool:
        if record is None or (
            record.agent not in (None, self.agent_id) and not self._runs_here(record, entries.get(container.job_id))
        ):
            return True
        if record.state is State.QUEUED:
            return True
        return container.running and container.job_id not in entries

    def _settle_untracked(self, entries: Dict[str, LedgerEntry], tracked: Set[str]) -> Dict[str, str]:
        """Release entries of jobs that ended or left this agent; settle active ones no thread watches."""
        settled = {}
        for job_id, entry in entries.items():
            if job_id in tracked:
                continue
            record = self.records.load(job_id)
            if record is None or record.terminal or not self._runs_here(record, entry):
                self._complete_interrupted_end(job_id, record)
                self.ledger.release(job_id)
            elif record.active:
                why = f"agent {self.agent_id} lost track of the job and found no container for it"
                settled[job_id] = self._settle_entry(job_id, entry, why=why, record=record)
        return settled
