"""The fleet summary and the pending lease: what reads every agent costs the same whatever the fleet's size,
and one agent per queue writes why its jobs wait (issue 24). Real redis-server."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import publish_agent_line
from launchbay.agent.pending_pass import PendingPass
from launchbay.client import enqueue
from launchbay.queue_config import pending
from launchbay.queue_config.agents import LedgerEntry, read_agents
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore

pytestmark = [pytest.mark.integration]


def fake_agent(conn, agent_id: str, *, alive: bool = True, jobs: int = 0) -> None:
    keys = Keys()
    capacity = {"agent_id": agent_id, "cpus": 4.0, "memory_mib": 8192, "gpus": [], "queues": ["q"], "max_jobs": 4}
    conn.set(keys.agent_capacity(agent_id), json.dumps(capacity))
    conn.hset(keys.agent(agent_id), mapping={"status": "healthy", "host": agent_id, "beat_at": "1.0"})
    for n in range(jobs):
        entry = LedgerEntry(f"{agent_id}-job{n}", "q", 1.0, 1024, (), 100.0, 60)
        conn.hset(keys.agent_ledger(agent_id), entry.job_id, entry.to_json())
    publish_agent_line(conn, agent_id, alive=alive)


def commands(conn) -> int:
    stats = conn.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


def test_reading_every_agent_costs_two_commands_whatever_the_fleet_size(redis_conn):
    costs = {}
    for size in (3, 30):
        redis_conn.flushdb()
        for n in range(size):
            fake_agent(redis_conn, f"a{n:02d}", jobs=1)
        before = commands(redis_conn)
        agents = read_agents(redis_conn, Keys())
        views = pending.fleet(redis_conn, Keys())
        costs[size] = commands(redis_conn) - before
        assert [a["agent_id"] for a in agents] == [f"a{n:02d}" for n in range(size)]
        assert all(a["status"] == "healthy" and len(a["jobs"]) == 1 for a in agents)
        assert [len(v.entries) for v in views] == [1] * size
    assert costs[3] == costs[30] == 4, costs  # HGETALL + TIME, twice


def test_an_agent_whose_line_ran_out_is_gone(redis_conn):
    fake_agent(redis_conn, "live")
    fake_agent(redis_conn, "dead", alive=False)
    assert [a["agent_id"] for a in read_agents(redis_conn, Keys())] == ["live"]
    everyone = {a["agent_id"]: a["status"] for a in read_agents(redis_conn, Keys(), include_gone=True)}
    assert everyone == {"live": "healthy", "dead": "gone"}


def test_one_agent_per_queue_writes_why_its_jobs_wait_and_another_takes_over_when_it_stops(redis_conn):
    QueueStore(redis_conn, Keys()).apply(QueueConfig(name="q"))
    fake_agent(redis_conn, "a1")
    job = enqueue({"name": "j", "image": "x", "command": ["true"]}, "q", conn=redis_conn, resources={"gpus": 1}).id
    first = PendingPass(redis_conn, Keys(), ["q"], 8, agent_id="first")
    second = PendingPass(redis_conn, Keys(), ["q"], 8, agent_id="second")

    first.run_once()
    second.run_once()
    assert first.writes == 1 and second.writes == 0, "the holder wrote the reason, the other did not try"
    assert redis_conn.hget(Keys().job(job), "pending_reason") == b"never_fits"
    assert first.held() == ["q"] and second.held() == []

    closing = threading.Event()
    closing.set()
    first.run(closing)  # stops at once and lets the lease go
    third = PendingPass(redis_conn, Keys(), ["q"], 8, agent_id="third")  # one whose wait for the lease ran out
    redis_conn.hset(Keys().job(job), "pending_reason", "stale")
    third.run_once()
    assert third.held() == ["q"] and redis_conn.hget(Keys().job(job), "pending_reason") == b"never_fits"
