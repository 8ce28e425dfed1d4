"""The job page and the cluster page show each member of a multi-node job, as ``launchbay status`` does.

Real Redis; the gang is held and its members' states set through ``gang.lua`` as two agents' gang
services do (``lifecycle.GangScript``), so the pages read the member table the agents write.
"""

from __future__ import annotations

import re
import time

import pytest
from conftest import run_cli
from launchbay.client import enqueue
from launchbay.queue_config import gang
from launchbay.queue_config.agents import LedgerEntry
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import GangScript
from launchbay.ui.app import create_app
from ui_helpers import JOB_SPEC, apply_queues, register_agent

pytestmark = pytest.mark.integration

GANG_QUEUE = {"name": "multi", "gang": {"max_nodes": 2, "assemble_timeout": "5m"}}
CONTAINERS = ("3f2a9c81d4e5b6a7c8d9e0f1", "9b8a7c6d5e4f3a2b1c0d9e8f")


def capacity(agent_id: str) -> dict:
    return {"agent_id": agent_id, "host": f"{agent_id}.lan", "labels": {}, "queues": ["multi"], "cpus": 16.0,
            "memory_mib": 64000, "max_jobs": 4, "gpus": []}  # fmt: skip


def hold_two_node_job(conn) -> str:
    """A 2-node job held by agents node-a and node-b (complete: starting), both members running."""
    apply_queues(conn, GANG_QUEUE)
    job = enqueue({**JOB_SPEC, "name": "ddp"}, "multi", resources={"cpus": 2}, nodes=2, conn=conn, keys=Keys())
    for agent_id in ("node-a", "node-b"):
        register_agent(conn, capacity(agent_id), {})
    scripts = []
    for agent_id in ("node-a", "node-b"):
        script = GangScript(conn, Keys(), agent_id=agent_id, host=f"{agent_id}.lan", addr=f"10.0.0.{len(scripts) + 1}")
        entry = LedgerEntry(job.id, "multi", 2.0, 1024, (), time.time())
        held, why, rank, round_ = script.hold(
            job.id, "multi", entry.to_json(), "", nodes=2, timeout_s=300, capacity=(16.0, 64000, 4, "[]"),
            limits="{}", now=time.time(),
        )  # fmt: skip
        assert held, why
        scripts.append((script, rank, round_))
    for (script, rank, round_), container in zip(scripts, CONTAINERS):
        assert script.member(job.id, round_, rank, gang.READY, port=29611 if rank == 0 else None)
        assert script.member(job.id, round_, rank, gang.RUNNING, container=container)
    return job.id


def end_rank_1_with_3(conn, job_id: str) -> None:
    table = gang.read(conn, Keys(), job_id)
    rank1 = table.current()[1]
    script = GangScript(conn, Keys(), agent_id=rank1.agent, host=rank1.host, addr=rank1.addr)
    assert script.member(job_id, table.round, 1, gang.FAILED, exit_code=3)


def rows(html: str, table_id: str) -> list:
    """The members table's cells, one list per rank, as text."""
    table = re.search(rf'<table class="grid members" id="{re.escape(table_id)}">(.*?)</table>', html, re.S)
    assert table, html
    found = []
    for row in re.findall(r"<tr data-rank=.*?</tr>", table.group(1), re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        found.append([re.sub(r"\s+", " ", c) for c in cells])
    return found


def test_the_job_page_lists_each_member_with_rank_agent_host_container_state_and_exit_code(redis_conn, redis_url):
    job_id = hold_two_node_job(redis_conn)
    end_rank_1_with_3(redis_conn, job_id)
    html = create_app(redis_conn, keys=Keys()).test_client().get(f"/job/{job_id}").get_data(as_text=True)
    # node-a held first: rank 0
    assert rows(html, "members") == [
        ["0", "node-a", "node-a.lan (10.0.0.1)", CONTAINERS[0][:12], "running", "-"],
        ["1", "node-b", "node-b.lan (10.0.0.2)", CONTAINERS[1][:12], "failed", "3"],
    ]
    # the same members as launchbay status --json lists them
    status = run_cli("status", "--redis-url", redis_url, job_id, "--json")
    assert '"exit_code": 3' in status.stdout and CONTAINERS[1] in status.stdout


def test_a_single_node_job_page_has_no_members_table(redis_conn):
    apply_queues(redis_conn)
    job = enqueue(JOB_SPEC, "gpu", conn=redis_conn, keys=Keys())
    html = create_app(redis_conn, keys=Keys()).test_client().get(f"/job/{job.id}").get_data(as_text=True)
    assert 'id="members"' not in html


def test_the_cluster_page_shows_a_gang_once_with_every_member_and_each_agent_its_rank(redis_conn):
    job_id = hold_two_node_job(redis_conn)
    html = create_app(redis_conn, keys=Keys()).test_client().get("/cluster").get_data(as_text=True)
    assert html.count(f'data-gang="{job_id}"') == 1
    members = rows(html, f"members-{job_id}")
    assert [(m[0], m[4]) for m in members] == [("0", "running"), ("1", "running")]
    assert {m[1] for m in members} == {"node-a", "node-b"}
    assert [m[3] for m in members] == [CONTAINERS[0][:12], CONTAINERS[1][:12]]
    for member in members:  # each agent's card names the rank it runs
        card = re.search(rf'data-agent="{member[1]}".*?<div class="gpu-cells">', html, re.S).group(0)
        assert f"CPU only · rank {member[0]}" in card


def test_the_cluster_page_shows_a_gang_still_assembling_with_its_unplaced_rank(redis_conn):
    apply_queues(redis_conn, GANG_QUEUE)
    job = enqueue({**JOB_SPEC, "name": "ddp"}, "multi", resources={"cpus": 2}, nodes=2, conn=redis_conn, keys=Keys())
    register_agent(redis_conn, capacity("node-a"), {})
    script = GangScript(redis_conn, Keys(), agent_id="node-a", host="node-a.lan", addr="10.0.0.1")
    entry = LedgerEntry(job.id, "multi", 2.0, 1024, (), time.time())
    held, why, _rank, _round = script.hold(
        job.id, "multi", entry.to_json(), "", nodes=2, timeout_s=300, capacity=(16.0, 64000, 4, "[]"),
        limits="{}", now=time.time(),
    )  # fmt: skip
    assert held and why == "held"
    html = create_app(redis_conn, keys=Keys()).test_client().get("/cluster").get_data(as_text=True)
    members = rows(html, f"members-{job.id}")
    assert [(m[0], m[1], m[4]) for m in members] == [("0", "node-a", "held"), ("1", "-", "unplaced")]
