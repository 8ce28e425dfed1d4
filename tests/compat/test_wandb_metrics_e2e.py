"""An unchanged W&B job's metrics on launchbay: the REAL ``wandb`` in the image, no launchbay code in
it, a real ``launchbay agent`` (with ``launchbay[wandb]``) and Docker.

The job (tests/compat/wandb_metrics_job.py) only calls ``wandb.init``/``wandb.log``/``run.summary``;
the agent sets ``WANDB_DIR`` inside the job's output folder and ``WANDB_MODE=offline`` (the queue
gives no key), follows W&B's run file while the job runs, and streams every step as it does for a
``launchbay.wandb`` job: ``launchbay metrics``, ``status``'s summary and the job page's charts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))

from conftest import run_cli
from test_control_support import make_queue
from test_e2e_agent import TERMINAL, agents, log_lines, state_of, wait_for  # noqa: F401  (agents is a fixture)
from wandb_env_helpers import wandb_image  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

STEPS = 400


def cli(redis_url: str, *args: str, timeout: float = 60):
    return run_cli(*args, env={"LAUNCHBAY_REDIS_URL": redis_url}, timeout=timeout)


def metrics_of(redis_url: str, job_id: str) -> list:
    result = cli(redis_url, "metrics", job_id, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def job_spec(tmp_path: Path, image: str, **more) -> Path:
    spec = {"name": "compat-wandb-metrics", "image": image, "command": ["python3", "wandb_metrics_job.py"]}
    spec.update(workdir="/app", **more)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_an_unchanged_wandb_jobs_steps_and_summary_reach_metrics_status_and_the_job_page(
    tmp_path,
    redis_url,
    redis_conn,
    wandb_image,  # noqa: F811
    agents,  # noqa: F811
):
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"})
    agent = agents("wandb-metrics-agent")
    spec = job_spec(tmp_path, wandb_image)
    sets = ["--set", "x=1.0", "--set", f"steps={STEPS}", "--set", "hold_s=25"]
    enqueued = cli(redis_url, "enqueue", str(spec), "-q", "e2e", *sets, timeout=120)
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip().splitlines()[0]

    # While it runs: W&B's writer has put whole blocks of steps on disk, the agent has streamed them.
    wait_for(
        lambda: len(metrics_of(redis_url, job_id)) >= 100 or state_of(redis_conn, job_id) in TERMINAL,
        timeout_s=120,
        what="steps of the running W&B job in `launchbay metrics`",
    )
    assert state_of(redis_conn, job_id) == "running", (log_lines(redis_conn, job_id), agent.output())

    wait_for(lambda: state_of(redis_conn, job_id) in TERMINAL, timeout_s=120, what=f"job {job_id} to end")
    lines = log_lines(redis_conn, job_id)
    assert state_of(redis_conn, job_id) == "finished", (lines, agent.output())
    steps = metrics_of(redis_url, job_id)
    assert [step["_step"] for step in steps] == list(range(STEPS))
    assert steps[0]["loss"] == pytest.approx(5.0) and steps[-1]["loss"] == pytest.approx(4 + 1 / STEPS)
    assert steps[-1]["train/acc"] == pytest.approx((STEPS - 1) / STEPS)

    status = cli(redis_url, "status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)["summary"]
    assert summary["objective"] == pytest.approx(4.0)
    assert summary["loss"] == pytest.approx(4 + 1 / STEPS)
    assert not any("W&B" in line and "not in launchbay" in line for line in lines), lines
    # No key on the queue: the run was offline, and it outlives the job's folder for `wandb sync`.
    (kept,) = [line.rsplit(": ", 1)[1] for line in lines if "W&B offline run kept" in line]
    assert Path(kept).name.startswith("offline-run-") and list(Path(kept).glob("run-*.wandb")), lines

    _the_job_page_charts_it(redis_url, job_id)


def _the_job_page_charts_it(redis_url: str, job_id: str) -> None:
    from playwright.sync_api import expect
    from ui_helpers import EXPECT_MS, VIEWPORT, UiServer, chromium_browser

    server = UiServer(redis_url)
    browsers = chromium_browser()
    browser = next(browsers)
    try:
        context = browser.new_context(viewport=VIEWPORT, base_url=server.url)
        context.set_default_timeout(EXPECT_MS)
        page = context.new_page()
        page.goto(f"/job/{job_id}")
        charts = page.locator("figure.chart")
        expect(charts).to_have_count(2)
        assert charts.evaluate_all("els => els.map(e => e.dataset.key)") == ["loss", "train/acc"]
        expect(page.locator('figure.chart[data-key="loss"]')).to_have_attribute("data-points", str(STEPS))
        expect(page.locator('figure.chart[data-key="loss"] .chart-last')).to_contain_text(f"at step {STEPS - 1}")
        context.close()
    finally:
        browsers.close()
        server.stop()


def test_a_wandb_format_grid_sweep_over_the_unchanged_job_finds_the_known_best_value(
    tmp_path,
    redis_url,
    redis_conn,
    wandb_image,  # noqa: F811
    agents,  # noqa: F811
):
    # The job's objective is (x - 3)^2, which it only reports through wandb's run.summary. It records
    # no inputs (W&B's SDK does not), so its spec declares the two a sweep may set.
    inputs = {"run_config": {"include": ["x", "steps"]}}
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"})
    agent = agents("wandb-sweep-agent", "--max-jobs", "2")
    sweep = {
        "job": str(job_spec(tmp_path, wandb_image, inputs=inputs)),
        "method": "grid",
        "metric": {"name": "objective", "goal": "minimize"},
        "max_parallel": 2,
        "parameters": {"x": {"values": [1.0, 2.0, 3.0, 4.5]}, "steps": {"value": 20}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    created = cli(redis_url, "sweep", "create", str(path), "-q", "e2e")
    assert created.returncode == 0, created.stderr
    sweep_id = created.stdout.strip()

    shown = cli(redis_url, "sweep", "show", sweep_id, "--wait", "--json", timeout=400)
    assert shown.returncode == 0, (shown.stderr, agent.output())
    view = json.loads(shown.stdout)

    assert view["state"] == "finished" and len(view["trials"]) == 4, view
    values = {trial["params"]["x"]: trial["value"] for trial in view["trials"]}
    assert values == pytest.approx({1.0: 4.0, 2.0: 1.0, 3.0: 0.0, 4.5: 2.25})
    assert view["best"]["params"]["x"] == 3.0 and view["best"]["value"] == pytest.approx(0.0)
