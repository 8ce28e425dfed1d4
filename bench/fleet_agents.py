"""The fleet simulator's agents: many in one process, each the agent's own claim pass, ledger, heartbeat,
idle offer and reaper (``agent/*``) against the real Redis, driven by one event loop per process.

What differs from ``launchbay agent``: no thread per agent (a process's agents share one Redis
connection and one PUBSUB subscribed to all their wake channels); containers are the fake runtime's
timers, here a finish time per claimed job (the runtime's ``ping`` is asked each pass, as the daemon
does); no inventory probe (a fixed capacity) and no metrics port.
"""

from __future__ import annotations

import heapq
import queue
import random
import threading
import time
from typing import Any, Dict, List, Tuple

import redis
from launchbay.agent.claim import Claimer, ClaimPass, QueueReader
from launchbay.agent.claim_cycle import MAX_CLAIMS_PER_PASS
from launchbay.agent.counters import Counters, EventListener
from launchbay.agent.heartbeat import AgentStatus, Heartbeat
from launchbay.agent.inventory import HostInventory, capacity_json
from launchbay.agent.ledger import Ledger
from launchbay.agent.placement import Policy
from launchbay.agent.reaper import Reaper, lock_ttl_for
from launchbay.agent.runtime_fake import FakeRuntime
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config import lifecycle
from launchbay.queue_config.job import Outcome, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.matching import Capacity
from launchbay.queue_config.store import QueueStore

#: Modes the driver sets in a shared value: heartbeats only, or everything an agent does.
HEARTBEATS_ONLY, FULL = 0, 1


class SimAgent:
    """One agent's state and its three periodic acts (beat, pass, reap)."""

    def __init__(
        self, conn: redis.Redis, keys: Keys, settings: AgentSettings, capacity: Capacity, run_s: float
    ) -> None:
        self.id, self.settings, self.capacity, self.run_s = settings.agent_id, settings, capacity, run_s
        self.records, self.runtime = Records(conn, keys), FakeRuntime()
        # A host of the fleet as the inventory probe would see it (no GPUs): what the heartbeat publishes.
        inventory = HostInventory(settings.host, capacity.cpus, capacity.memory_mib, capacity.memory_mib, ())
        self.ledger = Ledger(conn, keys, self.id)
        self.counters = Counters()
        self.heartbeat = Heartbeat(
            conn,
            keys,
            settings,
            status=AgentStatus(state="healthy", docker="up"),
            capacity=lambda: capacity_json(settings, inventory),
            counters=self.counters.snapshot,
        )
        self.reaper = Reaper(
            conn,
            keys,
            agent_id=self.id,
            queue_config_for=QueueStore(conn, keys).get,
            lock_ttl_s=lock_ttl_for(settings.reaper_interval_s),
            hold_s=settings.reaper_interval_s,
        )
        self.listener = EventListener(
            conn, keys, settings.queues, wake=threading.Event(), cancels=queue.SimpleQueue(), closing=threading.Event()
        )
        self.listener.agent_id = self.id
        self.claimer = Claimer(conn, keys, agent_id=self.id, host=settings.host)
        self.reader = QueueReader(conn, keys, self.id, settings.queues, settings.lookahead)
        self.policy = Policy(reserve_after_s=settings.reserve_after_s)
        self.running: Dict[str, float] = {}  # job id -> when its fake container exits

    def claim_pass(self, now: float) -> List[Tuple[float, str]]:
        """``ClaimCycle.run_pass``: offer, claim until nothing fits, off the idle list when full; the new (end, job)."""
        self.runtime.ping()
        self.listener.offer(len(self.running), self.capacity.slots)
        claims = ClaimPass(self.claimer, self.reader, policy=self.policy, skip=set(self.running))
        ended = []
        for _ in range(MAX_CLAIMS_PER_PASS):
            got = claims.next(self.capacity)
            if got is None:
                break
            job_id = got[0].job_id
            self.counters.inc("claimed")
            lifecycle.mark_running(self.records, job_id, container=f"fake-{job_id}")
            self.running[job_id] = now + self.run_s
            ended.append((self.running[job_id], job_id))
        self.counters.inc("lost_races", claims.lost_races)
        self.listener.offer(len(self.running), self.capacity.slots, again=True)
        return ended

    def finish(self, job_id: str) -> None:
        """The fake container exited 0: record the end and free the ledger, as the supervisor does."""
        self.running.pop(job_id, None)
        lifecycle.end(self.records, job_id, Outcome(State.FINISHED, None, 0, ""))
        self.ledger.release(job_id)
        self.counters.inc("finished")


class Loop:
    """One process's agents: wakes from their channels, and a timer heap for beats, polls, reaps and job ends."""

    def __init__(self, url: str, settings: List[AgentSettings], capacity: Capacity, run_s: float, mode: Any) -> None:
        self.conn, self.keys, self.mode = redis.Redis.from_url(url), Keys(), mode
        self.agents = {s.agent_id: SimAgent(self.conn, self.keys, s, capacity, run_s) for s in settings}
        self.timers: List[Tuple[float, str, str, str]] = []  # (when, what, agent id, job id)
        self.pubsub = self.conn.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(*[self.keys.agent_events(a) for a in self.agents])
        self.passes = 0

    def start(self) -> None:
        """Every agent beats and makes its first pass (which puts it on the idle list); timers staggered."""
        now = time.monotonic()
        for agent in self.agents.values():
            agent.heartbeat.beat()
            agent.reaper.run_once()
            self._pass(agent, now)
            settings = agent.settings
            self._at(now + random.uniform(0, settings.heartbeat_interval_s), "beat", agent.id)
            self._at(now + random.uniform(0, settings.poll_interval_s), "poll", agent.id)
            self._at(now + random.uniform(0, settings.reaper_interval_s), "reap", agent.id)

    def _at(self, when: float, what: str, agent_id: str, job_id: str = "") -> None:
        heapq.heappush(self.timers, (when, what, agent_id, job_id))

    def _pass(self, agent: SimAgent, now: float) -> None:
        self.passes += 1
        for when, job_id in agent.claim_pass(now):
            self._at(when, "end", agent.id, job_id)

    def run_until(self, stop: Any) -> None:
        while not stop.is_set():
            wait = max(0.0, min(0.05, self.timers[0][0] - time.monotonic())) if self.timers else 0.05
            message = self.pubsub.get_message(timeout=wait)
            woken = set()
            while message is not None:
                woken.add(message["channel"].decode().rsplit(":", 1)[-1])
                message = self.pubsub.get_message(timeout=0)
            now = time.monotonic()
            for agent_id in woken:
                self._pass(self.agents[agent_id], now)
            while self.timers and self.timers[0][0] <= now:
                _, what, agent_id, job_id = heapq.heappop(self.timers)
                self._timer(what, self.agents[agent_id], job_id, now)

    def _timer(self, what: str, agent: SimAgent, job_id: str, now: float) -> None:
        settings, full = agent.settings, self.mode.value == FULL
        if what == "end":
            agent.finish(job_id)
            self._pass(agent, now)  # the daemon's release wakes its own loop
        elif what == "beat":
            agent.heartbeat.beat()
            self._at(now + settings.heartbeat_interval_s, "beat", agent.id)
        elif what == "poll":
            if full:
                self._pass(agent, now)
            self._at(now + settings.poll_interval_s, "poll", agent.id)
        elif what == "reap":
            if full:
                agent.reaper.run_once()
            expiry = agent.reaper.next_expiry_s
            self._at(now + min(settings.reaper_interval_s, 0.1 + expiry if expiry else 1e9), "reap", agent.id)

    def report(self) -> Dict[str, int]:
        totals = {"claimed": 0, "lost_races": 0, "finished": 0}
        for agent in self.agents.values():
            for name in totals:
                totals[name] += agent.counters[name]
        return {**totals, "passes": self.passes}


def serve(url: str, settings: List[AgentSettings], capacity: Capacity, run_s: float, shared: Tuple[Any, ...]) -> None:
    """A worker process: build the agents, say ready, loop until ``stop``, report the counts."""
    mode, ready, stop, out = shared
    loop = Loop(url, settings, capacity, run_s, mode)
    loop.start()
    ready.put(len(loop.agents))
    loop.run_until(stop)
    out.put(loop.report())
