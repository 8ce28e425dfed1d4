"""``run.log`` / ``wandb.log`` / ``sdk.log`` write metrics.jsonl and summary.json (the metrics contract),
and a job with the real ``wandb`` importable also hands its tracking calls to it.

Step rules follow W&B's ``Run.log`` documentation: each call without ``step`` is one step; with
``step`` values gather until the step moves on (or ``commit=True``); a lower step is ignored.
"""

from __future__ import annotations

import json
import math

import pytest
from compat_helpers import JobRunner, launchbay_job


@pytest.fixture
def run_job(tmp_path):
    return JobRunner(tmp_path)


def test_each_log_call_is_one_line_with_step_timestamp_and_runtime(run_job):
    script = launchbay_job("""
    import wandb

    with wandb.init(config={"epochs": 3}) as run:
        for epoch in range(run.config.epochs):
            wandb.log({"loss": 1.0 / (epoch + 1), "train": {"acc": epoch / 10}})
    """)

    job = run_job(script)

    assert job.returncode == 0, job.stderr
    lines = run_job.metrics()
    assert [line["_step"] for line in lines] == [0, 1, 2]
    assert [line["loss"] for line in lines] == [1.0, 0.5, 1.0 / 3]
    assert [line["train/acc"] for line in lines] == [0.0, 0.1, 0.2]
    assert all(line["_runtime"] >= 0 and line["_timestamp"] > 1.6e9 for line in lines)
    assert lines[0]["_timestamp"] <= lines[1]["_timestamp"] <= lines[2]["_timestamp"]
    assert run_job.summary() == {"loss": 1.0 / 3, "train/acc": 0.2}
    raw = (job.outdir / "metrics.jsonl").read_text()
    assert raw.endswith("\n") and raw.count("\n") == 3


def test_explicit_steps_gather_until_the_step_moves_and_lower_steps_are_ignored(run_job):
    script = launchbay_job("""
    import wandb

    run = wandb.init()
    run.log({"a": 1}, step=5)
    run.log({"b": 2}, step=5)
    run.log({"c": 3}, step=7)
    run.log({"d": 4}, step=6)
    run.log({"e": 5}, step=7, commit=True)
    run.log({"f": 6})
    run.log({"g": 7}, commit=False)
    run.log({"h": 8})
    run.finish()
    """)

    job = run_job(script)

    assert job.returncode == 0, job.stderr
    stripped = [{k: v for k, v in line.items() if k not in ("_timestamp", "_runtime")} for line in run_job.metrics()]
    assert stripped == [
        {"_step": 5, "a": 1, "b": 2},
        {"_step": 7, "c": 3, "e": 5},
        {"_step": 8, "f": 6},
        {"_step": 9, "g": 7, "h": 8},
    ]
    assert "launchbay: log(step=6) ignored: the current step is already 7" in job.stderr


def test_values_are_made_json_and_bad_keys_dropped_with_one_warning_each(run_job):
    script = launchbay_job("""
    import wandb
    from decimal import Decimal

    run = wandb.init()
    for _ in range(2):
        wandb.log({"nan": float("nan"), "inf": float("inf"), "ninf": -float("inf"), "dec": Decimal("0.5"),
                   "name": "resnet", "flag": True, "none": None, "obj": object(), "_secret": 1})
    """)

    job = run_job(script)

    assert job.returncode == 0, job.stderr
    first = run_job.metrics()[0]
    assert {k: v for k, v in first.items() if not k.startswith("_")} == {
        "nan": "NaN",
        "inf": "Infinity",
        "ninf": "-Infinity",
        "dec": 0.5,
        "name": "resnet",
        "flag": True,
        "none": None,
    }
    assert job.stderr.count("log key 'obj' dropped") == 1
    assert job.stderr.count("log key '_secret' dropped: keys starting with '_' are reserved") == 1


def test_summary_set_by_the_job_wins_and_is_written_at_exit_without_finish(run_job):
    script = launchbay_job("""
    import wandb

    run = wandb.init()
    for acc in (0.5, 0.9, 0.7):
        wandb.log({"acc": acc, "loss": 1 - acc})
    run.summary["acc"] = 0.9
    run.summary["best_epoch"] = 1
    """)

    job = run_job(script)

    assert job.returncode == 0, job.stderr
    assert run_job.summary() == {"acc": 0.9, "loss": pytest.approx(0.3), "best_epoch": 1}


def test_native_sdk_log_writes_the_same_contract(run_job):
    script = """
from launchbay import sdk

with sdk.init(config={"lr": 0.1}) as run:
    sdk.log({"loss": 0.25})
    run.log({"loss": 0.125})
"""
    job = run_job(script)

    assert job.returncode == 0, job.stderr
    assert [(line["_step"], line["loss"]) for line in run_job.metrics()] == [(0, 0.25), (1, 0.125)]


def test_log_before_init_is_an_error_saying_what_to_do(run_job):
    job = run_job(launchbay_job("import wandb\nwandb.log({'a': 1})\n"))

    assert job.returncode != 0
    assert "log() needs an active run: call init() first" in job.stderr


FAKE_WANDB = '''
"""A stand-in for the real wandb package: records every call it gets, as JSON lines."""
import json, os

def _record(*event):
    with open(os.environ["FAKE_WANDB_CALLS"], "a") as f:
        f.write(json.dumps(event) + "\\n")

class _Config(dict):
    def update(self, d, allow_val_change=None):
        _record("config.update", d, allow_val_change)

class _Summary(dict):
    def __setitem__(self, key, value):
        _record("summary", key, value)

class _Run:
    def __init__(self):
        self.config, self.summary = _Config(), _Summary()
    def log(self, data, step=None, commit=None):
        _record("log", data, step, commit)
    def finish(self, exit_code=None):
        _record("finish", exit_code)

def init(**kwargs):
    _record("init", kwargs)
    return _Run()
'''


def test_tracking_calls_are_forwarded_to_an_installed_wandb(run_job, tmp_path):
    site = tmp_path / "site"
    (site / "wandb").mkdir(parents=True)
    (site / "wandb" / "__init__.py").write_text(FAKE_WANDB)
    calls = tmp_path / "calls.jsonl"
    script = launchbay_job("""
    import wandb
    from wandb.sdk import launch

    with wandb.init(project="demo", tags=["x"], config={"trainer": {"lr": 0.01}, "seed": 1}) as run:
        launch.manage_wandb_config(include=["trainer"])
        wandb.log({"loss": 0.5}, step=2)
        run.summary["best"] = 0.4
        run.config.epochs = 3
    """)

    job = run_job(
        script,
        run_config={"trainer": {"lr": 0.1}, "seed": 9},
        raw_env={"FAKE_WANDB_CALLS": str(calls), "LAUNCHBAY_WANDB_FORWARD": "1"},
        python_path=(site,),
    )

    assert job.returncode == 0, job.stderr
    events = [json.loads(line) for line in calls.read_text().splitlines()]
    # At init nothing is declared yet, so every override applies (seed 9); manage_wandb_config then
    # takes seed off the inputs, and the real run is told at once, and again at finish.
    assert events[0] == ["init", {"project": "demo", "tags": ["x"], "config": {"trainer": {"lr": 0.1}, "seed": 9}}]
    assert events[1:] == [
        ["config.update", {"trainer": {"lr": 0.1}, "seed": 1}, True],  # re-filtered by manage_wandb_config
        ["log", {"loss": 0.5}, 2, None],
        ["config.update", {"trainer": {"lr": 0.1}, "seed": 1, "epochs": 3}, True],
        ["summary", "best", 0.4],
        ["finish", None],
    ]
    # launchbay keeps its own record of the metrics as well.
    assert [line["loss"] for line in run_job.metrics()] == [0.5]
    assert not math.isnan(run_job.summary()["best"])


def test_forwarding_can_be_turned_off(run_job, tmp_path):
    site = tmp_path / "site"
    (site / "wandb").mkdir(parents=True)
    (site / "wandb" / "__init__.py").write_text(FAKE_WANDB)
    calls = tmp_path / "calls.jsonl"
    script = launchbay_job("import wandb\nwith wandb.init():\n    wandb.log({'a': 1})\n")

    job = run_job(
        script,
        raw_env={"FAKE_WANDB_CALLS": str(calls), "LAUNCHBAY_WANDB_FORWARD": "0"},
        python_path=(site,),
    )

    assert job.returncode == 0, job.stderr
    assert not calls.exists()
    assert run_job.metrics()[0]["a"] == 1


def test_summary_is_rewritten_at_most_once_a_second_while_logging(tmp_path, monkeypatch):
    from launchbay.sdk import metrics

    clock = [1000.0]
    monkeypatch.setattr(metrics.time, "time", lambda: clock[0])
    log = metrics.MetricsLog(tmp_path)
    summary = tmp_path / "summary.json"

    log.log({"loss": 3})
    assert json.loads(summary.read_text()) == {"loss": 3}
    clock[0] += 0.5
    log.log({"loss": 2})
    assert json.loads(summary.read_text()) == {"loss": 3}  # within the second: not yet rewritten
    clock[0] += 0.6
    log.log({"loss": 1})
    assert json.loads(summary.read_text()) == {"loss": 1}
    clock[0] += 0.1
    log.log({"loss": 0})
    log.summary["best"] = 0
    log.close()  # finish and exit always write
    assert json.loads(summary.read_text()) == {"loss": 0, "best": 0}
    assert [line["_runtime"] for line in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())] == [
        0.0,
        0.5,
        pytest.approx(1.1),
        pytest.approx(1.2),
    ]
