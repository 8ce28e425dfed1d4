"""The agent's inventory thread: what the host has, kept fresh, and what a GPU fault does to its jobs.

Every ``inventory_refresh_s``, and at once when an operator drains a GPU (the ``gpu_drain`` event),
it re-reads CPUs, memory and GPUs, applies the operator's drains and logs each change of a GPU's
health (:class:`~launchbay.agent.gpu_health.GpuWatch`), hands the new inventory to the daemon, and
ends each running job that holds a GPU which turned unhealthy (reason ``gpu_failed``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Callable, Set

import redis
from launchbay.agent.gpu_health import GpuWatch
from launchbay.agent.inventory import HostInventory, InventoryProbe
from launchbay.agent.ledger import Ledger
from launchbay.queue_config.job import Outcome

log = logging.getLogger(__name__)


def read_inventory(probe: InventoryProbe, watch: GpuWatch) -> HostInventory:
    """The host's inventory with the operator's drains applied."""
    inventory = probe.read()
    return replace(inventory, gpus=watch.review(inventory.gpus))


class InventoryLoop:
    """Runs on its own thread (:meth:`run`) until ``closing`` is set and :meth:`look_again` is called."""

    def __init__(
        self,
        probe: InventoryProbe,
        watch: GpuWatch,
        current: HostInventory,
        *,
        refresh_s: float,
        closing: threading.Event,
        on_read: Callable[[HostInventory, bool], None],
        ledger: Ledger,
        running: Callable[[], Set[str]],
        end_with: Callable[[str, Outcome], None],
    ) -> None:
        self.probe, self.watch, self.current = probe, watch, current
        self.refresh_s, self.closing = refresh_s, closing
        self.on_read = on_read  # (inventory, whether its GPUs or their health changed)
        self.ledger, self.running, self.end_with = ledger, running, end_with
        self._look_again = threading.Event()

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
            if changed:
                log.warning("GPUs now: [%s]", ",".join(f"{g.id}:{g.health}" for g in inventory.gpus))
            self.on_read(inventory, changed)
            self._end_jobs_on_failed_gpus()

    def _end_jobs_on_failed_gpus(self) -> None:
        running = self.running()
        try:
            held = [(job_id, e.gpus) for job_id, e in self.ledger.entries().items() if job_id in running]
            self.watch.end_jobs(self.current.gpus, held, self.end_with)
        except redis.RedisError as exc:
            log.warning("jobs on failed GPUs not checked: %s", exc)
