"""The sweep page in headless Chromium: ``launchbay ui`` on a random loopback port, real Redis, the
agents' real sweep driver. Charts with a point per trial, the link to a trial's job, the page following
an open sweep; takes docs/img/ui-sweep.png for docs/ui.md."""

from __future__ import annotations

import re

import pytest
from sweep_ui_helpers import Runner, curve, driver, finished_and_pruned
from ui_helpers import SCREENSHOT_DIR, chromium_browser, expect, page_on_own_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


@pytest.fixture
def page(browser, redis_server, redis_url):
    yield from page_on_own_server(browser, redis_server.url, 1000)


def chart(page, key: str):
    return page.locator(f'#sweep-charts figure.chart[data-key="{key}"]')


def test_the_sweep_page_charts_every_trial_and_links_each_to_its_job(page, redis_conn, tmp_path):
    sweep_id, shown = finished_and_pruned(redis_conn, tmp_path)
    trials = shown["trials"]
    pruned = [t for t in trials if t["reason"] == "pruned"]
    assert pruned and len(pruned) < len(trials)
    page.goto("/sweeps")
    page.get_by_role("link", name=sweep_id, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/sweeps/{sweep_id}$"))
    expect(page.locator("#sweep-state")).to_have_text("finished")
    expect(page.locator("#best-value")).to_have_text("1.2")

    for name in [*shown["parameters"], "trial order"]:
        figure = chart(page, name)
        expect(figure).to_have_attribute("data-points", str(len(trials)))
        expect(figure.locator("circle")).to_have_count(len(trials))
        expect(figure.locator("circle.hollow")).to_have_count(len(pruned))
    expect(chart(page, "trainer.learning_rate").locator(".chart-last")).to_have_text("log scale")
    expect(chart(page, "trainer.learning_rate").locator("svg")).to_contain_text("0.01")
    expect(chart(page, "trainer.dataset").locator("svg")).to_contain_text("cifar100")
    expect(chart(page, "trial order").locator("path.best-line")).to_have_count(1)
    expect(page.locator("#trials tbody tr")).to_have_count(len(trials))
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "ui-sweep.png"), full_page=True)

    target = pruned[0]["job_id"]
    page.locator("#trials").get_by_role("link", name=target, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/job/{target}$"))
    expect(page.locator("#job-state")).to_have_text("canceled")


def test_an_open_sweep_s_page_follows_its_trials_without_a_manual_reload(page, redis_conn, tmp_path):
    sweep_id, shown = finished_and_pruned(redis_conn, tmp_path, leave_running=True)
    running = next(t for t in shown["trials"] if not t["ended"])
    page.goto(f"/sweeps/{sweep_id}")
    row = page.locator(f'#trials tr[data-number="{running["number"]}"]')
    expect(row).to_contain_text("running")
    expect(row.locator(".trial-value")).to_have_text(f"{running['last']['value']:g} @ step 2")
    expect(page.locator("#sweep-status")).to_have_text("following…")

    runner, agent = Runner(redis_conn, "sweeps", curve), driver(redis_conn)
    runner.log_steps(running["job_id"], [0.0, 0.0, 0.0, 1.125, 1.0625], 3, 5)  # better than the median: kept
    agent.pass_once()
    expect(row.locator(".trial-value")).to_have_text("1.0625 @ step 4")  # written in place by the poll
    runner.finish(running["job_id"], 1.0625)
    agent.pass_once()
    expect(row).to_contain_text("finished")  # the state change reloads the page
    expect(page.locator("#sweep-trials")).to_contain_text("12 ended / 12 made of 12")
    expect(page.locator("#best-value")).to_have_text("1.0625")
    expect(page.locator("#sweep-state")).to_have_text("finished")
    expect(page.locator("#sweep-status")).to_have_text("")
