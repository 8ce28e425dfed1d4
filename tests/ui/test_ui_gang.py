"""The job page and the cluster page show each member of a multi-node job, as ``launchbay status`` does.

Real Redis; the gang is held and its members' states set through ``gang.lua`` as two agents' gang
services do (``lifecycle.GangScript``), so the pages read the member table the agents write.
"""

from __future__ import annotations

import re

import pytest
from conftest import run_cli
from gang_helpers import CONTAINERS, end_member, hold, register, run_gang
from launchbay.client import enqueue
from launchbay.queue_config import gang
from launchbay.queue_config.keys import Keys
from launchbay.ui.app import create_app
from ui_helpers import JOB_SPEC, apply_queues

pytestmark = pytest.mark.integration

GANG_QUEUE = {"name": "multi", "gang": {"max_nodes": 2, "assemble_timeout": "5m"}}


def two_node_job(conn) -> str:
    apply_queues(conn, GANG_QUEUE)
    return enqueue({**JOB_SPEC, "name": "ddp"}, "multi", resources={"cpus": 2}, nodes=2, conn=conn, keys=Keys()).id


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
    job_id = two_node_job(redis_conn)
    run_gang(redis_conn, job_id, "multi")
    end_member(redis_conn, job_id, 1, gang.FAILED, 3)
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
    job_id = two_node_job(redis_conn)
    run_gang(redis_conn, job_id, "multi")
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
    job_id = two_node_job(redis_conn)
    register(redis_conn, "node-a", "multi")
    held, why, _rank, _round = hold(redis_conn, job_id, "multi", "node-a")
    assert held and why == "held"
    html = create_app(redis_conn, keys=Keys()).test_client().get("/cluster").get_data(as_text=True)
    members = rows(html, f"members-{job_id}")
    assert [(m[0], m[1], m[4]) for m in members] == [("0", "node-a", "held"), ("1", "-", "unplaced")]
