"""The metric builders on their own: GPU cells from the capacity contract, the latency histograms'
once-per-attempt rule, agent liveness and queue series on a real Redis, the UI's /metrics and the
command-line errors. (The full scrape of real processes is test_metrics_scrape.py.)"""

from __future__ import annotations

import json
import socket

import pytest
from conftest import publish_agent_line, run_cli
from launchbay.agent.ledger import LedgerEntry
from launchbay.prometheus.agent import JobTimings, gpu_metrics, gpu_views
from launchbay.prometheus.fleet import queue_registry
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import GpuInfo
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore
from launchbay.ui.app import create_app
from metrics_helpers import Scrape
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

MIB = 1 << 20


class _Fixed(Collector):
    def __init__(self, families) -> None:
        self.families = list(families)

    def collect(self):
        return iter(self.families)


def exposition(families) -> Scrape:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return Scrape(generate_latest(registry).decode())


CAPACITY = {
    "gpus": [
        {"id": "0", "uuid": "GPU-0", "name": "NVIDIA H100 PCIe", "memory_total_mib": 81559, "memory_free_mib": 81080},
        {"id": "1", "uuid": "GPU-1", "name": "NVIDIA H100 PCIe", "memory_total_mib": 81559, "memory_used_mib": 0,
         "utilization_pct": None, "temperature_c": None, "health": "unhealthy",
         "health_reason": "uncorrectable ECC errors: 2"},
        {"id": "2", "uuid": "GPU-2", "name": "NVIDIA H100 PCIe", "memory_total_mib": 81559, "health": "drained",
         "health_reason": "drained by operator", "temperature_c": 44},
    ]
}  # fmt: skip
INVENTORY = [GpuInfo(id="0", uuid="GPU-0", name="NVIDIA H100 PCIe", memory_used_mib=479, utilization_pct=12)]


def test_gpu_cells_read_the_capacity_contract_and_fall_back_to_the_inventory():
    entry = LedgerEntry(job_id="j1", queue="q", cpus=1.0, memory_mib=10, gpus=("0",), claimed_at=0.0)
    views = {v["index"]: v for v in gpu_views(CAPACITY, INVENTORY, [entry], {})}
    assert views["0"]["memory_used_mib"] == 479 and views["0"]["utilization_pct"] == 12  # from nvidia-smi's read
    assert views["0"]["health"] == "ok" and views["0"]["job_id"] == "j1"  # no health field: ok
    assert views["1"]["health"] == "unhealthy" and views["1"]["utilization_pct"] is None
    assert views["2"]["health"] == "drained" and views["2"]["job_id"] is None


def test_a_quarantined_gpu_shows_its_state_and_reason_and_unknown_values_have_no_sample():
    entry = LedgerEntry(job_id="j1", queue="q", cpus=1.0, memory_mib=10, gpus=("0",), claimed_at=0.0)
    seen = exposition(gpu_metrics(gpu_views(CAPACITY, INVENTORY, [entry], {})))
    assert seen.value("launchbay_agent_gpu_health", index="1", state="unhealthy") == 1
    assert seen.value("launchbay_agent_gpu_health", index="1", state="ok") == 0
    assert seen.value("launchbay_agent_gpu_health", index="2", state="drained") == 1
    assert seen.value("launchbay_agent_gpu_unhealthy_reason", index="1") == 1
    assert seen.samples("launchbay_agent_gpu_unhealthy_reason")[0][0]["reason"] == "uncorrectable ECC errors: 2"
    assert [labels["index"] for labels, _ in seen.samples("launchbay_agent_gpu_unhealthy_reason")] == ["1", "2"]
    assert [labels["index"] for labels, _ in seen.samples("launchbay_agent_gpu_utilization_ratio")] == ["0"]
    assert [labels["index"] for labels, _ in seen.samples("launchbay_agent_gpu_temperature_celsius")] == ["2"]
    assert seen.value("launchbay_agent_gpu_memory_used_bytes", index="0") == 479 * MIB
    assert seen.value("launchbay_agent_gpu_job", index="0", job_id="j1", model="NVIDIA H100 PCIe") == 1


def test_each_job_attempt_is_observed_once_per_histogram():
    registry = CollectorRegistry()
    timings = JobTimings(registry)
    claimed = {"attempts": 1, "queued_at": 100.0, "starting_at": 103.0}
    timings.note("j1", JobRecord.from_fields("j1", claimed))
    timings.note("j1", JobRecord.from_fields("j1", claimed))  # a later scrape sees the same claim
    timings.note("j1", JobRecord.from_fields("j1", {**claimed, "running_at": 110.0}))
    timings.note("j1", JobRecord.from_fields("j1", {**claimed, "running_at": 110.0}))
    assert registry.get_sample_value("launchbay_agent_claim_latency_seconds_count") == 1
    assert registry.get_sample_value("launchbay_agent_claim_latency_seconds_sum") == 3.0
    assert registry.get_sample_value("launchbay_agent_start_latency_seconds_sum") == 7.0
    timings.forget("j1")
    requeued = {"attempts": 2, "queued_at": 200.0, "starting_at": 201.0}
    timings.note("j1", JobRecord.from_fields("j1", requeued))  # requeued, claimed again
    assert registry.get_sample_value("launchbay_agent_claim_latency_seconds_count") == 2
    assert registry.get_sample_value("launchbay_agent_start_latency_seconds_count") == 1


@pytest.mark.integration
def test_the_queue_view_shows_lost_and_stopped_agents_and_an_empty_paused_queue(redis_conn):
    keys = Keys()
    store = QueueStore(redis_conn, keys)
    store.apply(QueueConfig(name="idle"))
    store.pause("idle")
    for agent_id, status, alive in (
        ("a-live", "healthy", True),
        ("a-lost", "healthy", False),
        ("a-off", "stopped", False),
    ):
        redis_conn.sadd(keys.agents, agent_id)
        redis_conn.hset(keys.agent(agent_id), "status", status)
        redis_conn.set(keys.agent_capacity(agent_id), json.dumps({"agent_id": agent_id, "gpus": []}))
        if alive:
            redis_conn.set(keys.agent_alive(agent_id), "1", ex=60)
        publish_agent_line(redis_conn, agent_id, alive=alive)
    seen = Scrape(generate_latest(queue_registry(redis_conn, keys)).decode())
    assert seen.value("launchbay_agents", state="live") == 1
    assert seen.value("launchbay_agents", state="lost") == 1
    assert seen.value("launchbay_agents", state="stopped") == 1
    assert seen.value("launchbay_agent_live", agent="a-lost") == 0
    assert seen.total("launchbay_queue_depth", queue="idle") == 0
    assert seen.value("launchbay_queue_oldest_queued_age_seconds", queue="idle") == 0
    assert seen.value("launchbay_queue_paused", queue="idle") == 1


@pytest.mark.integration
def test_the_ui_serves_the_queue_metrics_on_slash_metrics(redis_conn):
    QueueStore(redis_conn, Keys()).apply(QueueConfig(name="gpu"))
    response = create_app(redis_conn, keys=Keys()).test_client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    seen = Scrape(response.get_data(as_text=True))
    assert seen.value("launchbay_queue_paused", queue="gpu") == 0
    assert seen.value("launchbay_redis_up") == 1


def test_a_bad_metrics_port_is_one_line_and_exit_2():
    done = run_cli("agent", "--metrics-port", "70000")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--metrics-port" in done.stderr


@pytest.mark.integration
def test_a_metrics_port_in_use_stops_the_agent_before_it_registers(redis_url, redis_conn, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(
            "agent", "--redis-url", redis_url, "--agent-id", "busy-port", "--state-dir", str(tmp_path),
            "--metrics-port", str(port), env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: --metrics-port: cannot serve metrics on 127.0.0.1:{port}")
    )
    assert not redis_conn.exists(Keys().agent_alive("busy-port"))


@pytest.mark.integration
def test_the_exporter_refuses_a_port_in_use_with_one_line_and_exit_2(redis_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("exporter", "--redis-url", redis_url, "--port", str(port), timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_the_exporter_answers_only_on_slash_metrics():
    from launchbay.cli.metrics_cmds import metrics_wsgi_app

    registry = CollectorRegistry()
    statuses = []
    app = metrics_wsgi_app(registry)
    body = b"".join(app({"PATH_INFO": "/", "REQUEST_METHOD": "GET"}, lambda status, headers: statuses.append(status)))
    assert statuses == ["404 Not Found"] and b"/metrics" in body
    app({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET", "QUERY_STRING": ""}, lambda s, h: statuses.append(s))
    assert statuses[-1].startswith("200")


@pytest.mark.integration
def test_an_agent_scrape_with_redis_gone_says_so_instead_of_failing(tmp_path):
    import redis
    from conftest import RedisServer
    from launchbay.agent.daemon import Agent
    from launchbay.agent.runtime_fake import FakeRuntime
    from launchbay.agent.settings import AgentSettings

    server = RedisServer(tmp_path / "redis").start()
    try:
        settings = AgentSettings(agent_id="cut-off", queues=["q"], state_dir=tmp_path / "state", nvidia_smi="absent")
        agent = Agent(settings, conn=redis.Redis.from_url(server.url), runtime=FakeRuntime())
        assert Scrape(generate_latest(agent.metrics.registry).decode()).value("launchbay_agent_redis_up") == 1
    finally:
        server.stop()
    seen = Scrape(generate_latest(agent.metrics.registry).decode())
    assert seen.value("launchbay_agent_redis_up") == 0
    assert seen.value("launchbay_agent_jobs", state="running") == 0
    assert seen.value("launchbay_agent_docker_up") == 0  # never checked yet: not reported as up
    assert seen.value("launchbay_agent_gpus") == 0  # no nvidia-smi: a CPU host


@pytest.mark.integration
def test_with_a_ui_token_slash_metrics_needs_it_like_every_page(redis_conn):
    from launchbay.ui.security import TOKEN_HEADER

    client = create_app(redis_conn, keys=Keys(), token="s3cret-token").test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={TOKEN_HEADER: "wrong"}).status_code == 401
    answered = client.get("/metrics", headers={TOKEN_HEADER: "s3cret-token"})
    assert answered.status_code == 200
    assert Scrape(answered.get_data(as_text=True)).value("launchbay_redis_up") == 1


def test_forged_record_fields_give_no_new_label_values(redis_conn):
    """Issue 23: a submitter writes what she likes into her own records; every distinct value was a series."""
    keys = Keys()
    QueueStore(redis_conn, keys).apply(QueueConfig(name="q"))
    for n in range(50):
        job_id = f"mallory_{n:016x}"
        forged = {"state": "queued" if n % 2 else f"state-{n}", "priority": f"p{n}", "pending_reason": f"r{n}"}
        redis_conn.hset(keys.job(job_id), mapping={**forged, "submitter": f"victim-{n}", "queued_at": "1"})
        redis_conn.zadd(keys.queue_jobs("q"), {job_id: n})
    seen = Scrape(generate_latest(queue_registry(redis_conn, keys)).decode())
    jobs = [labels for labels, _ in seen.samples("launchbay_jobs")]
    depth = [labels for labels, _ in seen.samples("launchbay_queue_depth")]
    assert jobs == [{"queue": "q", "state": "queued", "user": "mallory"}], jobs
    assert depth == [{"queue": "q", "priority": "unknown", "pending_reason": "unknown"}], depth
    assert seen.value("launchbay_jobs", queue="q", state="queued", user="mallory") == 25


def test_an_agents_job_states_label_only_known_states():
    from launchbay.prometheus.agent import _jobs_by_state

    entries = {f"mallory_{n:016x}": LedgerEntry(f"mallory_{n:016x}", "q", 1.0, 0, (), claimed_at=0.0) for n in range(3)}
    records = {job_id: JobRecord.from_fields(job_id, {"state": f"forged-{n}"}) for n, job_id in enumerate(entries)}
    family = _jobs_by_state(entries, records)
    assert {sample.labels["state"] for sample in family.samples} == {"starting", "running", "unknown"}
