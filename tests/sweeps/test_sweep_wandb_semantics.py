"""What W&B's sweep engine does that launchbay now does too: metric.target ends a sweep, probabilities
weight random search, two parameters on one key are refused, a bound YAML read as text is explained,
and W&B's keys that mean nothing here are accepted with a note. The driver on a real Redis, the
agents' part played by ``sweep_helpers.Runner`` (tests/compat/test_compat_sweep_engine.py runs the
ported wandb/sweeps cases).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import yaml
from conftest import run_cli
from launchbay.client import sweeps
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.sweeps.driver import SweepDriver
from launchbay.sweeps.spec import parse_sweep
from sweep_helpers import Runner, bowl, sweep_file, trainer_job, trial_values

from launchbay.errors import ValidationError

METRIC = {"name": "loss", "goal": "minimize"}
LR_MOMENTUM = {
    "trainer.learning_rate": {"distribution": "log_uniform_values", "min": 0.0001, "max": 1.0},
    "config.yaml:optimizer.momentum": {"min": 0.0, "max": 1.0},
}


def run_to_end(conn, sweep_id, runner, timeout_s=60.0):
    driver = SweepDriver(conn, Keys(), "a1", ["sweeps"], threading.Event())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        driver.pass_once()
        runner.run_all_queued()
        view = sweeps.show(conn, Keys(), sweep_id)
        if view["state"] in ("finished", "stopped"):
            return view
    raise AssertionError(f"sweep {sweep_id} did not end")


def make(conn, tmp_path, body):
    trainer_job(conn, tmp_path)
    sweep_id, _notes = sweeps.create(sweep_file(tmp_path, body), "sweeps", conn=conn, keys=Keys())
    return sweep_id


@pytest.mark.integration
def test_metric_target_ends_the_sweep_once_a_trial_reaches_it(redis_conn, tmp_path):
    body = {"method": "random", "seed": 0, "run_cap": 60, "max_parallel": 1,
            "metric": {**METRIC, "target": 1.035}, "parameters": LR_MOMENTUM}  # fmt: skip
    sweep_id = make(redis_conn, tmp_path, body)
    view = run_to_end(redis_conn, sweep_id, Runner(redis_conn, "sweeps", lambda v: [bowl(v)]))
    values = [t["value"] for t in view["trials"]]
    print(f"target 1.035 reached after {len(values)} of at most 60 trials")
    assert view["state"] == "finished"
    assert values[-1] <= 1.035 and all(v > 1.035 for v in values[:-1])  # it stops at the first trial that reaches it
    assert len(values) < 60
    assert "reached its target 1.035" in view["message"]


@pytest.mark.integration
def test_probabilities_weight_what_random_search_draws(redis_conn, tmp_path):
    body = {"method": "random", "seed": 5, "run_cap": 40, "max_parallel": 4, "metric": METRIC,
            "parameters": {"trainer.learning_rate": {"values": [0.001, 0.01, 0.1], "probabilities": [0.0, 0.8, 0.2]},
                           "config.yaml:optimizer.momentum": {"value": 0.7}}}  # fmt: skip
    sweep_id = make(redis_conn, tmp_path, body)
    view = run_to_end(redis_conn, sweep_id, Runner(redis_conn, "sweeps", lambda v: [bowl(v)]))
    records = Records(redis_conn, Keys())
    counts = Counter(trial_values(records.as_json(t["job_id"]))["lr"] for t in view["trials"])
    print(f"lr drawn with probabilities 0, 0.8, 0.2 over 40 trials: {dict(counts)}")
    assert sum(counts.values()) == 40 and counts[0.001] == 0
    assert counts[0.01] >= 24 and counts[0.1] >= 2  # 32 and 8 expected; 3 sigma below


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"a.b": {"values": [1]}, "a": {"parameters": {"b": {"values": [2]}}}},
         "parameter 'a.b' is given twice (a dotted name and nested parameters:); keep one"),
        ({"trainer": {"values": [{"lr": 1}]}, "trainer.lr": {"values": [2]}},
         "parameters 'trainer' and 'trainer.lr' set keys one inside the other; keep one"),
        ({"x": {"min": "1e-6", "max": 1.0}},
         "parameter 'x': min '1e-6' is text, not a number (YAML reads a number with an exponent but no dot as text); write 1.0e-6"),
        ({"x": {"min": 1.0, "max": "5E3"}}, "write 5.0e+3"),
        ({"x": {"value": 1, "values": [1, 2]}}, "parameter 'x': categorical takes values, probabilities, not value"),
        ({"x": {"values": [1, 2], "min": 0, "max": 3}}, "categorical takes values, probabilities, not max, min"),
        ({"x": {"distribution": "int_uniform", "min": 0, "max": 8, "q": 2}}, "int_uniform takes min, max, not q"),
        ({"x y": {"values": [1]}}, "parameter 'x y': a name starts with a letter or '_'"),
        ({"x": {"values": [1, 2], "probabilities": [0.5, 0.6]}}, "probabilities sum to 1.1; they must sum to 1"),
        ({"x": {"values": [1, 2], "probabilities": [1.0]}}, "2 values but 1 probabilities; give one per value"),
    ],
)  # fmt: skip
def test_what_wandb_refuses_or_would_merge_is_refused_in_one_line(parameters, message):
    with pytest.raises(ValidationError) as exc:
        parse_sweep({"method": "random", "metric": METRIC, "parameters": parameters}, source="s.yaml")
    assert str(exc.value) == f"s.yaml: {message}" or message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_yaml_reads_1e_6_as_text_and_the_suggested_spelling_as_a_number():
    assert yaml.safe_load("min: 1e-6")["min"] == "1e-6"
    assert yaml.safe_load("min: 1.0e-6")["min"] == 1e-6 and yaml.safe_load("max: 5.0e+3")["max"] == 5000.0


@pytest.mark.integration
def test_wandbs_keys_that_mean_nothing_here_are_accepted_with_a_note_on_stderr(redis_conn, redis_url, tmp_path):
    trainer_job(redis_conn, tmp_path)
    body = {"method": "random", "run_cap": 5.0, "metric": {**METRIC, "impute": "worst"},
            "controller": {"type": "local"}, "apiVersion": "v1", "kind": "sweep", "image_uri": "img:1",
            "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2.5}, "parameters": LR_MOMENTUM}  # fmt: skip
    result = run_cli("sweep", "create", str(sweep_file(tmp_path, body)), "-q", "sweeps", "--redis-url", redis_url)
    assert result.returncode == 0, result.stderr
    for key in ("controller", "apiVersion", "kind", "image_uri"):
        assert f"{key}: W&B's, ignored by launchbay" in result.stderr
    assert "metric.impute: accepted; launchbay's optimizers leave failed and running trials out" in result.stderr
    sweep_id = result.stdout.strip()
    assert sweeps.show(redis_conn, Keys(), sweep_id)["trial_cap"] == 5
