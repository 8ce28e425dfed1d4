"""The agent's composition root: it builds the agent's services, runs their threads, stops them.

It decides nothing about jobs. What each service does lives in its module; this one says who is
built with what, who hears which notice, which threads run, and how the agent stops.

The services, each built from arguments (docs/architecture.md draws them):

- claim cycle (``claim_cycle.py``): on the main thread, act on cancel requests and claim jobs one at a
  time until nothing more fits; its ``pending`` thread (``pending_pass.py``) says, every second, why
  the jobs left behind wait and when they may start, for each of its queues whose lease it holds
  (one agent per queue does it for the fleet); its ``events``
  thread (``counters.EventListener``) wakes the loop on ``enqueued`` (sent to this agent when it is
  idle, events.py), ``cancel`` and ``gpu_drain``, so new work starts without waiting for the poll timer;
- housekeeping (``housekeeping.py``): on the main thread, before each claim pass: reap lost agents,
  reconcile and adopt after a restart, sweep orphans, prune log files;
- inventory and GPU health (``inventory_loop.py``): re-reads CPUs, memory and GPUs every
  ``inventory_refresh_s`` and on ``gpu_drain``; a GPU gone, drained or unhealthy gets no new jobs and
  ends the jobs on it (``gpu_health.py``);
- engine health (``engine_health.py``): probes the Docker engine; a sick engine stops claims;
- heartbeat (``heartbeat.py``): every ``heartbeat_interval_s``, the alive key, status and capacity,
  and its line of the fleet summary (again at each claim and release); it also finds cancel
  requests of this agent's jobs for the claim cycle;
- sweeps (``sweeps/driver.py``): drives the open sweeps of its queues whose lease it holds or can take;
- metrics exposition (``prometheus/agent.py``): ``/metrics`` on ``--metrics-port``, when asked for;
- the supervisor (``supervisor.py``): one thread per job, which calls the claim cycle's ``release``
  once the job's end is recorded.

Notices (``notices.py``): the claim cycle publishes ``JobStarted`` before it hands a job over, and
``release`` publishes ``JobReleased``. The subscribers, in the order they hear it, are set up in
:meth:`Agent._subscribe`.

Stopping: SIGTERM/SIGINT stop claiming; running containers are left running for the next agent
process with the same id to adopt (within heartbeat TTL + grace, or the reaper frees the jobs), and
the agent hash says ``stopping``. With ``drain`` the agent waits for its jobs instead (a second
signal stops waiting). ``once`` claims until nothing fits, waits for its jobs, and exits.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Dict, List, Optional

import redis
from launchbay.agent.basics import AgentBasics, start_thread
from launchbay.agent.claim_cycle import ClaimCycle
from launchbay.agent.engine_health import EngineHealth
from launchbay.agent.heartbeat import Heartbeat
from launchbay.agent.housekeeping import Housekeeping
from launchbay.agent.inventory_loop import InventoryLoop
from launchbay.agent.runtime import Runtime
from launchbay.agent.settings import AgentSettings
from launchbay.agent.supervisor import JobSupervisor
from launchbay.prometheus.agent import AgentMetrics
from launchbay.sweeps.driver import SweepDriver

from launchbay.errors import DockerUnavailableError

log = logging.getLogger(__name__)


class Agent:
    """One agent process. Build it with its settings, a Redis connection and a runtime, then :meth:`run` it."""

    def __init__(self, settings: AgentSettings, *, conn: redis.Redis, runtime: Runtime) -> None:
        self.settings = settings
        self.basics = basics = AgentBasics.connect(settings, conn)
        flags = basics.flags
        self._drain = settings.drain
        self._threads: List[threading.Thread] = []
        self._last_error: Optional[str] = None
        self.engine = EngineHealth(runtime, basics.status, flags.stopping)
        self.supervisor = JobSupervisor(
            basics.run_context(
                runtime,
                release=lambda job_id, entry: self.claims.release(job_id, entry),
                gpu_uuid_for=lambda gpu_id: self.host.gpu_uuid_for(gpu_id),
                engine_trouble=self.engine.report,
            )
        )
        self.host = InventoryLoop(
            conn,
            basics.keys,
            settings,
            records=basics.records,
            queue_config_for=basics.configs.get,
            status=basics.status,
            closing=flags.closing,
            on_change=flags.wake.set,
            ledger=basics.ledger,
            running=self.supervisor.running_job_ids,
            end_with=self.supervisor.end_with,
        )
        self.claims = self._claim_cycle(basics)
        self.housekeeping = Housekeeping(
            conn,
            basics.keys,
            settings,
            records=basics.records,
            ledger=basics.ledger,
            runtime=runtime,
            supervisor=self.supervisor,
            counters=basics.counters,
            queue_config_for=basics.configs.get,
            held=lambda: self.claims.gangs.held_ids(),
        )
        self.heartbeat = Heartbeat(
            conn,
            basics.keys,
            settings,
            status=basics.status,
            capacity=self.host.capacity_json,
            counters=basics.counters.snapshot,
        )
        self.sweeps = SweepDriver(conn, basics.keys, settings.agent_id, settings.queues, flags.closing)
        self.metrics = AgentMetrics(self)
        self._subscribe()

    def _claim_cycle(self, basics: AgentBasics) -> ClaimCycle:
        return ClaimCycle(
            basics.conn,
            basics.keys,
            self.settings,
            records=basics.records,
            supervisor=self.supervisor,
            counters=basics.counters,
            notices=basics.notices,
            capacity=self.host.capacity,
            queue_config_for=basics.configs.get,
            config_seen=basics.configs.seen,
            wake=basics.flags.wake,
            stopping=basics.flags.stopping,
            closing=basics.flags.closing,
            on_drain=self.host.look_again,
            ledger=basics.ledger,
        )

    def _subscribe(self) -> None:
        """Who hears a job start or end here. Released: counted first, so whoever sees the ledger empty also
        sees the counts; then the ledger entry is freed; then the loops that may now start work wake up."""
        notices, counters = self.basics.notices, self.basics.counters
        notices.on_started(lambda notice: self.metrics.job_claimed(notice.job_id, notice.record))
        # the fleet summary's line says what the ledger holds now (claimed: by the claim script)
        notices.on_started(lambda notice: self.heartbeat.publish_jobs())
        notices.on_released(lambda notice: counters.count_release(notice.state))
        notices.on_released(lambda notice: self.metrics.job_ended(notice.job_id, notice.record))
        notices.on_released(lambda notice: self.basics.ledger.release(notice.job_id, notice.entry))
        notices.on_released(lambda notice: self.heartbeat.publish_jobs())
        # (the claim cycle forgets the job's cancel on its own subscription, made when it was built)
        notices.on_released(lambda notice: self.basics.flags.wake.set())
        # a trial's end: its sweep's next trial without waiting for the next pass
        notices.on_released(lambda notice: self.sweeps.job_ended())

    # -- what the metrics and the tests read ------------------------------------------------------

    @property
    def conn(self) -> redis.Redis:
        return self.basics.conn

    @property
    def keys(self) -> Any:
        return self.basics.keys

    @property
    def records(self) -> Any:
        return self.basics.records

    @property
    def ledger(self) -> Any:
        return self.basics.ledger

    @property
    def counters(self) -> Any:
        return self.basics.counters

    @property
    def status(self) -> Any:
        return self.basics.status

    @property
    def inventory(self) -> Any:
        return self.host.current

    def capacity(self) -> Any:
        return self.host.capacity()

    def capacity_json(self) -> Dict[str, Any]:
        return self.host.capacity_json()

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
        flags = self.basics.flags
        self.metrics.serve()
        self.heartbeat.beat()
        self._start_threads()
        try:
            while True:
                flags.wake.clear()
                claimed = self._tick()
                if flags.stopping.is_set() or (once and self.housekeeping.reconciled and not claimed and self._idle()):
                    break
                flags.wake.wait(min(self.settings.poll_interval_s, self.housekeeping.seconds_to_next_reap()))
        finally:
            self._shutdown(drain=self._drain or once)
        return 0

    def request_stop(self, *, drain: Optional[bool] = None) -> None:
        """Stop claiming and leave (signal handlers call this); a second call during a drain stops waiting."""
        flags = self.basics.flags
        if flags.stopping.is_set():
            flags.escalated.set()
        if drain is not None:
            self._drain = drain
        self.basics.status.state = "draining" if self._drain else "stopping"
        flags.stopping.set()
        flags.wake.set()

    def _idle(self) -> bool:
        return not self.supervisor.running_job_ids() and not self.basics.ledger.entries()

    def _tick(self) -> int:
        """One pass of the main loop; returns how many jobs it claimed."""
        try:
            # First, so that every pass moves the timer on and the loop's wait never spins when Redis is away.
            self.housekeeping.reap_if_due()
            self.claims.handle_cancels()
            if not self.engine.check():
                return 0
            self.housekeeping.tidy()
            claimed = 0 if self.basics.flags.stopping.is_set() else self.claims.run_pass()
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

    # -- background threads ------------------------------------------------------------------------

    def _start_threads(self) -> None:
        flags = self.basics.flags
        threads: Dict[str, Callable[[], None]] = {
            "heartbeat": lambda: self.heartbeat.run_until(
                flags.closing, self.settings.heartbeat_interval_s, on_cancel=self.claims.request_cancel
            ),
            "inventory": self.host.run,
            "events": self.claims.listener.run,
            "engine": lambda: self.engine.run_until(flags.closing, flags.wake),
            "sweeps": self.sweeps.run,
            "pending": lambda: self.claims.pending.run(flags.closing),
        }
        self._threads += [start_thread(name, target) for name, target in threads.items()]

    # -- stopping ----------------------------------------------------------------------------------

    def _shutdown(self, *, drain: bool) -> None:
        status, flags = self.basics.status, self.basics.flags
        if drain:
            status.state = "draining"
            while self.supervisor.running_job_ids() and not flags.escalated.is_set():
                self.claims.handle_cancels()
                self.supervisor.wait_all(timeout_s=0.5)
        if self.supervisor.running_job_ids():
            self.supervisor.detach_all()
            status.state = "stopping"
        else:
            status.state = "stopped"
        flags.closing.set()
        self.sweeps.wake.set()
        self.host.look_again()
        self.metrics.close()
        for thread in self._threads:
            thread.join(timeout=5)
        try:
            self.heartbeat.write_status()  # the final status, without renewing the alive key
        except redis.RedisError as exc:
            log.warning("could not record the final status: %s", exc)
        log.info("agent %s stopped (%s)", self.settings.agent_id, status.state)
