"""The agent's inventory service: what the host has, kept fresh, and what a GPU fault does to its jobs.

It holds the host's current inventory (CPUs, memory, GPUs with their health) and answers what the
other services ask of it: the capacity placement hands out, the capacity JSON the heartbeat
publishes, a GPU's UUID for a job's container. Its thread, every ``inventory_refresh_s`` and at once
when an operator drains a GPU (the ``gpu_drain`` event), re-reads the host, applies the operator's
drains and logs each change of a GPU's health (:class:`~launchbay.agent.gpu_health.GpuWatch`),
wakes the claim loop when the GPUs changed, and ends each running job that holds a GPU which turned
unhealthy (reason ``gpu_failed``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any, Callable, Dict, Optional, Set

import redis
from launchbay.agent.gpu_health import GpuWatch
from launchbay.agent.heartbeat import AgentStatus
from launchbay.agent.inventory import HostInventory, InventoryProbe, capacity_json, capacity_of
from launchbay.agent.ledger import Ledger
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config.job import Outcome
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.matching import Capacity
from launchbay.queue_config.models import QueueConfig

log = logging.getLogger(__name__)


def read_inventory(probe: InventoryProbe, watch: GpuWatch) -> HostInventory:
    """The host's inventory with the operator's drains applied."""
    inventory = probe.read()
    return replace(inventory, gpus=watch.review(inventory.gpus))


class InventoryLoop:
    """The inventory service: the host's current inventory, and a thread (:meth:`run`) that keeps it fresh
    until ``closing`` is set and :meth:`look_again` is called.

    Other services read it through :meth:`capacity`, :meth:`capacity_json` and :meth:`gpu_uuid_for`.
    """

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        settings: AgentSettings,
        *,
        records: Records,
        queue_config_for: Callable[[str], QueueConfig],
        status: AgentStatus,
        closing: threading.Event,
        on_change: Callable[[], None],
        ledger: Ledger,
        running: Callable[[], Set[str]],
        end_with: Callable[[str, Outcome], None],
    ) -> None:
        self.settings, self.status = settings, status
        self.probe = InventoryProbe(settings)
        self.watch = GpuWatch(conn, keys, settings.agent_id, records=records, queue_config_for=queue_config_for)
        self.current: HostInventory = read_inventory(self.probe, self.watch)
        self.refresh_s, self.closing = settings.inventory_refresh_s, closing
        self.on_change = on_change  # its GPUs or their health changed: the claim loop looks again
        self.ledger, self.running, self.end_with = ledger, running, end_with
        self._gpu_uuids: Dict[str, str] = {}
        self._look_again = threading.Event()
        self._note_gpus(self.current)

    def capacity(self) -> Capacity:
        """What this agent may hand out now (placement's view)."""
        return capacity_of(self.settings, self.current)

    def capacity_json(self) -> Dict[str, Any]:
        """The capacity the heartbeat publishes (``launchbay:agent:<id>:capacity``)."""
        return capacity_json(self.settings, self.current)

    def gpu_uuid_for(self, gpu_id: str) -> Optional[str]:
        """The UUID of a host GPU id, as last seen (a job's ``NVIDIA_VISIBLE_DEVICES`` names UUIDs)."""
        return self._gpu_uuids.get(gpu_id)

    def _note_gpus(self, inventory: HostInventory) -> None:
        self.status.gpu_problem = inventory.gpu_problem
        for gpu in inventory.gpus:
            if gpu.uuid:
                self._gpu_uuids[gpu.id] = gpu.uuid

    def look_again(self) -> None:
        """Read the inventory now (an operator drained a GPU, or the agent is stopping)."""
        self._look_again.set()

    def run(self) -> None:
        while True:
            self._look_again.wait(self.refresh_s)
            self._look_again.clear()
            if self.closing.is_set():
                return
            try:
                inventory = read_inventory(self.probe, self.watch)
            except Exception:  # keep the last inventory rather than lose the thread
                log.exception("reading the host inventory failed; keeping the previous one")
                continue
            before = [(g.id, g.health) for g in self.current.gpus]
            changed = [(g.id, g.health) for g in inventory.gpus] != before
            self.current = inventory
            self._note_gpus(inventory)
            if changed:
                log.warning("GPUs now: [%s]", ",".join(f"{g.id}:{g.health}" for g in inventory.gpus))
                self.on_change()
            self._end_jobs_on_failed_gpus()

    def _end_jobs_on_failed_gpus(self) -> None:
        running = self.running()
        try:
            held = [(job_id, e.gpus) for job_id, e in self.ledger.entries().items() if job_id in running]
            self.watch.end_jobs(self.current.gpus, held, self.end_with)
        except redis.RedisError as exc:
            log.warning("jobs on failed GPUs not checked: %s", exc)
