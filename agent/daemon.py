"""The agent's main loop: wake, look, claim what fits, hand it to the supervisor, repeat.

Threads, each with one job:

- main: reconcile after a restart, then on every wake-up: act on cancel requests, check Docker, reap
  lost agents, sweep orphans, claim jobs until nothing fits, say why the rest wait (``pending_pass``);
- heartbeat (``heartbeat.py``); inventory (``inventory_loop.py``): re-reads CPUs, memory and GPUs every
  ``inventory_refresh_s`` and on ``gpu_drain``; a GPU gone, drained or unhealthy gets no new jobs (``gpu_health.py``);
- events (``counters.EventListener``): wakes the loop on ``enqueued`` (to it when idle) and ``cancel``
  (inventory on ``gpu_drain``; a poll timer is the fallback); the supervisor's, one per job, call :meth:`Agent._release`;
- sweeps (``sweep_driver.py``): drives the open sweeps of its queues whose lease it holds or can take.

Stopping: SIGTERM/SIGINT stop claiming; running containers are left for the next agent process with the
same id to adopt (within heartbeat TTL + grace, or the reaper frees the jobs); the hash says ``stopping``.
With ``drain`` it waits for its jobs (a second signal stops waiting). ``once``: claim what fits, wait, exit.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any, Callable, Dict, Optional, Set

import redis
from launchbay.agent.claim import Claimer, QueueReader
from launchbay.agent.counters import Counters, EventListener, Every
from launchbay.agent.engine_health import EngineHealth
from launchbay.agent.gpu_health import GpuWatch
from launchbay.agent.heartbeat import AgentStatus, Heartbeat
from launchbay.agent.inventory import HostInventory, InventoryProbe, capacity_json, capacity_of
from launchbay.agent.inventory_loop import InventoryLoop, read_inventory
from launchbay.agent.ledger import Ledger, LedgerEntry
from launchbay.agent.log_files import PRUNE_INTERVAL_S, prune_log_files
from launchbay.agent.metrics_http import AgentMetrics
from launchbay.agent.payload_dir import remove_stale_job_dirs
from launchbay.agent.pending_pass import PendingPass
from launchbay.agent.reaper import Reaper, lock_ttl_for
from launchbay.agent.reconcile import Reconciler
from launchbay.agent.run_context import RunContext
from launchbay.agent.runtime import ContainerInfo, Runtime
from launchbay.agent.settings import AgentSettings
from launchbay.agent.shared_queue import SharedQueue
from launchbay.agent.supervisor import JobSupervisor
from launchbay.agent.sweep_driver import SweepDriver
from launchbay.queue_config import lifecycle
from launchbay.queue_config.job import TERMINAL_STATES, Outcome, Reason, State, cancel_requested
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.matching import Capacity
from launchbay.queue_config.store import QueueStore

from launchbay.errors import DockerUnavailableError

log = logging.getLogger(__name__)

#: Claims tried in one pass before the loop looks at cancels and Docker again.
MAX_CLAIMS_PER_PASS = 64


#: How long after an alive key's expiry the reaper looks (Redis expires keys lazily or within ~100 ms).
REAP_AFTER_EXPIRY_S = 0.1

SupervisorFactory = Callable[[RunContext], Any]


class Agent:
    """One agent process. Build it with a Redis connection and a runtime, then :meth:`run` it."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        conn: redis.Redis,
        runtime: Runtime,
        keys: Optional[Keys] = None,
        probe: Optional[InventoryProbe] = None,
        supervisor_factory: SupervisorFactory = JobSupervisor,
    ) -> None:
        self.settings = settings
        self.conn = conn
        self.runtime = runtime
        self.keys = keys or Keys.from_env()
        self.records = Records(conn, self.keys)
        self.ledger = Ledger(conn, self.keys, settings.agent_id)
        self.store = QueueStore(conn, self.keys)
        self.probe = probe or InventoryProbe(settings)
        self.counters = Counters()
        self.status = AgentStatus()
        self.gpu_watch = GpuWatch(
            conn, self.keys, settings.agent_id, records=self.records, queue_config_for=self.store.get
        )
        self.inventory: HostInventory = read_inventory(self.probe, self.gpu_watch)
        self._gpu_uuids: Dict[str, str] = {}
        self._note_gpus(self.inventory)
        self.claimer = Claimer(conn, self.keys, agent_id=settings.agent_id, host=settings.host)
        self.reader = QueueReader(conn, self.keys, settings.agent_id, settings.queues, settings.lookahead)
        self.pending = PendingPass(conn, self.keys, settings.queues, settings.lookahead)
        self.heartbeat = Heartbeat(
            conn, self.keys, settings, status=self.status, capacity=self.capacity_json, counters=self.counters.snapshot
        )
        self.reaper = Reaper(
            conn,
            self.keys,
            agent_id=settings.agent_id,
            queue_config_for=self.store.get,
            lock_ttl_s=lock_ttl_for(settings.reaper_interval_s),
            hold_s=settings.reaper_interval_s,
        )
        self.supervisor = supervisor_factory(self._run_context())
        self.shared = SharedQueue(conn, self.keys, self.store.get, settings, self.supervisor)
        self.reconciler = self._reconciler()
        self._init_loop_state()

    def _run_context(self) -> RunContext:
        return RunContext(
            conn=self.conn,
            keys=self.keys,
            agent_id=self.settings.agent_id,
            host=self.settings.host,
            runtime=self.runtime,
            settings=self.settings,
            release=self._release,
            queue_config_for=self.store.get,
            record_inputs=self.store.record_inputs,
            gpu_uuid_for=self._gpu_uuids.get,
            engine_trouble=lambda problem: self.engine.report(problem),
        )

    def _reconciler(self) -> Reconciler:
        conn, runtime, settings = self.conn, self.runtime, self.settings
        return Reconciler(
            conn,
            self.records,
            self.ledger,
            runtime,
            agent_id=settings.agent_id,
            adopt=self._adopt,
            tracked=self.supervisor.running_job_ids,
            queue_config_for=self.store.get,
            on_orphan=lambda job_id: self.counters.inc("orphans_removed"),
        )

    def _init_loop_state(self) -> None:
        settings = self.settings
        self._wake = threading.Event()
        self._stopping = threading.Event()  # no more claims
        self._closing = threading.Event()  # background threads end
        self._escalated = threading.Event()  # a second signal during drain
        self._drain = settings.drain
        self._cancels: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.listener = EventListener(
            self.conn, self.keys, settings.queues, wake=self._wake, cancels=self._cancels, closing=self._closing
        )
        self.inventory_loop = InventoryLoop(
            self.probe,
            self.gpu_watch,
            self.inventory,
            refresh_s=settings.inventory_refresh_s,
            closing=self._closing,
            on_read=self._on_inventory,
            ledger=self.ledger,
            running=self.supervisor.running_job_ids,
            end_with=self.supervisor.end_with,
        )
        self.sweeps = SweepDriver(self.conn, self.keys, settings.agent_id, settings.queues, self._closing)
        self.listener.agent_id, self.listener.on_drain = settings.agent_id, self.inventory_loop.look_again
        self._cancel_sent: Set[str] = set()
        self._reconciled = False
        self._reap_timer = Every(settings.reaper_interval_s)
        self._sweep_timer = Every(settings.reaper_interval_s)
        self._prune_timer = Every(PRUNE_INTERVAL_S)
        self._threads: list = []
        self._last_error: Optional[str] = None
        self.metrics = AgentMetrics(self)
        self.engine = EngineHealth(self.runtime, self.status, self._stopping)

    # -- what other parts read ------------------------------------------------------------------

    def capacity(self) -> Capacity:
        return capacity_of(self.settings, self.inventory)

    def capacity_json(self) -> Dict[str, Any]:
        return capacity_json(self.settings, self.inventory)

    # -- running -------------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        """Serve until stopped (or, with ``once``, until nothing more fits and every job ended); returns 0."""
        log.info(
            "agent %s serving %s on %s: %s",
            self.settings.agent_id,
            ", ".join(self.settings.queues),
            self.settings.host,
            json.dumps(self.capacity_json(), sort_keys=True),
            extra={"agent_id": self.settings.agent_id},
        )
        self.metrics.serve()
        self.heartbeat.beat()
        self._start_threads()
        try:
            while True:
                self._wake.clear()
                claimed = self._tick()
                if self._stopping.is_set() or (once and self._reconciled and not claimed and self._idle()):
                    break
                self._wake.wait(min(self.settings.poll_interval_s, self._reap_timer.seconds_left()))
        finally:
            self._shutdown(drain=self._drain or once)
        return 0

    def request_stop(self, *, drain: Optional[bool] = None) -> None:
        """Stop claiming and leave (signal handlers call this); a second call during a drain stops waiting."""
        if self._stopping.is_set():
            self._escalated.set()
        if drain is not None:
            self._drain = drain
        self.status.state = "draining" if self._drain else "stopping"
        self._stopping.set()
        self._wake.set()

    def _idle(self) -> bool:
        return not self.supervisor.running_job_ids() and not self.ledger.entries()

    def _tick(self) -> int:
        """One pass of the main loop; returns how many jobs it claimed."""
        try:
            # First, so that every pass moves the timer on and the loop's wait never spins when Redis is away.
            if self._reap_timer.due():
                self._reap()
            self._handle_cancels()
            if not self.engine.check():
                return 0
            if not self._reconciled:
                self._reconcile_on_start()
            elif self._sweep_timer.due():
                self.reconciler.sweep()
            if self._prune_timer.due():
                prune_log_files(self.settings.state_dir, keep=self.ledger.entries())
            claimed = 0 if self._stopping.is_set() else self._claim_pass()
            self._last_error = None
            return claimed
        except redis.RedisError as exc:
            self._log_error_once(f"Redis: {exc}")
        except DockerUnavailableError as exc:  # the engine went away during the pass: no traceback for that
            self._log_error_once(f"Docker: {exc}")
        except Exception as exc:
            self._log_error_once(f"{type(exc).__name__}: {exc}", exc_info=True)
        return 0

    def _log_error_once(self, message: str, exc_info: bool = False) -> None:
        if message != self._last_error:
            log.error("agent loop: %s (will retry)", message, exc_info=exc_info)
        self._last_error = message

    def _reap(self) -> None:
        for outcomes in self.reaper.run_once().values():
            self.counters.inc("reaped_jobs", len(outcomes))
        if self.reaper.next_expiry_s is not None:
            # Look again just after the next agent could turn lost: detection takes TTL + grace,
            # not TTL + grace + up to one reaper interval.
            self._reap_timer.due_within(self.reaper.next_expiry_s + REAP_AFTER_EXPIRY_S)

    def _reconcile_on_start(self) -> None:
        done = self.reconciler.on_start()
        self._reconciled = True
        for job_id in remove_stale_job_dirs(self.settings.state_dir, keep=self.supervisor.running_job_ids()):
            log.info("removed the job folder of job %s, which this agent no longer runs", job_id)
        self.counters.inc("requeued_unstarted", sum(1 for v in done.values() if v == "requeued"))
        if done:
            log.info("after restart: %s", ", ".join(f"{j} {w}" for j, w in sorted(done.items())))

    def _adopt(self, container: ContainerInfo, entry: LedgerEntry) -> None:
        self.supervisor.adopt(container, entry)
        self.counters.inc("adopted")

    # -- claiming --------------------------------------------------------------------------------

    def _claim_pass(self) -> int:
        """Claim jobs one at a time until none fits (or lost races leave none to try)."""
        self.listener.offer(len(self.supervisor.running_job_ids()), self.capacity().slots)
        claims = self.shared.claim_pass(self.claimer, self.reader)
        try:
            for _ in range(MAX_CLAIMS_PER_PASS):
                if self._stopping.is_set():
                    break
                got = claims.next(self.capacity())
                if got is None:
                    break
                entry, decision = got
                self._launch(entry, backfilled=decision.backfilled)
            self.shared.after_pass(claims, self.capacity())
        finally:
            self.counters.inc("lost_races", claims.lost_races)
            self.listener.offer(len(self.supervisor.running_job_ids()), self.capacity().slots, again=True)
            self.pending.maybe_run()
        return claims.claimed

    def _launch(self, entry: LedgerEntry, *, backfilled: bool) -> None:
        self.counters.inc("claimed")
        job_id = entry.job_id
        if not self.claimer.replicated(job_id):
            return  # not launched; the sweep settles the claim (back to the front of its queue)
        what = (
            f"{entry.cpus:g} CPUs, {entry.memory_mib} MiB, GPUs [{','.join(entry.gpus)}]{' (backfilled)' * backfilled}"
        )
        log.info(
            "claimed job %s from %s: %s", job_id, entry.queue, what, extra={"job_id": job_id, "queue": entry.queue}
        )
        try:
            lifecycle.record_rq_start(self.records, job_id, worker_name=self.settings.agent_id)
        except Exception as exc:  # RQ's mirror is for dashboards; the job runs without it
            log.warning("job %s: RQ does not show it as started: %s", job_id, exc, extra={"job_id": job_id})
        record = self.records.get(job_id) or {}
        self.metrics.job_claimed(job_id, record)
        try:
            self.supervisor.start(record, entry)
        except Exception as exc:
            log.error("job %s could not be handed to the supervisor: %s", job_id, exc, exc_info=True)
            outcome = Outcome(State.FAILED, Reason.CONTAINER_FAILED, message=str(exc))
            lifecycle.end(self.records, job_id, outcome, rq_execution=record.get("rq_execution"))
            self._release(job_id)
            return
        if cancel_requested(record):
            self._cancels.put(job_id)

    def _release(self, job_id: str) -> None:
        """The supervisor's callback once a job's end is recorded: free its resources, count it, wake up."""
        state = self.records.state(job_id)
        # Counted first, so whoever sees the ledger empty also sees the counts.
        self.counters.inc("released")
        if state in TERMINAL_STATES:
            self.counters.inc(state.value)
        self.metrics.job_ended(job_id)
        self.ledger.release(job_id)
        self._cancel_sent.discard(job_id)
        self._wake.set()
        self.sweeps.wake.set()  # a trial's end: its sweep's next trial without waiting for the next pass

    def _handle_cancels(self) -> None:
        while True:
            try:
                job_id = self._cancels.get_nowait()
            except queue.Empty:
                return
            if job_id in self._cancel_sent or job_id not in self.supervisor.running_job_ids():
                continue
            self._cancel_sent.add(job_id)
            log.info("cancel requested for job %s", job_id, extra={"job_id": job_id})
            self.supervisor.cancel(job_id)

    # -- background threads ------------------------------------------------------------------------

    def _start_threads(self) -> None:
        for name, target in (
            ("heartbeat", self._heartbeat_loop),
            ("inventory", self.inventory_loop.run),
            ("events", self.listener.run),
            ("engine", lambda: self.engine.run_until(self._closing, self._wake)),
            ("sweeps", self.sweeps.run),
        ):
            thread = threading.Thread(target=target, name=f"launchbay-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _heartbeat_loop(self) -> None:
        self.heartbeat.run_until(self._closing, self.settings.heartbeat_interval_s, on_cancel=self._on_cancel)

    def _on_cancel(self, job_id: str) -> None:
        self._cancels.put(job_id)
        self._wake.set()

    def _on_inventory(self, inventory: HostInventory, changed: bool) -> None:
        self.inventory = inventory
        self._note_gpus(inventory)
        if changed:
            self._wake.set()

    def _note_gpus(self, inventory: HostInventory) -> None:
        self.status.gpu_problem = inventory.gpu_problem
        for gpu in inventory.gpus:
            if gpu.uuid:
                self._gpu_uuids[gpu.id] = gpu.uuid

    # -- stopping ----------------------------------------------------------------------------------

    def _shutdown(self, *, drain: bool) -> None:
        if drain:
            self.status.state = "draining"
            while self.supervisor.running_job_ids() and not self._escalated.is_set():
                self._handle_cancels()
                self.supervisor.wait_all(timeout_s=0.5)
        if self.supervisor.running_job_ids():
            self.supervisor.detach_all()
            self.status.state = "stopping"
        else:
            self.status.state = "stopped"
        self._closing.set()
        self.sweeps.wake.set()
        self.inventory_loop.look_again()
        self.metrics.close()
        for thread in self._threads:
            thread.join(timeout=5)
        try:
            self.heartbeat.write_status()  # the final status, without renewing the alive key
        except redis.RedisError as exc:
            log.warning("could not record the final status: %s", exc)
        log.info("agent %s stopped (%s)", self.settings.agent_id, self.status.state)
