"""The agent's Prometheus endpoint: ``/metrics`` on ``--metrics-port`` (off unless asked for).

Almost everything is computed when Prometheus scrapes (:class:`AgentCollector`): the agent's
counters, its ledger, the records of the jobs in it, its capacity JSON and the GPUs it last saw.
The only state kept here is the two latency histograms, which must see every job once:
:class:`JobTimings` observes a job's claim latency (enqueued -> claimed) and start latency
(claimed -> running) from the timestamps in its record, whichever of the claim, a scrape or the
job's end sees them first. The daemon's hooks are three calls: :meth:`AgentMetrics.job_claimed`,
:meth:`AgentMetrics.job_ended` and :meth:`AgentMetrics.serve` / :meth:`AgentMetrics.close`.

Every metric is listed in docs/metrics.md. Sizes are bytes, durations seconds, utilization a 0-1
ratio, as Prometheus names them. A value nvidia-smi does not know has no sample.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Protocol, Set, Tuple

import redis
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.notices import RELEASED_FIELDS
from launchbay.queue_config import gang
from launchbay.queue_config.job import ACTIVE_STATES, TERMINAL_STATES, JobRecord, State
from launchbay.queue_config.keys import Keys
from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from launchbay import __version__
from launchbay.errors import ConfigError


class Agent(Protocol):
    """What the metrics read of the running agent (``launchbay.agent.daemon.Agent``), at scrape time."""

    settings: Any
    conn: redis.Redis
    keys: Keys
    ledger: Any
    inventory: Any
    status: Any
    counters: Any

    def capacity_json(self) -> Dict[str, Any]: ...


log = logging.getLogger(__name__)

MIB = 1 << 20
GPU_LABELS = ("index", "uuid", "model")
GPU_HEALTH_STATES = ("ok", "unhealthy", "drained")
#: Job waits run from seconds (an idle agent) to days (a starving queue).
CLAIM_BUCKETS_S = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
#: Image pulls make starts take from under a second to many minutes.
START_BUCKETS_S = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
#: Counters of the daemon (``daemon.COUNTER_NAMES``) shown as ``launchbay_agent_<name>_total``.
PLAIN_COUNTERS = {
    "claims": ("claimed", "Jobs this agent claimed since it started."),
    "claim_races_lost": ("lost_races", "Claims another agent won first, since this agent started."),
    "jobs_adopted": ("adopted", "Running jobs adopted from an earlier process with the same agent id."),
    "reaped_jobs": ("reaped_jobs", "Jobs of lost agents this agent's reaper freed."),
}
#: The states of a multi-node job's member this agent may hold (gang.py), and one for anything else.
GANG_MEMBER_STATES = (gang.HELD, gang.READY, gang.RUNNING, "unknown")
#: What the metrics read of a job's record: the fields a released notice carries.
RECORD_TIMES = RELEASED_FIELDS


class JobTimings:
    """The claim and start latency histograms; each job attempt is observed once per histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.claim = Histogram(
            "launchbay_agent_claim_latency_seconds",
            "Time from a job's enqueue (or requeue) to its claim by this agent.",
            registry=registry,
            buckets=CLAIM_BUCKETS_S,
        )
        self.start = Histogram(
            "launchbay_agent_start_latency_seconds",
            "Time from a job's claim to its container running (image pull, create, start).",
            registry=registry,
            buckets=START_BUCKETS_S,
        )
        self._lock = threading.Lock()
        self._seen: Set[Tuple[str, str, Any]] = set()

    def note(self, job_id: str, record: JobRecord) -> None:
        """Observe whatever this record newly shows: its claim, its start."""
        attempt = record.attempts
        queued, starting, running = (record.times.get(s.value) for s in (State.QUEUED, State.STARTING, State.RUNNING))
        if queued and starting and starting >= queued:
            self._observe_once(self.claim, (job_id, "claim", attempt), starting - queued)
        if starting and running and running >= starting:
            self._observe_once(self.start, (job_id, "start", attempt), running - starting)

    def forget(self, job_id: str) -> None:
        """The job left this agent: drop what was remembered about it (a requeue counts afresh)."""
        with self._lock:
            self._seen = {key for key in self._seen if key[0] != job_id}

    def _observe_once(self, histogram: Histogram, key: Tuple[str, str, Any], value_s: float) -> None:
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        histogram.observe(value_s)


def _read_job_records(conn: redis.Redis, keys: Keys, job_ids: Iterable[str]) -> Dict[str, JobRecord]:
    """The records of ``job_ids``, as far as the metrics read them (:data:`RECORD_TIMES`)."""
    job_ids = list(job_ids)
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(keys.job(job_id), *RECORD_TIMES)
        replies = pipe.execute()
    return {job_id: JobRecord.from_values(job_id, RECORD_TIMES, values) for job_id, values in zip(job_ids, replies)}


class AgentCollector(Collector):
    """Builds every agent metric from the agent's state when Prometheus scrapes."""

    def __init__(self, agent: Agent, timings: JobTimings) -> None:
        self.agent = agent
        self.timings = timings

    def collect(self) -> Iterator[Metric]:
        redis_up, entries, records = self._redis_view()
        capacity = self.agent.capacity_json()
        yield from self._health(redis_up)
        yield from self._counters()
        yield _jobs_by_state(entries, records)
        yield self._gang_members(entries, redis_up)
        yield from _resources(capacity, entries.values())
        yield from gpu_metrics(gpu_views(capacity, self.agent.inventory.gpus, entries.values(), records))

    def _redis_view(self) -> Tuple[bool, Dict[str, LedgerEntry], Dict[str, JobRecord]]:
        """(Redis answered, ledger entries, their records); Redis down shows as redis_up 0, not a failed scrape."""
        try:
            entries = self.agent.ledger.entries()
            records = _read_job_records(self.agent.conn, self.agent.keys, entries)
        except redis.RedisError as exc:
            log.debug("metrics: Redis did not answer: %s", exc)
            return False, {}, {}
        for job_id, record in records.items():
            self.timings.note(job_id, record)
        return True, entries, records

    def _gang_members(self, entries: Mapping[str, LedgerEntry], redis_up: bool) -> Metric:
        """The members of multi-node jobs this agent holds or runs, by their state in the member table."""
        counts = dict.fromkeys(GANG_MEMBER_STATES, 0)
        members = [e for e in entries.values() if e.gang_rank is not None]
        if members and redis_up:
            try:
                with self.agent.conn.pipeline(transaction=False) as pipe:
                    for entry in members:
                        pipe.hgetall(self.agent.keys.gang(entry.job_id))
                    tables = [gang.parse(raw) for raw in pipe.execute()]
            except redis.RedisError:
                tables = [gang.Gang() for _ in members]
            for entry, table in zip(members, tables):
                member = (table.members or {}).get(entry.gang_rank)
                state = member.state if member is not None and member.round == entry.gang_round else "unknown"
                counts[state if state in counts else "unknown"] += 1
        family = GaugeMetricFamily(
            "launchbay_agent_gang_members",
            "Members of multi-node jobs this agent holds or runs, by member state (also counted in launchbay_agent_jobs).",
            labels=["state"],
        )
        for state, count in counts.items():
            family.add_metric([state], count)
        return family

    def _health(self, redis_up: bool) -> Iterator[Metric]:
        settings = self.agent.settings
        info = InfoMetricFamily("launchbay_agent", "This agent: its id, host, queues and launchbay version.")
        info.add_metric(
            [],
            {
                "agent": settings.agent_id,
                "host": settings.host,
                "queues": ",".join(settings.queues),
                "version": __version__,
            },
        )
        yield info
        yield GaugeMetricFamily("launchbay_agent_redis_up", "1 when Redis answered this scrape.", value=int(redis_up))
        docker_up = int(self.agent.status.docker == "up")
        yield GaugeMetricFamily(
            "launchbay_agent_docker_up", "1 when the Docker engine answered the agent's last check.", value=docker_up
        )

    def _counters(self) -> Iterator[Metric]:
        counts = self.agent.counters.snapshot()
        for name, (counter, text) in PLAIN_COUNTERS.items():
            yield CounterMetricFamily(f"launchbay_agent_{name}", text, value=counts.get(counter, 0))
        ended = CounterMetricFamily(
            "launchbay_agent_jobs_ended",
            "Jobs that ended on this agent since it started, by final state.",
            labels=["state"],
        )
        for state in sorted(s.value for s in TERMINAL_STATES):
            ended.add_metric([state], counts.get(state, 0))
        yield ended


def _jobs_by_state(entries: Mapping[str, LedgerEntry], records: Mapping[str, JobRecord]) -> Metric:
    counts = dict.fromkeys(sorted(s.value for s in ACTIVE_STATES), 0)
    for job_id in entries:
        record = records.get(job_id)
        known = record.state if record is not None else None  # the record is its submitter's to write: no label from it
        state = known.value if known is not None else "unknown"
        counts[state] = counts.get(state, 0) + 1
    family = GaugeMetricFamily(
        "launchbay_agent_jobs", "Jobs this agent holds resources for, by their record's state.", labels=["state"]
    )
    for state, count in sorted(counts.items()):
        family.add_metric([state], count)
    return family


def _resources(capacity: Mapping[str, Any], entries: Iterable[LedgerEntry]) -> Iterator[Metric]:
    entries = list(entries)
    gpus_allocated = {gpu for entry in entries for gpu in entry.gpus}
    yield GaugeMetricFamily("launchbay_agent_cpus", "CPUs this agent may hand out.", value=capacity.get("cpus") or 0)
    yield GaugeMetricFamily(
        "launchbay_agent_cpus_allocated", "CPUs held by this agent's jobs.", value=sum(e.cpus for e in entries)
    )
    yield GaugeMetricFamily(
        "launchbay_agent_memory_bytes", "Memory this agent may hand out.", value=(capacity.get("memory_mib") or 0) * MIB
    )
    yield GaugeMetricFamily(
        "launchbay_agent_memory_allocated_bytes",
        "Memory held by this agent's jobs.",
        value=sum(e.memory_mib for e in entries) * MIB,
    )
    yield GaugeMetricFamily("launchbay_agent_gpus", "GPUs this agent sees.", value=len(capacity.get("gpus") or []))
    yield GaugeMetricFamily(
        "launchbay_agent_gpus_allocated", "GPUs held by this agent's jobs.", value=len(gpus_allocated)
    )
    yield GaugeMetricFamily(
        "launchbay_agent_job_slots", "Most jobs this agent runs at once.", value=capacity.get("max_jobs") or 0
    )


def gpu_views(
    capacity: Mapping[str, Any],
    inventory_gpus: Iterable[Any],
    entries: Iterable[LedgerEntry],
    records: Mapping[str, JobRecord],
) -> List[Dict[str, Any]]:
    """Each GPU of the capacity JSON, with what nvidia-smi last said and the job holding it.

    Health, temperature and the other fields of the GPU contract (docs/architecture.md) are read
    from the capacity entry, else from the inventory's GPU object; missing means unknown (health "ok").
    """
    by_id = {str(gpu.id): gpu for gpu in inventory_gpus}
    holder = {gpu: entry.job_id for entry in entries for gpu in entry.gpus}
    views = []
    for entry in capacity.get("gpus") or []:
        gpu_id = str(entry.get("id"))
        info = by_id.get(gpu_id)

        def field(name: str, entry: Mapping[str, Any] = entry, info: Any = info) -> Any:
            return entry[name] if entry.get(name) is not None else getattr(info, name, None)

        views.append(
            {
                "index": gpu_id,
                "uuid": str(entry.get("uuid") or ""),
                "model": str(entry.get("name") or ""),
                "job_id": holder.get(gpu_id),
                "memory_total_mib": field("memory_total_mib"),
                "memory_used_mib": field("memory_used_mib"),
                "utilization_pct": field("utilization_pct"),
                "temperature_c": field("temperature_c"),
                "health": str(field("health") or "ok"),
                "health_reason": str(field("health_reason") or ""),
            }
        )
    return views


def gpu_metrics(views: List[Mapping[str, Any]]) -> Iterator[Metric]:
    """The per-GPU families, labelled index, uuid, model."""
    labels = list(GPU_LABELS)
    allocated = GaugeMetricFamily("launchbay_agent_gpu_allocated", "1 when a job holds this GPU.", labels=labels)
    job = GaugeMetricFamily(
        "launchbay_agent_gpu_job", "1 for the job that holds this GPU (label job_id).", labels=[*labels, "job_id"]
    )
    health = GaugeMetricFamily(
        "launchbay_agent_gpu_health",
        "1 for the GPU's health state (ok, unhealthy = quarantined, drained), 0 for the others.",
        labels=[*labels, "state"],
    )
    reason = GaugeMetricFamily(
        "launchbay_agent_gpu_unhealthy_reason", "1 with the reason a GPU is not ok.", labels=[*labels, "reason"]
    )
    numbers = {
        "memory_used_mib": GaugeMetricFamily(
            "launchbay_agent_gpu_memory_used_bytes", "GPU memory in use.", labels=labels
        ),
        "memory_total_mib": GaugeMetricFamily(
            "launchbay_agent_gpu_memory_bytes", "GPU memory in total.", labels=labels
        ),
        "utilization_pct": GaugeMetricFamily(
            "launchbay_agent_gpu_utilization_ratio", "GPU utilization, 0 to 1.", labels=labels
        ),
        "temperature_c": GaugeMetricFamily(
            "launchbay_agent_gpu_temperature_celsius", "GPU temperature.", labels=labels
        ),
    }
    # Multiply or divide by an exact number: 82 * 0.01 is 0.8200000000000001, 82 / 100 is 0.82.
    to_base = {
        "memory_used_mib": lambda mib: mib * MIB,
        "memory_total_mib": lambda mib: mib * MIB,
        "utilization_pct": lambda pct: pct / 100,
        "temperature_c": lambda celsius: celsius,
    }
    for view in views:
        values = [view[name] for name in GPU_LABELS]
        allocated.add_metric(values, int(view["job_id"] is not None))
        if view["job_id"] is not None:
            job.add_metric([*values, view["job_id"]], 1)
        for state in GPU_HEALTH_STATES:
            health.add_metric([*values, state], int(view["health"] == state))
        if view["health"] != "ok":
            reason.add_metric([*values, view["health_reason"] or "unknown"], 1)
        for name, family in numbers.items():
            if view[name] is not None:
                family.add_metric(values, to_base[name](view[name]))
    yield from (allocated, job, health, reason, *numbers.values())


class AgentMetrics:
    """The agent's registry, its histograms and the HTTP server (started only with a metrics port)."""

    def __init__(self, agent: Agent) -> None:
        disable_created_metrics()  # no `_created` series beside the histograms: nothing reads them here
        self.agent = agent
        self.registry = CollectorRegistry(auto_describe=False)
        self.timings = JobTimings(self.registry)
        self.registry.register(AgentCollector(agent, self.timings))
        self._server: Any = None
        self.address: Optional[str] = None

    def job_claimed(self, job_id: str, record: JobRecord) -> None:
        self.timings.note(job_id, record)

    def job_ended(self, job_id: str, record: Optional[JobRecord] = None) -> None:
        """Observe a start that no scrape saw (short jobs), then forget the job; ``record``: its
        :data:`RECORD_TIMES` as the release read them (else they are read here)."""
        try:
            if record is None:
                record = _read_job_records(self.agent.conn, self.agent.keys, [job_id])[job_id]
        except redis.RedisError:
            record = JobRecord(job_id, state=None)
        self.timings.note(job_id, record)
        self.timings.forget(job_id)

    def serve(self) -> None:
        """Start ``/metrics`` when the settings name a port; one that cannot be bound is a ConfigError (exit 2)."""
        settings = self.agent.settings
        if settings.metrics_port is None:
            return
        try:
            self._server, _thread = start_http_server(
                settings.metrics_port, addr=settings.metrics_host, registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port: cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} ({exc}); "
                "choose a free port or leave --metrics-port out"
            ) from exc
        host, port = self._server.server_address[:2]
        self.address = f"http://{host}:{port}/metrics"
        log.info("metrics: serving %s", self.address, extra={"agent_id": settings.agent_id})

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
