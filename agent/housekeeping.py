"""Housekeeping on the agent's main thread: reap lost agents, reconcile and adopt after a restart, sweep.

Each step runs on its own timer, before the claim pass:

- reap (``reaper.py``) every ``reaper_interval_s``, and again just after the next agent could turn
  lost, so detection takes heartbeat TTL + grace, not that plus a reaper interval;
- reconcile once after a (re)start (``reconcile.py``): adopt this agent id's running containers,
  requeue what never started, remove the job folders of jobs it no longer runs; then sweep orphans
  (containers and ledger entries no job owns) every ``reaper_interval_s``;
- prune expired log files every ``PRUNE_INTERVAL_S``.

Reaping needs only Redis, so the agent reaps even while its Docker engine is away; reconciling
talks to the engine, so the root runs it only once the engine is fit (``engine_health.py``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Set

import redis
from launchbay.agent.counters import Counters, Every
from launchbay.agent.ledger import Ledger, LedgerEntry
from launchbay.agent.log_files import PRUNE_INTERVAL_S, prune_log_files
from launchbay.agent.payload_dir import remove_stale_job_dirs
from launchbay.agent.reaper import Reaper, lock_ttl_for
from launchbay.agent.reconcile import Reconciler
from launchbay.agent.runtime import ContainerInfo, Runtime
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig

log = logging.getLogger(__name__)

#: How long after an alive key's expiry the reaper looks (Redis expires keys lazily or within ~100 ms).
REAP_AFTER_EXPIRY_S = 0.1


class Housekeeping:
    """The reaper, the reconciler and the log pruner of one agent, each on its timer."""

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        settings: AgentSettings,
        *,
        records: Records,
        ledger: Ledger,
        runtime: Runtime,
        supervisor: Any,
        counters: Counters,
        queue_config_for: Callable[[str], QueueConfig],
        held: Callable[[], Set[str]] = set,
    ) -> None:
        self.settings, self.ledger, self.supervisor, self.counters = settings, ledger, supervisor, counters
        self.reaper = Reaper(
            conn,
            keys,
            agent_id=settings.agent_id,
            queue_config_for=queue_config_for,
            lock_ttl_s=lock_ttl_for(settings.reaper_interval_s),
            hold_s=settings.reaper_interval_s,
        )
        self.reconciler = Reconciler(
            conn,
            records,
            ledger,
            runtime,
            agent_id=settings.agent_id,
            adopt=self._adopt,
            # the gang service's holds are tracked too: their ledger entries are not stale
            tracked=lambda: supervisor.running_job_ids() | held(),
            queue_config_for=queue_config_for,
            on_orphan=lambda job_id: counters.inc("orphans_removed"),
        )
        #: True once the first reconcile after the start has run.
        self.reconciled = False
        self._reap_timer = Every(settings.reaper_interval_s)
        self._sweep_timer = Every(settings.reaper_interval_s)
        self._prune_timer = Every(PRUNE_INTERVAL_S)

    def seconds_to_next_reap(self) -> float:
        return self._reap_timer.seconds_left()

    def reap_if_due(self) -> None:
        """Free the jobs of lost agents, when the reap timer is due."""
        if not self._reap_timer.due():
            return
        for outcomes in self.reaper.run_once().values():
            self.counters.inc("reaped_jobs", len(outcomes))
        if self.reaper.next_expiry_s is not None:
            # Look again just after the next agent could turn lost: detection takes TTL + grace,
            # not TTL + grace + up to one reaper interval.
            self._reap_timer.due_within(self.reaper.next_expiry_s + REAP_AFTER_EXPIRY_S)

    def tidy(self) -> None:
        """Reconcile once after the start, then sweep orphans and prune log files on their timers."""
        if not self.reconciled:
            self._reconcile_on_start()
        elif self._sweep_timer.due():
            self.reconciler.sweep()
        if self._prune_timer.due():
            prune_log_files(self.settings.state_dir, keep=self.ledger.entries())

    def _reconcile_on_start(self) -> None:
        done = self.reconciler.on_start()
        self.reconciled = True
        for job_id in remove_stale_job_dirs(self.settings.state_dir, keep=self.supervisor.running_job_ids()):
            log.info("removed the job folder of job %s, which this agent no longer runs", job_id)
        self.counters.inc("requeued_unstarted", sum(1 for v in done.values() if v == "requeued"))
        if done:
            log.info("after restart: %s", ", ".join(f"{j} {w}" for j, w in sorted(done.items())))

    def _adopt(self, container: ContainerInfo, entry: LedgerEntry) -> None:
        self.supervisor.adopt(container, entry)
        self.counters.inc("adopted")
