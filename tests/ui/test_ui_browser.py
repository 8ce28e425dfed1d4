"""The launch page end to end: ``launchbay ui`` on a random loopback port, real Redis, headless Chromium.

Also takes the screenshots docs/ui.md shows (docs/img/ui-launch-form.png, docs/img/ui-job-page.png,
docs/img/ui-job-metrics.png).
"""

from __future__ import annotations

import json
import re

import pytest
from launchbay.client import enqueue
from launchbay.queue_config.job import State
from launchbay.queue_config.keys import Keys
from ui_helpers import (
    EXPECT_MS,
    JOB_SPEC,
    SCREENSHOT_DIR,
    VIEWPORT,
    UiServer,
    apply_queues,
    chromium_browser,
    define_job,
    play_agent_end,
    play_agent_start,
    record,
    rq_queue_length,
    write_log,
)

JOB_URL = re.compile(r"/job/[0-9a-f]{16}$")
TRAINING_LOG = [
    "[launchbay] pulling ghcr.io/acme/trainer:1.4 ... done",
    "loading cifar100 (50000 train / 10000 test images)",
    "model: resnet50, 23.7M parameters, 2x NVIDIA A100-SXM4-80GB",
    "epoch 1/20  step  100/391  loss=4.112  lr=0.0500",
    "epoch 1/20  step  200/391  loss=3.874  lr=0.0500",
    "epoch 1/20  step  300/391  loss=3.650  lr=0.0500",
    "epoch 1/20  done  loss=3.512  val_acc=0.162  (41.8s)",
]


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


@pytest.fixture(scope="module")
def ui(redis_server):
    server = UiServer(redis_server.url)
    yield server
    server.stop()


@pytest.fixture
def page(browser, ui, redis_url, redis_conn):
    """A fresh page (1200x900) on an emptied Redis holding the gpu/cpu queues and the docs' job."""
    apply_queues(redis_conn)
    define_job(redis_conn)
    context = browser.new_context(viewport=VIEWPORT, base_url=ui.url)
    context.set_default_timeout(EXPECT_MS)
    yield context.new_page()
    context.close()


def expect(target):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def field(page, key: str):
    """The block of one form field (label, input, helper text, errors), by its dotted key."""
    return page.locator(f'.field[data-key="{key}"]')


def fill_docs_example(page, *, batch_size: str) -> None:
    page.get_by_label("Seed").fill("7")
    page.get_by_label("Learning Rate").fill("0.05")
    page.get_by_label("Batch Size").fill(batch_size)
    page.get_by_label("Dataset").select_option(label="cifar100")


def test_the_form_offers_the_datasets_as_a_select_and_bounds_the_batch_size(page):
    page.goto("/launch/trainer")
    expect(page.get_by_role("heading", name="Launch trainer")).to_be_visible()
    expect(page.get_by_label("Dataset").locator("option")).to_have_text(["(job's value)", "cifar10", "cifar100"])
    batch_size = page.get_by_label("Batch Size")
    expect(batch_size).to_have_attribute("type", "number")
    expect(batch_size).to_have_attribute("min", "1")
    expect(batch_size).to_have_attribute("max", "256")
    expect(field(page, "trainer.batch_size")).to_contain_text("Number of samples per batch. Must be at least 1")
    expect(field(page, "trainer.learning_rate")).to_contain_text("Must be greater than 0.")
    expect(page.get_by_label("Queue")).to_have_value("gpu")
    expect(page.get_by_label("Image")).to_have_value(JOB_SPEC["image"])
    expect(page.locator('[data-section="file:config.yaml"] h2')).to_have_text("Config file config.yaml")
    expect(page.locator(".field[data-key^='trainer.private']")).to_have_count(0)


def test_an_out_of_range_batch_size_is_shown_next_to_its_field_and_nothing_is_enqueued(page, redis_conn):
    page.goto("/launch/trainer")
    fill_docs_example(page, batch_size="300")
    page.get_by_label("GPUs").fill("2")
    # Get past the browser's own max=256 check, so the server's validation answers.
    page.get_by_label("Batch Size").evaluate("input => input.removeAttribute('max')")
    before = rq_queue_length(redis_conn)
    page.get_by_role("button", name="Launch trainer").click()

    expect(field(page, "trainer.batch_size").locator(".error")).to_have_text("300 is greater than the maximum of 256")
    expect(page.locator("#form-errors")).to_have_text("Nothing was enqueued: fix the fields marked below.")
    expect(page.get_by_label("Batch Size")).to_have_value("300")
    expect(page.get_by_label("Dataset")).to_have_value('"cifar100"')
    expect(page.locator(".error")).to_have_count(1)
    assert rq_queue_length(redis_conn) == before
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "ui-launch-form.png"))


def test_a_valid_launch_enqueues_exactly_the_entered_values_and_cancel_cancels_it(page, redis_conn):
    page.goto("/launch/trainer")
    fill_docs_example(page, batch_size="64")
    page.get_by_role("button", name="Launch trainer").click()

    expect(page).to_have_url(JOB_URL)
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.locator(".banner-done")).to_have_text(f"Job {job_id} enqueued on 'gpu'.")
    expect(page.locator("#job-state")).to_have_text("queued")
    assert record(redis_conn, job_id)["run_config"] == {
        "seed": 7,
        "trainer": {"learning_rate": 0.05, "batch_size": 64, "dataset": "cifar100"},
    }

    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator("#job-state")).to_have_text("canceled")
    expect(page.locator("#job-reason")).to_have_text("canceled_by_user")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    assert record(redis_conn, job_id)["state"] == "canceled"


def test_the_job_page_follows_the_log_without_reloading_and_shows_where_it_runs(page, redis_conn):
    overrides = {"seed": 7, "trainer": {"learning_rate": 0.05, "batch_size": 64, "dataset": "cifar100"}}
    job = enqueue(JOB_SPEC, "gpu", overrides=overrides, resources={"gpus": "A100:2"}, conn=redis_conn, keys=Keys())
    execution = play_agent_start(redis_conn, job.id, agent="gpu-host-1", gpus=["0", "1"])
    write_log(redis_conn, job.id, *TRAINING_LOG[:3])
    page.goto(f"/job/{job.id}")
    expect(page.locator("#job-state")).to_have_text("running")
    expect(page.locator("#job-agent")).to_have_text("gpu-host-1")
    expect(page.locator("dl.facts")).to_contain_text("0, 1")
    expect(page.locator("#log")).to_contain_text(TRAINING_LOG[2])

    page.evaluate("document.body.dataset.loadedOnce = 'yes'")  # gone if the page reloads
    write_log(redis_conn, job.id, *TRAINING_LOG[3:])
    expect(page.locator("#log")).to_contain_text(TRAINING_LOG[-1])
    expect(page.locator("body")).to_have_attribute("data-loaded-once", "yes")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "ui-job-page.png"))

    write_log(redis_conn, job.id, "<b>not markup</b>")
    expect(page.locator("#log")).to_contain_text("<b>not markup</b>")
    expect(page.locator("#log b")).to_have_count(0)

    play_agent_end(redis_conn, job.id, execution, State.FINISHED)
    expect(page.locator("#job-state")).to_have_text("finished")
    expect(page.locator("#log-status")).to_have_text("ended")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)


def _log_steps(conn, job_id, steps):
    for n in steps:
        entry = {"_step": n, "_timestamp": 1.7e9 + n, "_runtime": n * 0.5}
        entry.update({"loss": round(2.3 * 0.93**n + 0.05 * (n % 3), 4), "train/acc": round(1 - 0.9 * 0.95**n, 4)})
        entry.update({"lr": 0.1 if n < 30 else 0.01, "phase": "train", "val/loss": "NaN" if n == 0 else 2.0 * 0.95**n})
        conn.xadd(Keys().job_metrics(job_id), {"m": json.dumps(entry)})


def test_the_job_page_charts_each_numeric_metric_against_step_and_follows_new_steps(page, redis_conn):
    job = enqueue(JOB_SPEC, "gpu", resources={"gpus": "A100:2"}, conn=redis_conn, keys=Keys())
    execution = play_agent_start(redis_conn, job.id, agent="gpu-host-1", gpus=["0", "1"])
    page.goto(f"/job/{job.id}")
    expect(page.locator("#metrics-empty")).to_be_visible()

    _log_steps(redis_conn, job.id, range(20))
    charts = page.locator("figure.chart")
    expect(charts).to_have_count(4)  # loss, lr, train/acc, val/loss: "phase" is text, not charted
    assert charts.evaluate_all("els => els.map(e => e.dataset.key)") == ["loss", "lr", "train/acc", "val/loss"]
    loss = page.locator('figure.chart[data-key="loss"]')
    expect(loss).to_have_attribute("data-points", "20")
    expect(page.locator('figure.chart[data-key="val/loss"]')).to_have_attribute("data-points", "19")  # NaN skipped
    expect(page.locator("#metrics-empty")).to_be_hidden()

    page.evaluate("document.body.dataset.loadedOnce = 'yes'")  # gone if the page reloads
    _log_steps(redis_conn, job.id, range(20, 60))
    expect(loss).to_have_attribute("data-points", "60")
    expect(loss.locator(".chart-last")).to_contain_text("at step 59")
    expect(page.locator("body")).to_have_attribute("data-loaded-once", "yes")
    path = loss.locator("svg path.line").get_attribute("d")
    assert path.startswith("M") and path.count("L") == 59
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.locator(".metrics-card").screenshot(path=str(SCREENSHOT_DIR / "ui-job-metrics.png"))

    redis_conn.xadd(Keys().job_metrics(job.id), {"m": json.dumps({"_step": 60, "<b>x</b>": 1.0})})
    expect(page.locator('figure.chart[data-key="<b>x</b>"] .chart-key')).to_have_text("<b>x</b>")
    expect(page.locator(".metrics-card b")).to_have_count(0)

    play_agent_end(redis_conn, job.id, execution, State.FINISHED, summary={"loss": 0.0512, "_step": 60})
    expect(page.locator("#job-state")).to_have_text("finished")
    expect(page.locator("#metrics-status")).to_have_text("ended")
    expect(page.locator("#summary")).to_contain_text("loss")
    expect(page.locator("#summary")).not_to_contain_text("_step")
