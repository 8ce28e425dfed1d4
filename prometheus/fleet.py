"""The queue-level Prometheus view, read from Redis when Prometheus scrapes.

Served by ``launchbay exporter`` and by ``launchbay ui`` on ``/metrics``. One scrape reads every
queue's job index (``{ns}:jobs:{queue}``) and a few fields of each record it names, the fleet summary
(every agent's liveness, status and capacity): no state is kept between scrapes, so any number of
exporters may run. Every metric is listed in docs/metrics.md.

Records may carry ``submitter`` (who enqueued the job) and ``pending_reason`` (why a queued job
waits); where they do not, the label says ``unknown``. A multi-node job is one record, so it counts
once however many agents run its members.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import redis
from launchbay.queue_config import agents as agent_view
from launchbay.queue_config import gang, pending
from launchbay.queue_config.acl import UNKNOWN_SUBMITTER
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import PRIORITIES
from launchbay.queue_config.store import QueueStore
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from launchbay.text import as_text

UNKNOWN = "unknown"
#: The pending reasons a depth label may name: the pending pass's and the gang service's (multi-node jobs).
PENDING_LABELS = frozenset(pending.CODES + gang.PENDING_CODES)
JOB_FIELDS = ("state", "priority", "submitter", "pending_reason", "queued_at")
#: Agent hash statuses that mean the agent left on purpose, so its missing heartbeat is not a loss.
STOPPED_STATUSES = frozenset({"stopped"})
GPU_HEALTH_STATES = ("ok", "unhealthy", "drained")


@dataclass
class QueueView:
    """What one scrape read about one queue."""

    name: str
    paused: bool
    depth: Dict[Tuple[str, str], int] = field(default_factory=dict)  # (priority, pending reason) -> jobs
    jobs: Dict[Tuple[str, str], int] = field(default_factory=dict)  # (state, user) -> jobs
    oldest_queued_at: Optional[float] = None


def read_queue(conn: redis.Redis, keys: Keys, store: QueueStore, name: str) -> QueueView:
    """Counts the queue's jobs by state and user, and its queued ones by priority and pending reason."""
    view = QueueView(name=name, paused=store.is_paused(name))
    ids = [as_text(job_id) for job_id in conn.zrange(keys.queue_jobs(name), 0, -1)]
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(keys.job(job_id), *JOB_FIELDS)
        replies = pipe.execute()
    for job_id, values in zip(ids, replies):
        record = JobRecord.from_values(job_id, JOB_FIELDS, values)
        known = record.state
        if known is None:  # the record expired (its id lingers in the index), or a state that is none of ours
            continue
        # Labels only from bounded sets: a submitter may write anything into her own records, and
        # every distinct value would be a new series. The user is whom the key names (acl.py).
        user = record.submitter or UNKNOWN_SUBMITTER
        view.jobs[(known.value, user)] = view.jobs.get((known.value, user), 0) + 1
        if known is not State.QUEUED:
            continue
        priority, reason = record.priority, record.pending_reason
        key = (priority if priority in PRIORITIES else UNKNOWN, reason if reason in PENDING_LABELS else UNKNOWN)
        view.depth[key] = view.depth.get(key, 0) + 1
        since = record.times.get(State.QUEUED.value)
        if since is None:
            continue
        view.oldest_queued_at = since if view.oldest_queued_at is None else min(view.oldest_queued_at, since)
    return view


def read_agents(conn: redis.Redis, keys: Keys) -> List[Dict[str, Any]]:
    """Every registered agent: id, live (heartbeat current), status, its capacity JSON (or {}).

    From the fleet summary (``agents.read_summary``): one read whatever the fleet's size."""
    now_ms, lines = agent_view.read_summary(conn, keys)
    return [
        {
            "agent_id": line.agent_id,
            "live": line.alive(now_ms),
            "status": line.info.get("status") or UNKNOWN,
            "capacity": line.capacity or {},
        }
        for line in lines
    ]


def agent_state(agent: Dict[str, Any]) -> str:
    """``live``; ``stopped`` (left on purpose); ``lost`` (heartbeat gone, the reaper has not freed it yet)."""
    if agent["live"]:
        return "live"
    return "stopped" if agent["status"] in STOPPED_STATUSES else "lost"


class QueueCollector(Collector):
    """Queue depth, jobs by state and user, oldest queued age, agents and their GPUs' health."""

    def __init__(self, conn: redis.Redis, keys: Optional[Keys] = None) -> None:
        self.conn = conn
        self.keys = keys or Keys.from_env()

    def collect(self) -> Iterator[Metric]:
        try:
            store = QueueStore(self.conn, self.keys)
            queues = [read_queue(self.conn, self.keys, store, name) for name in store.names()]
            agents = read_agents(self.conn, self.keys)
        except redis.RedisError:
            yield GaugeMetricFamily("launchbay_redis_up", "1 when Redis answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("launchbay_redis_up", "1 when Redis answered this scrape.", value=1)
        yield from queue_metrics(queues, time.time())
        yield from agent_metrics(agents)


def queue_metrics(queues: List[QueueView], now: float) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "launchbay_queue_depth",
        "Queued jobs waiting for an agent, by priority and pending reason.",
        labels=["queue", "priority", "pending_reason"],
    )
    jobs = GaugeMetricFamily(
        "launchbay_jobs", "Jobs whose record is kept, by queue, state and submitter.", labels=["queue", "state", "user"]
    )
    oldest = GaugeMetricFamily(
        "launchbay_queue_oldest_queued_age_seconds",
        "How long the queue's oldest queued job has waited (0 when none waits).",
        labels=["queue"],
    )
    paused = GaugeMetricFamily("launchbay_queue_paused", "1 when the queue is paused.", labels=["queue"])
    for queue in queues:
        for (priority, reason), count in sorted(queue.depth.items()):
            depth.add_metric([queue.name, priority, reason], count)
        if not queue.depth:  # a series at 0, so "depth > 0" alerts resolve and graphs do not break
            depth.add_metric([queue.name, "normal", UNKNOWN], 0)
        for (state, user), count in sorted(queue.jobs.items()):
            jobs.add_metric([queue.name, state, user], count)
        age = max(0.0, now - queue.oldest_queued_at) if queue.oldest_queued_at is not None else 0.0
        oldest.add_metric([queue.name], age)
        paused.add_metric([queue.name], int(queue.paused))
    yield from (depth, jobs, oldest, paused)


def agent_metrics(agents: List[Dict[str, Any]]) -> Iterator[Metric]:
    counts = dict.fromkeys(("live", "lost", "stopped"), 0)
    up = GaugeMetricFamily(
        "launchbay_agent_live", "1 while a registered agent's heartbeat is current.", labels=["agent"]
    )
    gpus: Dict[Tuple[str, str], int] = {}
    for agent in agents:
        state = agent_state(agent)
        counts[state] += 1
        up.add_metric([agent["agent_id"]], int(state == "live"))
        if state != "live":
            continue
        for gpu in agent["capacity"].get("gpus") or []:
            key = (agent["agent_id"], str(gpu.get("health") or "ok"))
            gpus[key] = gpus.get(key, 0) + 1
    by_state = GaugeMetricFamily(
        "launchbay_agents", "Registered agents: live, lost (not yet reaped), stopped.", labels=["state"]
    )
    for state, count in counts.items():
        by_state.add_metric([state], count)
    health = GaugeMetricFamily(
        "launchbay_gpus",
        "GPUs of live agents by health (ok, unhealthy = quarantined, drained).",
        labels=["agent", "health"],
    )
    for (agent_id, state), count in sorted(gpus.items()):
        health.add_metric([agent_id, state], count)
    yield from (by_state, up, health)


def queue_registry(conn: redis.Redis, keys: Optional[Keys] = None) -> CollectorRegistry:
    """A registry holding only the queue collector (no process metrics: several exporters may share a host)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(conn, keys))
    return registry
