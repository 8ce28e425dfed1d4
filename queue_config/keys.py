"""Every Redis key launchbay owns, built in one place.

RQ owns ``rq:*`` and we reach those only through rq's Queue, Job and registry classes. Ours live
under a namespace (default ``launchbay``, set with ``LAUNCHBAY_NAMESPACE`` or ``Keys(namespace)``).

=====================================  ======  ===========  ================================
key                                    type    TTL          written by
=====================================  ======  ===========  ================================
{ns}:queues                            SET     none         CLI (queue apply/delete)
{ns}:queue:{name}                      HASH    none         CLI: config (JSON), paused, updated_at
{ns}:jobdefs                           SET     none         CLI enqueue (job names)
{ns}:jobdef:{name}                     STRING  none         agent: recorded inputs.json + run id
{ns}:job:{id}                          HASH    result TTL   lifecycle.py only (fields: job.py):
                                                            state, reason, timestamps, gpus...
{ns}:job:{id}:log                      STREAM  result TTL   agent: container output, capped;
                                                            lifecycle: eof (logstream.py)
{ns}:job:{id}:log:{rank}               STREAM  result TTL   agent: rank k's output of a multi-node job
                                                            (rank 0's is the job's log)
{ns}:gang:{id}                         HASH    result TTL   lifecycle's gang script only: a multi-node
                                                            job's members (gang.py)
{ns}:gang:assembling:{queue}           STRING  assembly     lifecycle's gang script: the one gang of
                                                            the queue that may hold members now
{ns}:job:{id}:metrics                  STREAM  result TTL   agent: the job's metrics.jsonl, one
                                                            entry {"m": line} per step, capped
{ns}:jobs:{queue}                      ZSET    none         CLI: job ids by enqueue time
{ns}:agents                            SET     none         agent: ids ever registered
{ns}:agent:{id}                        HASH    none         agent: host, labels, inventory
{ns}:agent:{id}:alive                  STRING  heartbeat    agent: set with EX every beat
{ns}:agent:{id}:ledger                 HASH    none         claim script: job id -> allocation
{ns}:agent:{id}:capacity               STRING  none         agent: JSON of what may be claimed
{ns}:agent:{id}:drained_gpus           SET     none         operator (`launchbay agent --drain-gpu`):
                                                            GPU ids the agent hands out no more
{ns}:fleet                             HASH    none         agent: its id -> expiry, hash, capacity
                                                            and ledger in one line (agents.py);
                                                            reaper: deletes a lost agent's field
{ns}:events                            PUBSUB  -            CLI and agents: wake-up messages
                                                            (events.py)
{ns}:events:{agent id}                 PUBSUB  -            enqueue: wakes this one idle agent
                                                            (events.py)
{ns}:idle:{queue}                      LIST    none         agent: itself, while it has room
                                                            for a job of ``queue``; an enqueue
                                                            pops the ones it wakes (events.py)
{ns}:reaper:lock                       STRING  a few s      agent: SET NX EX, one reaper at a time
{ns}:lease:pending:{queue}             STRING  a few s      agent: the one that writes why the
                                                            queue's jobs wait (pending_pass.py)
{ns}:usage:{queue}                     HASH    none         agent at a job's end (usage.py):
                                                            <user>:gpu_s, :cpu_s, :at (fair share)
{ns}:quota_usage:{queue}:{user}        HASH    none         claim.lua (+) and the release script
                                                            (-) only: gpus, cpus, jobs a user
                                                            holds claimed in a queue (quotas.py)
{ns}:sweeps                            ZSET    none         agent only: sweep ids by the time a
                                                            driver first saw them (sweeps.py)
{ns}:sweeps:new                        SET     none         CLI (sweep create): ids not yet seen by
                                                            a driver; a submitter may only SADD
{ns}:sweeps:active                     SET     none         agent only: sweeps a driver advances
{ns}:sweep:{id}                        HASH    none         sweeps.py only: config, job template,
                                                            state, submitter, timestamps
{ns}:sweep:{id}:lease                  STRING  lease        agent: SET NX PX, the sweep's driver
{ns}:study:{id}                        LIST    none         agent only (the driver): the sweep's
                                                            Optuna journal (sweep_study.py)
{ns}:sweep:{id}:journal                LIST    none         before issue 23, the journal (its owner
                                                            could write it): only read, to refuse
{ns}:replication-probe                 PUBSUB  -            agents over redis+sentinel://, after a claim
                                                            (lifecycle): a write WAIT can count; no
                                                            one listens
=====================================  ======  ===========  ================================

``tests/test_keys.py`` pins these shapes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_NAMESPACE = "launchbay"
NAMESPACE_ENV = "LAUNCHBAY_NAMESPACE"


@dataclass(frozen=True)
class Keys:
    """Key builder for one namespace; pass it around rather than formatting strings."""

    namespace: str = DEFAULT_NAMESPACE

    @classmethod
    def from_env(cls) -> Keys:
        return cls(os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE)

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    @property
    def queues(self) -> str:
        return self._k("queues")

    def queue(self, name: str) -> str:
        return self._k("queue", name)

    @property
    def jobdefs(self) -> str:
        return self._k("jobdefs")

    def jobdef(self, name: str) -> str:
        return self._k("jobdef", name)

    def job(self, job_id: str) -> str:
        return self._k("job", job_id)

    def job_log(self, job_id: str) -> str:
        return self._k("job", job_id, "log")

    def job_log_rank(self, job_id: str, rank: int) -> str:
        """Rank ``rank``'s log of a multi-node job; rank 0's is :meth:`job_log`."""
        return self.job_log(job_id) if rank == 0 else self._k("job", job_id, "log", str(int(rank)))

    def gang(self, job_id: str) -> str:
        return self._k("gang", job_id)

    def gang_assembling(self, queue: str) -> str:
        return self._k("gang", "assembling", queue)

    def job_metrics(self, job_id: str) -> str:
        return self._k("job", job_id, "metrics")

    def queue_jobs(self, queue: str) -> str:
        return self._k("jobs", queue)

    @property
    def agents(self) -> str:
        return self._k("agents")

    def agent(self, agent_id: str) -> str:
        return self._k("agent", agent_id)

    def agent_alive(self, agent_id: str) -> str:
        return self._k("agent", agent_id, "alive")

    def agent_ledger(self, agent_id: str) -> str:
        return self._k("agent", agent_id, "ledger")

    def agent_capacity(self, agent_id: str) -> str:
        return self._k("agent", agent_id, "capacity")

    def agent_drained_gpus(self, agent_id: str) -> str:
        return self._k("agent", agent_id, "drained_gpus")

    @property
    def fleet(self) -> str:
        """The fleet summary: one field per agent (``agents.read_summary``)."""
        return self._k("fleet")

    @property
    def events(self) -> str:
        return self._k("events")

    def agent_events(self, agent_id: str) -> str:
        """The channel that wakes one agent (under ``{ns}:events``, so ``&{ns}:events*`` ACLs cover it)."""
        return self._k("events", agent_id)

    def idle(self, queue: str) -> str:
        return self._k("idle", queue)

    @property
    def reaper_lock(self) -> str:
        return self._k("reaper", "lock")

    def pending_lease(self, queue: str) -> str:
        return self._k("lease", "pending", queue)

    def usage(self, queue: str) -> str:
        return self._k("usage", queue)

    def user_usage(self, queue: str, user: str) -> str:
        """What ``user`` holds claimed in ``queue`` (quotas): written only by claim.lua and the release script."""
        return self._k("quota_usage", queue, user)

    @property
    def sweeps(self) -> str:
        return self._k("sweeps")

    @property
    def sweeps_active(self) -> str:
        return self._k("sweeps", "active")

    @property
    def sweeps_new(self) -> str:
        """Sweeps made and not yet seen by a driver: the one sweep structure a submitter writes (SADD only)."""
        return self._k("sweeps", "new")

    def sweep(self, sweep_id: str) -> str:
        return self._k("sweep", sweep_id)

    def sweep_lease(self, sweep_id: str) -> str:
        return self._k("sweep", sweep_id, "lease")

    def sweep_journal(self, sweep_id: str) -> str:
        """Outside ``sweep:{id}*``, which the sweep's owner may write: only agents write a study."""
        return self._k("study", sweep_id)

    def legacy_sweep_journal(self, sweep_id: str) -> str:
        """Where a study was kept before issue 23 (its owner could write it): a driver refuses such a sweep."""
        return self._k("sweep", sweep_id, "journal")

    @property
    def replication_probe(self) -> str:
        return self._k("replication-probe")
