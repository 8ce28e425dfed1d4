"""The agent's gang service: hold members of multi-node jobs, launch its member once the gang is complete.

A job with ``nodes: N`` is never claimed by one agent. When placement picks one (as the head of its
queue, or where it fits without delaying the head), the claim pass hands it to :meth:`GangAssembly.hold`
instead of the claim script: ``lifecycle.GangScript`` holds one member for this agent (its allocation
into the ledger, so other work fits only beside it) if no other gang of the queue is assembling
now. The hold that completes the gang moves the job to ``starting``; the other members' agents are
woken on their own channels. :meth:`GangAssembly.tend` (before and after each claim pass) launches
this agent's member of a complete gang through the claim cycle's ``launch`` (then ``JobRun`` runs
it with its ``GangMember``), and gives up the holds of a round that was not complete in time, was
canceled or moved on, writing why the job waits (``pending_reason``).

A gang that the live agents could never hold (fewer of them serve its queue and could fit a
member than it has members) is not held at all: it says so and holds nothing (docs/multi-node.md).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Callable, Dict, Optional, Set, Tuple

import redis
from launchbay.agent.ledger import Ledger, LedgerEntry
from launchbay.agent.placement import Candidate
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config import events, gang, lifecycle, pending
from launchbay.queue_config.agents import live_agents, serves
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity, could_ever_fit
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.quotas import limits_json

from launchbay.errors import LaunchbayError
from launchbay.text import as_text

log = logging.getLogger(__name__)

#: How long a count of the agents that could hold a gang is trusted before it is read again.
FLEET_READ_S = 2.0
#: How many multi-node jobs' last run-out rounds are remembered (oldest forgotten first).
RAN_OUT_KEPT = 256


class GangAssembly:
    """Holds and launches this agent's members of multi-node jobs."""

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        settings: AgentSettings,
        *,
        records: lifecycle.Records,
        ledger: Ledger,
        queue_config_for: Callable[[str], QueueConfig],
        launch: Callable[[LedgerEntry], None],
        quota_limits: Callable[[str, str], str] = lambda _queue, _user: "{}",
    ) -> None:
        self.conn, self.keys, self.records, self.ledger = conn, keys, records, ledger
        self.agent_id = settings.agent_id
        self.queue_config_for, self.launch, self.quota_limits = queue_config_for, launch, quota_limits
        self.script = lifecycle.GangScript(
            conn, keys, agent_id=settings.agent_id, host=settings.host, addr=settings.advertise_addr
        )
        #: job id -> this agent's hold, until its member is launched or the hold given up
        self.held: Dict[str, LedgerEntry] = {}
        self._fleet: Dict[str, Tuple[float, Optional[str]]] = {}
        #: job id -> why its last round here ran out (kept as its pending reason while later rounds assemble)
        self._ran_out: Dict[str, str] = {}

    def held_ids(self) -> Set[str]:
        """Jobs this agent holds a member of (their ledger entries are this service's, not stale)."""
        return set(self.held)

    # -- holding ---------------------------------------------------------------------------------

    def hold(self, candidate: Candidate, entry: LedgerEntry, capacity: Capacity) -> bool:
        """Hold one member of ``candidate`` with ``entry``'s allocation; False when it is not held."""
        try:
            options = self.queue_config_for(candidate.queue).gang
        except (LaunchbayError, ValueError):
            return False
        problem = gang.nodes_problem(candidate.nodes, options, candidate.queue) or self._cannot_hold(candidate)
        if problem:
            self._pending(candidate.job_id, gang.PENDING_UNPLACEABLE, problem)
            return False
        held, why, rank, round_ = self.script.hold(
            entry.job_id, entry.queue, entry.to_json(), entry.user,
            nodes=candidate.nodes, timeout_s=options.assemble_timeout_s,
            capacity=(capacity.cpus, capacity.memory_mib, capacity.slots, _gpu_ids(capacity)),
            limits=self.quota_limits(entry.queue, entry.user), now=time.time(),
        )  # fmt: skip
        if not held:
            log.debug("job %s: no member held here (%s)", entry.job_id, why, extra={"job_id": entry.job_id})
            if why in ("other_gang_assembling", "previous_attempt_running"):
                self._pending(entry.job_id, gang.PENDING_WAITING, gang.waiting_detail(why, candidate.queue))
            elif why == "quota":
                self._pending(
                    entry.job_id, pending.QUOTA, gang.quota_detail(entry.user, candidate.queue, candidate.nodes)
                )
            return False
        self.held[entry.job_id] = replace(entry, gang_rank=rank, gang_round=round_)
        log.info(
            "job %s: holding rank %d of %d (round %d)%s",
            entry.job_id, rank, candidate.nodes, round_, "; the gang is complete" if why == "complete" else "",
            extra={"job_id": entry.job_id, "queue": entry.queue},
        )  # fmt: skip
        if why == "complete":
            self._ran_out.pop(entry.job_id, None)
            self._wake_members(entry.job_id, entry.queue)
            return True
        detail = f"assembling: {rank + 1} of {candidate.nodes} members held, waiting for more agents"
        ran_out = self._ran_out.get(entry.job_id)
        if ran_out is None:
            self._pending(entry.job_id, gang.PENDING_ASSEMBLING, detail)
        else:  # the user still learns who could not be placed last time, not only that it assembles again
            self._pending(entry.job_id, gang.PENDING_INCOMPLETE, f"{ran_out} (round {round_}: {detail})")
        return True

    def _cannot_hold(self, candidate: Candidate) -> Optional[str]:
        """Why the live agents could never hold ``candidate``'s gang (None: enough of them could)."""
        cached = self._fleet.get(candidate.job_id)
        if cached is not None and time.monotonic() - cached[0] < FLEET_READ_S:
            return cached[1]
        agents = [a for a in live_agents(self.conn, self.keys) if serves(a, candidate.queue)]
        able = [a for a in agents if could_ever_fit(candidate.request, candidate.constraints, _capacity(a))]
        answer = None
        if len(able) < candidate.nodes:
            answer = (
                f"needs {candidate.nodes} agents that could each run a member; {len(agents)} live agent(s) serve "
                f"queue {candidate.queue!r} and {len(able)} of them could: nothing is held until more start"
            )
        self._fleet = {candidate.job_id: (time.monotonic(), answer)}
        return answer

    def _wake_members(self, job_id: str, queue: str) -> None:
        """Tell the other members' agents, each on its own channel, that the gang is complete."""
        table = gang.read(self.conn, self.keys, job_id)
        with self.conn.pipeline(transaction=False) as pipe:
            for member in table.current():
                if member.agent != self.agent_id:
                    events.publish(pipe, self.keys, events.Enqueued(queue), to_agent=member.agent)
            pipe.execute()

    # -- tending the holds -------------------------------------------------------------------------

    def tend(self) -> None:
        """Launch the members of complete gangs; give up holds whose round is over."""
        for job_id, entry in list(self.held.items()):
            state, table, assembling = self._read(job_id, entry.queue)
            current = table.round == entry.gang_round
            if current and table.attempt and state in (State.STARTING, State.RUNNING):
                del self.held[job_id]
                self.launch(entry)
            elif not (state is State.QUEUED and assembling == f"{job_id}:{entry.gang_round}"):
                self._give_up(job_id, entry, state, table)

    def _read(self, job_id: str, queue: str) -> Tuple[Optional[State], gang.Gang, str]:
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.job(job_id), lifecycle.STATE_ONLY)
            pipe.hgetall(self.keys.gang(job_id))
            pipe.get(self.keys.gang_assembling(queue))
            raw_state, raw_gang, assembling = pipe.execute()
        state = JobRecord.from_values(job_id, lifecycle.STATE_ONLY, raw_state).state
        return state, gang.parse(raw_gang), as_text(assembling or b"")

    def _give_up(self, job_id: str, entry: LedgerEntry, state: Optional[State], table: gang.Gang) -> None:
        if not self.script.drop(job_id, entry.gang_round or 0, entry.queue, entry.user):
            del self.held[job_id]
            self.launch(entry)  # the round is complete after all and the job active: run the member
            return
        del self.held[job_id]
        self.ledger.release(job_id)
        log.info("job %s: gave up the hold of rank %s", job_id, entry.gang_rank, extra={"job_id": job_id})
        if state is State.QUEUED and table.round == entry.gang_round:
            detail = gang.incomplete_detail(table, self._nodes(job_id))
            self._ran_out[job_id] = detail
            while len(self._ran_out) > RAN_OUT_KEPT:  # jobs canceled while not held here are never popped
                del self._ran_out[next(iter(self._ran_out))]
            self._pending(job_id, gang.PENDING_INCOMPLETE, detail)
        else:
            self._ran_out.pop(job_id, None)

    def _nodes(self, job_id: str) -> int:
        record = self.records.load(job_id)
        return record.nodes if record is not None else 0

    def _pending(self, job_id: str, reason: str, detail: str) -> None:
        try:
            lifecycle.set_pending(self.records, {job_id: (reason, detail, None)})
        except redis.RedisError as exc:
            log.warning("job %s: could not say why it waits: %s", job_id, exc, extra={"job_id": job_id})


def _gpu_ids(capacity: Capacity) -> str:
    return json.dumps([g.id for g in capacity.gpus])


def _capacity(agent: Dict) -> Capacity:
    return Capacity.from_capacity_json(agent)


def quota_limits_for(queue_config_for: Callable[[str], QueueConfig]) -> Callable[[str, str], str]:
    """The user's quota limits JSON in a queue, as the claim script gets them (``{}``: none)."""

    def limits(queue: str, user: str) -> str:
        try:
            return limits_json(queue_config_for(queue).quotas.for_user(user))
        except (LaunchbayError, ValueError):
            return "{}"

    return limits
