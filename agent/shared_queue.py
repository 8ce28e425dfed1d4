"""The daemon's hook for a queue a team shares: fair-share order in, preemption out.

:meth:`SharedQueue.policy` is placement's policy with each served queue's fair-share usage, read
once per claim pass. :meth:`SharedQueue.after_pass` runs when a claim pass is over: if a ``high``
job of a queue with preemption enabled still waits and could fit this agent, it asks
:func:`~launchbay.agent.preemption.choose` for the fewest, youngest ``low`` jobs whose resources
make room, and stops them through the supervisor (SIGTERM, the victim queue's grace, SIGKILL;
the job's end puts it back at the front of its queue, reason ``preempted``). One preemption at a
time: until its victims have ended, no other is started, so two passes never stop twice as much.
The freed resources go to the waiting job on the next pass, as it is first in priority order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Callable, Dict, Optional, Protocol, Set

import redis
from launchbay.agent.claim import Claimer, ClaimPass, HoldMember, QueueReader
from launchbay.agent.placement import Policy, ordered
from launchbay.agent.preemption import Running, choose
from launchbay.agent.settings import AgentSettings
from launchbay.agent.sharing import with_usage
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity, could_ever_fit
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.sharing import PreemptionConfig

from launchbay.errors import LaunchbayError

log = logging.getLogger(__name__)
#: What the preemption hook reads of a job it may stop.
PRIORITY_ONLY = ("priority",)


class Supervisor(Protocol):
    """What the hook needs of the agent's job supervisor."""

    def preempt(self, job_id: str, grace_s: float) -> None: ...

    def running_job_ids(self) -> Set[str]: ...


class SharedQueue:
    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        config_for: Callable[[str], QueueConfig],
        settings: AgentSettings,
        supervisor: Supervisor,
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.config_for = config_for
        self.queues = list(settings.queues)
        self.base = Policy(reserve_after_s=settings.reserve_after_s)
        self.stop = supervisor.preempt
        self.running = supervisor.running_job_ids
        self.stopping: Set[str] = set()  # victims of the last preemption not ended yet
        self.holding: Optional[str] = None  # the high job they make room for, until it is claimed

    def policy(self) -> Policy:
        held = frozenset({self.holding}) if self.holding else frozenset()
        return replace(with_usage(self.base, self.conn, self.keys, self.config_for, self.queues), hold_for=held)

    def claim_pass(self, claimer: Claimer, reader: QueueReader, hold: Optional[HoldMember] = None) -> ClaimPass:
        """A claim pass with this pass's fair-share order, skipping the jobs this agent runs; ``hold`` takes
        multi-node jobs' members."""
        return ClaimPass(claimer, reader, policy=self.policy(), skip=self.running(), hold=hold)

    def _preemption(self, queue: str) -> PreemptionConfig:
        try:
            return self.config_for(queue).preemption
        except LaunchbayError:
            return PreemptionConfig()  # a queue without a readable config allows none

    def after_pass(self, claims: ClaimPass, capacity: Capacity, now: Optional[float] = None) -> None:
        """Preempt for the first waiting ``high`` job that may, if any (see the module docstring)."""
        snapshot = claims.snapshot
        self.stopping &= self.running()
        if snapshot is None or self.stopping:
            return
        if self.holding not in {c.job_id for c in snapshot.candidates if c.job_id not in claims.skip}:
            self.holding = None  # claimed (here or elsewhere), canceled, or no longer read
        now = time.time() if now is None else now
        high = [
            c
            for c in ordered(snapshot.candidates, self.base)
            if c.priority == "high" and c.job_id not in claims.skip and c.nodes == 1  # a waiting gang preempts none
        ]
        if not high:
            return  # the common case: no config read, no Redis call
        queues = {c.queue for c in high} | {e.queue for e in snapshot.running}
        rules: Dict[str, PreemptionConfig] = {queue: self._preemption(queue) for queue in queues}
        waiting = [c for c in high if rules[c.queue].enabled and could_ever_fit(c.request, c.constraints, capacity)]
        if not waiting:
            return
        priorities = self._priorities([entry.job_id for entry in snapshot.running])
        running = [
            Running(
                e,
                priorities.get(e.job_id, "normal"),
                rules[e.queue].enabled,
                rules[e.queue].min_runtime_before_preempt_s,
            )
            for e in snapshot.running
        ]
        job = waiting[0]
        chosen = choose(job.job_id, job.request, job.constraints, job.priority, capacity, running, now)
        if chosen is None:
            return
        log.info("preempting %s for high-priority job %s", ", ".join(chosen.victims), job.job_id)
        queue_of = {e.job_id: e.queue for e in snapshot.running}
        for victim in chosen.victims:
            self.stop(victim, rules[queue_of[victim]].grace_s)
        self.stopping = set(chosen.victims)
        self.holding = job.job_id

    def _priorities(self, job_ids: list) -> Dict[str, str]:
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keys.job(job_id), PRIORITY_ONLY)
            values = pipe.execute()
        return {job_id: JobRecord.from_values(job_id, PRIORITY_ONLY, v).priority for job_id, v in zip(job_ids, values)}
