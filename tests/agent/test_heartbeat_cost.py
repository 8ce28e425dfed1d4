"""What an idle agent's heartbeat costs Redis, and that what readers see stays current.

An idle beat is one script (alive key, listing, the summary line with the ledger read inside it):
six commands as Redis counts them. The agent hash and capacity key, read by single-agent readers
(the enqueue's fit advice), are written when they change and again after the agent could have
counted as lost (the reaper deletes its capacity then).
"""

from __future__ import annotations

import json
import time

from launchbay.agent.heartbeat import AgentStatus, Heartbeat
from launchbay.queue_config.agents import read_agents
from launchbay.queue_config.keys import Keys
from test_control_support import agent_settings


def _commands(conn) -> int:
    stats = conn.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat"))


def _heartbeat(conn, tmp_path, capacity, **settings) -> Heartbeat:
    return Heartbeat(
        conn,
        Keys(),
        agent_settings(tmp_path, agent_id="beater", **settings),
        status=AgentStatus(state="healthy"),
        capacity=lambda: dict(capacity),
        counters=lambda: {},
    )


def test_an_idle_beat_is_six_commands_and_launchbay_agents_still_sees_each_beat(redis_conn, tmp_path):
    capacity = {"agent_id": "beater", "cpus": 4.0, "memory_mib": 1024, "gpus": []}
    beat = _heartbeat(redis_conn, tmp_path, capacity)
    beat.beat()  # the first: loads the script, writes the hash and capacity
    first = read_agents(redis_conn, Keys())[0]["beat_at"]
    redis_conn.config_resetstat()

    time.sleep(0.05)
    beat.beat()

    assert _commands(redis_conn) == 6  # EVALSHA + TIME, HGETALL (ledger), SET (alive), SADD, HSET (summary)
    (agent,) = read_agents(redis_conn, Keys())
    assert agent["alive"] and agent["beat_at"] > first
    assert agent["capacity"] == capacity


def test_a_capacity_change_reaches_the_capacity_key_at_the_next_beat(redis_conn, tmp_path):
    capacity = {"agent_id": "beater", "cpus": 4.0, "memory_mib": 1024, "gpus": []}
    beat = _heartbeat(redis_conn, tmp_path, capacity)
    beat.beat()

    capacity["cpus"] = 2.0
    beat.beat()

    assert json.loads(redis_conn.get(Keys().agent_capacity("beater")))["cpus"] == 2.0
    assert read_agents(redis_conn, Keys())[0]["capacity"]["cpus"] == 2.0


def test_a_beat_after_the_alive_key_ran_out_writes_back_what_the_reaper_deleted(redis_conn, tmp_path):
    capacity = {"agent_id": "beater", "cpus": 4.0, "memory_mib": 1024, "gpus": []}
    beat = _heartbeat(redis_conn, tmp_path, capacity, heartbeat_ttl_s=0.3, lost_grace_s=0.0)
    beat.beat()
    time.sleep(0.5)  # the alive key expires; the reaper forgets the agent as it does a lost one
    redis_conn.delete(Keys().agent_capacity("beater"))
    redis_conn.hset(Keys().agent("beater"), "status", "lost")
    redis_conn.srem(Keys().agents, "beater")

    beat.beat()

    assert json.loads(redis_conn.get(Keys().agent_capacity("beater"))) == capacity
    assert redis_conn.hget(Keys().agent("beater"), "status") == b"healthy"
    assert redis_conn.sismember(Keys().agents, "beater") and redis_conn.exists(Keys().agent_alive("beater"))
