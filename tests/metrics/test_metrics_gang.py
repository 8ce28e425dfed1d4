"""Prometheus counts a multi-node job once: the queue exporter's ``launchbay_jobs`` and depth (one
record, its gang pending reason a known label), and each agent's ``/metrics`` its own member.

Real Redis; the members are held and run through ``gang.lua`` as two agents' gang services do.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from gang_helpers import hold, register, run_gang
from launchbay.agent.ledger import Ledger
from launchbay.client import enqueue
from launchbay.prometheus.agent import AgentCollector, JobTimings
from launchbay.prometheus.fleet import queue_registry
from launchbay.queue_config import gang
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore
from metrics_helpers import Scrape
from prometheus_client import CollectorRegistry, generate_latest

pytestmark = pytest.mark.integration

QUEUE = "multi"
SPEC = {"name": "ddp", "image": "trainer:1", "command": ["python", "train.py"]}


def two_node_job(conn) -> str:
    QueueStore(conn, Keys()).apply(QueueConfig.model_validate({"name": QUEUE, "gang": {"max_nodes": 2}}))
    return enqueue(SPEC, QUEUE, resources={"cpus": 2}, nodes=2, conn=conn, keys=Keys()).id


def fleet_scrape(conn) -> Scrape:
    return Scrape(generate_latest(queue_registry(conn, Keys())).decode())


def agent_scrape(conn, agent_id: str) -> Scrape:
    """``/metrics`` of ``agent_id`` as its collector builds it, over its real ledger."""
    agent = SimpleNamespace(
        settings=SimpleNamespace(agent_id=agent_id, host=f"{agent_id}.lan", queues=[QUEUE]),
        conn=conn, keys=Keys(), ledger=Ledger(conn, Keys(), agent_id), inventory=SimpleNamespace(gpus=[]),
        status=SimpleNamespace(docker="up"), counters=SimpleNamespace(snapshot=dict),
        capacity_json=lambda: {"agent_id": agent_id, "cpus": 16.0, "memory_mib": 64000, "gpus": []},
    )  # fmt: skip
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent, JobTimings(CollectorRegistry())))
    return Scrape(generate_latest(registry).decode())


def test_a_running_two_node_job_counts_once_in_the_fleet_and_once_per_agent_as_its_member(redis_conn):
    job_id = two_node_job(redis_conn)
    run_gang(redis_conn, job_id, QUEUE)  # the job is starting; both members run
    seen = fleet_scrape(redis_conn)
    assert seen.total("launchbay_jobs", queue=QUEUE) == 1
    assert seen.total("launchbay_jobs", queue=QUEUE, state="starting") == 1
    assert seen.total("launchbay_queue_depth", queue=QUEUE) == 0
    for agent_id in ("node-a", "node-b"):
        mine = agent_scrape(redis_conn, agent_id)
        assert mine.value("launchbay_agent_jobs", state="starting") == 1
        assert mine.value("launchbay_agent_gang_members", state="running") == 1
        assert mine.total("launchbay_agent_gang_members") == 1
        assert mine.value("launchbay_agent_cpus_allocated") == 2


def test_a_gang_still_assembling_is_one_queued_job_with_its_gang_reason_and_one_held_member(redis_conn):
    job_id = two_node_job(redis_conn)
    register(redis_conn, "node-a", QUEUE)
    held, why, _rank, _round = hold(redis_conn, job_id, QUEUE, "node-a")
    assert held and why == "held"
    redis_conn.hset(Keys().job(job_id), "pending_reason", gang.PENDING_ASSEMBLING)  # as the gang service says
    seen = fleet_scrape(redis_conn)
    assert seen.total("launchbay_jobs", queue=QUEUE) == 1
    assert seen.value("launchbay_queue_depth", queue=QUEUE, priority="normal", pending_reason="gang_assembling") == 1
    mine = agent_scrape(redis_conn, "node-a")
    assert mine.value("launchbay_agent_gang_members", state="held") == 1
    assert mine.value("launchbay_agent_jobs", state="queued") == 1
    assert agent_scrape(redis_conn, "node-b").total("launchbay_agent_gang_members") == 0
