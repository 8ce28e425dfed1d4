"""The cluster page: ``launchbay ui`` on a random loopback port, real Redis, headless Chromium.

Two agents registered as docs/architecture.md describes them (capacity JSON with the GPU contract's
health and usage fields, ledger, liveness), jobs running on some GPUs, one GPU quarantined, and
queued jobs beside them. Takes docs/img/ui-cluster.png for docs/ui.md.
"""

from __future__ import annotations

import json

import pytest
from conftest import publish_agent_line
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys
from launchbay.ui.app import create_app
from ui_helpers import (
    JOB_SPEC,
    SCREENSHOT_DIR,
    apply_queues,
    chromium_browser,
    expect,
    page_on_own_server,
    play_agent_start,
    register_agent,
)

pytestmark = pytest.mark.integration


def h100(index: str, used: int, util, temp, health: str = "ok", reason: str = "") -> dict:
    return {
        "id": index, "uuid": f"GPU-5e1f-{index}", "name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559,
        "memory_free_mib": None if used is None else 81559 - used, "memory_used_mib": used, "utilization_pct": util,
        "temperature_c": temp, "health": health, "health_reason": reason,
    }  # fmt: skip


def capacity(agent_id: str, gpus: list, **extra) -> dict:
    return {
        "agent_id": agent_id, "host": agent_id, "labels": {"zone": "eu"}, "queues": ["gpu", "cpu"],
        "cpus": 60.0, "memory_mib": 480000, "max_jobs": 8, "gpus": gpus, **extra,
    }  # fmt: skip


def start_job(conn, agent: str, gpus: list, user: str, *, name: str = "trainer", request: str = "1") -> str:
    spec = {**JOB_SPEC, "name": name}
    job = enqueue(spec, "gpu", resources={"gpus": request, "cpus": 4}, conn=conn, keys=Keys())
    conn.hset(Keys().job(job.id), "submitter", user)
    play_agent_start(conn, job.id, agent=agent, gpus=gpus)
    return job.id


def allocation(job_id: str, gpus: list) -> dict:
    return {"job_id": job_id, "queue": "gpu", "cpus": 4.0, "memory_mib": 16384, "gpus": gpus, "claimed_at": 0}


def queue_job(conn, user: str, gpus: str, **fields) -> str:
    job = enqueue({**JOB_SPEC, "name": "sweep"}, "gpu", resources={"gpus": gpus}, conn=conn, keys=Keys())
    conn.hset(Keys().job(job.id), mapping={"submitter": user, **fields})
    return job.id


def fleet(conn) -> dict:
    """Two agents: four H100s (two busy, one quarantined) and four more (one busy); three jobs waiting."""
    apply_queues(conn)
    a = start_job(conn, "gpu-node-01", ["0", "1"], "alice", request="H100:2")
    b = start_job(conn, "gpu-node-01", ["3"], "bob", name="eval")
    c = start_job(conn, "gpu-node-02", ["2"], "carol", name="finetune")
    node1 = [
        h100("0", 71200, 97, 68), h100("1", 70950, 95, 71),
        h100("2", None, None, None, "unhealthy", "xid 79: GPU has fallen off the bus"),
        h100("3", 38400, 64, 59),
    ]  # fmt: skip
    node2 = [h100("0", 3, 0, 31), h100("1", 3, 0, 30), h100("2", 52100, 88, 63), h100("3", 3, 0, 29)]
    register_agent(conn, capacity("gpu-node-01", node1), {a: allocation(a, ["0", "1"]), b: allocation(b, ["3"])})
    register_agent(conn, capacity("gpu-node-02", node2), {c: allocation(c, ["2"])})
    waiting = [
        queue_job(conn, "dave", "H100:8"),
        queue_job(conn, "erin", "2", pending_reason="waiting for 2 free GPUs of one model"),
    ]
    return {"alice": a, "bob": b, "carol": c, "waiting": waiting}


def test_the_cluster_page_shows_each_gpu_with_its_job_user_usage_and_health(redis_conn):
    jobs = fleet(redis_conn)
    html = create_app(redis_conn, keys=Keys()).test_client().get("/cluster").get_data(as_text=True)
    assert html.count('class="agent-row card"') == 2
    assert html.count("data-gpu=") == 8
    assert jobs["alice"] in html and "alice" in html and "xid 79: GPU has fallen off the bus" in html
    assert "fits no live agent: needs 8 GPU(s) matching &#39;H100&#39; of one model, the agent has 4 such of 4" in html
    assert "waiting for 2 free GPUs of one model" in html


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


@pytest.fixture
def page(browser, redis_server, redis_url):
    yield from page_on_own_server(browser, redis_server.url, 760)


def gpu_cell(page, agent: str, index: str):
    return page.locator(f'[data-agent="{agent}"] .gpu-cell[data-gpu="{index}"]')


def test_the_cluster_page_follows_the_fleet_live_in_the_browser(page, redis_conn):
    jobs = fleet(redis_conn)
    page.goto("/cluster")
    expect(page.get_by_role("heading", name="Cluster")).to_be_visible()
    expect(page.locator(".agent-row")).to_have_count(2)
    expect(gpu_cell(page, "gpu-node-01", "0")).to_contain_text(jobs["alice"])
    expect(gpu_cell(page, "gpu-node-01", "0")).to_contain_text("alice")
    expect(gpu_cell(page, "gpu-node-01", "0")).to_contain_text("util 97%")
    expect(gpu_cell(page, "gpu-node-01", "0")).to_contain_text("mem 69.5 / 79.6GiB")
    expect(gpu_cell(page, "gpu-node-01", "1")).to_contain_text(jobs["alice"])
    expect(gpu_cell(page, "gpu-node-01", "2").locator(".health")).to_have_text("unhealthy")
    expect(gpu_cell(page, "gpu-node-01", "2")).to_contain_text("xid 79: GPU has fallen off the bus")
    expect(gpu_cell(page, "gpu-node-01", "2")).to_contain_text("not handed out")
    expect(gpu_cell(page, "gpu-node-02", "0")).to_contain_text("free")
    expect(page.locator(".pending")).to_have_count(2)
    expect(page.locator(f'.pending[data-job="{jobs["waiting"][1]}"] .pending-reason')).to_have_text(
        "waiting for 2 free GPUs of one model"
    )
    expect(page.locator("#cluster-status")).to_contain_text("updated")  # the first refresh came back

    page.evaluate("document.body.dataset.loadedOnce = 'yes'")  # gone if the page reloads
    late = start_job(redis_conn, "gpu-node-02", ["0"], "frank", name="ablation")
    redis_conn.hset(Keys().agent_ledger("gpu-node-02"), late, json.dumps(allocation(late, ["0"])))
    publish_agent_line(redis_conn, "gpu-node-02")  # as the agent's claim does
    grace = queue_job(redis_conn, "grace", "1")
    expect(gpu_cell(page, "gpu-node-02", "0")).to_contain_text("frank")
    expect(page.locator(".pending")).to_have_count(3)
    # gpu-node-01's only GPU without a job is quarantined, so the job can go only to gpu-node-02.
    expect(page.locator(f'.pending[data-job="{grace}"] .pending-reason')).to_have_text(
        "fits gpu-node-02 now; waiting for its next claim"
    )
    expect(page.locator("#pending-count")).to_have_text("3 queued")
    expect(page.locator("body")).to_have_attribute("data-loaded-once", "yes")
    expect(gpu_cell(page, "gpu-node-01", "0").locator(".meter-fill").first).to_have_attribute("style", "width: 87%;")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "ui-cluster.png"), full_page=True)
