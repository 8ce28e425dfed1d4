"""Freeing the jobs of agents that stopped heartbeating.

Any live agent runs :meth:`Reaper.run_once` every few seconds; a lock (``{ns}:reaper:lock``) makes
one of them do the work at a time. The agent daemon passes ``hold_s`` = its reaper interval: the
holder keeps the lock that long after a pass, so the fleet looks once per interval rather than N
times (the others try again when the lock expires, with a ``SET NX`` and a ``PTTL`` in one round trip); it reads the fleet summary, and the alive keys
only of the agents whose summary line ran out. An agent in ``{ns}:agents`` whose
``alive`` key has expired (heartbeat TTL + grace) is lost: each job in its ledger that it still
owns is put back in its queue (reason ``requeued_agent_lost``) when the queue's ``retry`` policy
says ``on_agent_lost: requeue`` and the job has been claimed at most ``max_requeues`` times, or
else fails with reason ``agent_lost`` (a job whose cancel was requested is canceled instead). Then
its ledger, capacity and line of the fleet summary are deleted and it leaves the agents set. If it comes back, its old
containers are orphans: it stops and removes them (``reconcile.py``).
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional

import redis
from launchbay.agent.ledger import Ledger, LedgerEntry
from launchbay.queue_config import events, gang, leases, lifecycle
from launchbay.queue_config.agents import read_summary
from launchbay.queue_config.job import JobRecord, Outcome, Reason, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig, RetryPolicy

from launchbay.errors import LaunchbayError
from launchbay.text import as_text

log = logging.getLogger(__name__)

# After a pass with ``hold_s``: the holder keeps the lock ``hold_s`` more (ARGV[2], ms), so the fleet
# looks once per interval, not once per agent per interval (N agents x N alive keys read, every interval).
_HOLD_LOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])  -- SET, not PEXPIRE: the documented ACL has no PEXPIRE
  return 1
end
return 0
"""

QueueConfigFor = Callable[[str], QueueConfig]


def retry_policy(queue_config_for: QueueConfigFor, queue: str) -> RetryPolicy:
    """The queue's retry policy; the default (fail) when the queue is gone or unreadable."""
    try:
        return queue_config_for(queue).retry
    except (LaunchbayError, ValueError):
        return RetryPolicy()


def resolve_lost_job(
    records: Records,
    job_id: str,
    *,
    owner: str,
    queue_config_for: QueueConfigFor,
    why: str,
    member_rank: Optional[int] = None,
) -> str:
    """Requeue, fail or cancel an active job of ``owner`` that lost its agent or container.

    Returns ``"requeued"``, ``"failed"``, ``"canceled"`` or ``"skipped"`` (the job is not active
    for ``owner`` any more, so there is nothing to do). ``member_rank``: ``owner`` ran that member of a
    multi-node job, whose loss ends (or requeues) the whole gang; its other members are told to stop.
    """
    record = records.load(job_id)
    if record is None or not record.active or (record.agent != owner and member_rank is None):
        return "skipped"
    if member_rank is not None:
        why = f"rank {member_rank} lost: {why}"
    outcome = _resolve(records, record, queue_config_for, why)
    if member_rank is not None and outcome != "skipped":
        events.publish(records.conn, records.keys, events.Cancel(job_id))  # the other members stop
    return outcome


def _resolve(records: Records, record: JobRecord, queue_config_for: QueueConfigFor, why: str) -> str:
    job_id = record.id
    if record.cancel_requested:
        done = _end(records, record, Outcome(State.CANCELED, Reason.CANCELED_BY_USER, message=why))
        return "canceled" if done else "skipped"
    policy = retry_policy(queue_config_for, record.queue)
    attempts = record.attempts or 1
    if policy.on_agent_lost == "requeue" and attempts <= policy.max_requeues:
        message = f"{why}; put back in the queue (requeue {attempts} of {policy.max_requeues})"
        done = lifecycle.put_back(records, job_id, record, reason=Reason.REQUEUED_AGENT_LOST, message=message)
        return "requeued" if done else "skipped"
    if policy.on_agent_lost == "requeue":
        why += f"; not requeued again: claimed {attempts} times, max_requeues is {policy.max_requeues}"
    done = _end(records, record, Outcome(State.FAILED, Reason.AGENT_LOST, message=why))
    return "failed" if done else "skipped"


def _end(records: Records, record: JobRecord, outcome: Outcome) -> bool:
    return lifecycle.end(records, record.id, outcome, rq_execution=record.rq_execution)


class Reaper:
    """Finds lost agents and frees their jobs; safe to run from every agent at once."""

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        *,
        agent_id: str,
        queue_config_for: QueueConfigFor,
        lock_ttl_s: int = 30,
        hold_s: float = 0.0,
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.agent_id = agent_id
        self.records = Records(conn, keys)
        self.queue_config_for = queue_config_for
        self.lock_ttl_s = max(1, int(lock_ttl_s))
        #: With ``hold_s`` > 0 the lock stays that long after a pass (the holder may look again sooner: its
        #: own lock does not stop it); with 0 it is released at once.
        self.hold_s = hold_s
        self._release_lock = conn.register_script(leases.RELEASE_LUA)
        self._hold_lock = conn.register_script(_HOLD_LOCK_LUA)
        self._take_lock = conn.register_script(leases.TAKE_LUA)
        self.lock_left_s: Optional[float] = None
        #: Seconds until the first alive key seen by the last pass expires (None: none will), so
        #: the agent can look again right then instead of up to one interval later.
        self.next_expiry_s: Optional[float] = None
        self._held = False  # whether our last try took the lock
        self._pttl_allowed = True  # until Redis says this user may not (an ACL written for an older launchbay)

    def run_once(self) -> Dict[str, Dict[str, str]]:
        """Reap every lost agent; returns ``{agent id: {job id: outcome}}`` (empty when another agent holds the lock)."""
        if not self._lock():
            self.next_expiry_s = self.lock_left_s  # with hold_s: look again when another's lock expires
            return {}
        try:
            return {agent: self.reap(agent) for agent in self.lost_agents()}
        finally:
            if self.hold_s > 0:
                self._hold_lock(keys=[self.keys.reaper_lock], args=[self.agent_id, max(1, int(self.hold_s * 1000))])
            else:
                self._release_lock(keys=[self.keys.reaper_lock], args=[self.agent_id])

    def _lock(self) -> bool:
        self._held = self._try_lock()
        return self._held

    def _try_lock(self) -> bool:
        self.lock_left_s = None
        if self.hold_s > 0 and self._held:
            # Ours, kept from our last pass: look again (renewing it); if another took it meanwhile, we
            # learn when it expires.
            left_ms = self._take_lock(keys=[self.keys.reaper_lock], args=[self.agent_id, self.lock_ttl_s * 1000])
            self.lock_left_s = int(left_ms) / 1000.0 if left_ms else None
            return not left_ms
        # Free, or another agent's: SET NX and, in the same round trip, how long the other's has left (its
        # holder keeps it its own reaper interval after each pass); we look again when it expires (a
        # holder that died must not leave lost agents unseen for long).
        left_ms = leases.take_free_or_left(self.conn, self.keys.reaper_lock, self.agent_id, self.lock_ttl_s * 1000)
        if left_ms and self.hold_s > 0:
            self.lock_left_s = left_ms / 1000.0
        return not left_ms

    def lost_agents(self) -> List[str]:
        """Agents whose alive key is gone; also notes in :attr:`next_expiry_s` when the next one may go.

        The fleet summary says when each agent's line runs out (``agents.read_summary``, one read), so only
        the agents whose line ran out, or that have none (an ACL from before the summary), have their alive
        key read: the key, not the line, says an agent is lost."""
        agent_ids = sorted(as_text(a) for a in self.conn.smembers(self.keys.agents) if as_text(a) != self.agent_id)
        now_ms, lines = read_summary(self.conn, self.keys)
        expires = {line.agent_id: line.expires_ms for line in lines}
        suspects = [agent_id for agent_id in agent_ids if expires.get(agent_id, 0) <= now_ms]
        ttls_ms = self._alive_ttls_ms(suspects)
        # As PTTL answers: -2 the key is gone, -1 it has no expiry (or is not known), else milliseconds left.
        left = [ms / 1000.0 for ms in ttls_ms if ms >= 0]
        left += [(expires[a] - now_ms) / 1000.0 for a in agent_ids if expires.get(a, 0) > now_ms]
        self.next_expiry_s = min(left) if left else None
        return [agent_id for agent_id, ms in zip(suspects, ttls_ms) if ms == -2]

    def _alive_ttls_ms(self, agent_ids: List[str]) -> List[int]:
        if self._pttl_allowed:
            try:
                return self._each_alive_key(agent_ids, "pttl")
            except redis.exceptions.NoPermissionError:
                self._pttl_allowed = False
                log.warning(
                    "the Redis user may not run PTTL: lost agents are found up to reaper_interval_s later "
                    "than TTL + grace; add +pttl to its ACL (docs/security.md)",
                    extra={"agent_id": self.agent_id},
                )
        return [-1 if exists else -2 for exists in self._each_alive_key(agent_ids, "exists")]

    def _each_alive_key(self, agent_ids: List[str], command: str) -> List[int]:
        if not agent_ids:
            return []
        with self.conn.pipeline(transaction=False) as pipe:
            for agent_id in agent_ids:
                getattr(pipe, command)(self.keys.agent_alive(agent_id))
            return pipe.execute()

    def reap(self, lost_id: str) -> Dict[str, str]:
        """Free the jobs of ``lost_id``; returns ``{job id: outcome}``."""
        ledger = Ledger(self.conn, self.keys, lost_id)
        outcomes = {}
        for job_id, entry in ledger.entries().items():
            why = f"agent {lost_id} stopped heartbeating"
            if entry.gang_rank is not None and not self._member_lost(lost_id, entry):
                outcomes[job_id] = "released"  # a member of an attempt that is over already
            else:
                outcomes[job_id] = resolve_lost_job(
                    self.records, job_id, owner=lost_id, queue_config_for=self.queue_config_for, why=why,
                    member_rank=entry.gang_rank,
                )  # fmt: skip
            ledger.release(job_id)
        self._forget(lost_id, ledger)
        if outcomes:
            log.warning(
                "agent %s is lost; its jobs: %s",
                lost_id,
                ", ".join(f"{j} {o}" for j, o in sorted(outcomes.items())),
                extra={"agent_id": self.agent_id},
            )
        return outcomes

    def _member_lost(self, lost_id: str, entry: LedgerEntry) -> bool:
        """Mark ``lost_id``'s member of a multi-node job lost; False when it was not of the current round."""
        script = lifecycle.GangScript(self.conn, self.keys, agent_id=lost_id, host="", addr="")
        return bool(script.member(entry.job_id, entry.gang_round or 0, entry.gang_rank or 0, gang.LOST))

    def _forget(self, lost_id: str, ledger: Ledger) -> None:
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.delete(ledger.key, self.keys.agent_capacity(lost_id))
            pipe.hset(self.keys.agent(lost_id), "status", "lost")
            pipe.srem(self.keys.agents, lost_id)
            pipe.execute()
        try:
            self.conn.hdel(self.keys.fleet, lost_id)  # its line of the fleet summary
        except redis.exceptions.NoPermissionError as exc:  # an ACL from before the summary: it reads as gone
            log.debug("cannot delete agent %s's summary line: %s", lost_id, exc)


def lock_ttl_for(interval_s: float) -> int:
    """A lock that outlives one reaper pass but not a crashed reaper by much."""
    return max(5, int(interval_s * 3))
