"""SWEEP.yaml read as W&B's sweep configuration: distributions, inference, grids, names. Pure."""

from __future__ import annotations

import math

import pytest
from launchbay.queue_config import sweep_study
from launchbay.queue_config.sweep_spec import parse_param, parse_sweep, split_name

from launchbay.errors import ValidationError


def param(body, name="x"):
    return parse_param(name, body)


def test_names_follow_set_and_file_set():
    assert split_name("trainer.learning_rate") == (None, ("trainer", "learning_rate"))
    assert split_name("config.yaml:optimizer.momentum") == ("config.yaml", ("optimizer", "momentum"))
    assert split_name("conf/train.json:a") == ("conf/train.json", ("a",))
    assert split_name(r"layers\.0.size") == (None, ("layers.0", "size"))
    assert split_name("a:b") == (None, ("a:b",))  # not a config file: a key with a colon
    with pytest.raises(ValidationError, match="must be relative"):
        split_name("../x.yaml:a")


@pytest.mark.parametrize(
    ("body", "kind", "finite"),
    [
        ({"values": [1, "a", [2, 3]]}, "categorical", [1, "a", [2, 3]]),
        ({"value": 0.5}, "constant", [0.5]),
        ({"min": 1, "max": 4}, "int_uniform", [1, 2, 3, 4]),  # two ints: int_uniform, as W&B infers
        ({"min": 1, "max": 4.0}, "uniform", None),
        ({"min": 0, "max": 1, "distribution": "q_uniform", "q": 0.25}, "q_uniform", [0.0, 0.25, 0.5, 0.75, 1.0]),
        ({"min": 0, "max": 10, "distribution": "q_uniform", "q": 5}, "q_uniform", [0, 5, 10]),
        ({"min": 2, "max": 8, "distribution": "int_uniform", "q": 3}, "int_uniform", [2, 5, 8]),
    ],
)
def test_distributions_and_their_finite_values(body, kind, finite):
    p = param(body)
    assert p.kind == kind
    assert p.finite_values() == finite


def test_log_uniform_takes_natural_log_bounds_and_log_uniform_values_takes_values():
    exps = param({"distribution": "log_uniform", "min": math.log(1e-4), "max": math.log(1e-1)})
    values = param({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1})
    assert (exps.low, exps.high) == pytest.approx((values.low, values.high))
    assert exps.bounds_to_check() == pytest.approx([1e-4, 1e-1])
    dist = sweep_study.distribution(values)
    assert (dist.low, dist.high, dist.log) == (pytest.approx(1e-4), pytest.approx(1e-1), True)


def test_q_log_uniform_values_rounds_what_the_job_gets():
    p = param({"distribution": "q_log_uniform_values", "min": 16, "max": 512, "q": 16})
    assert p.to_job(37.0) == 32 and p.to_job(505.3) == 512


def test_choices_that_optuna_cannot_hold_travel_as_json_and_come_back():
    p = param({"values": [[64, 64], [128]]})
    assert sweep_study.choices(p) == ["[64, 64]", "[128]"]
    assert sweep_study.job_value(p, "[128]") == [128]
    plain = param({"values": [1, 2]})
    assert sweep_study.choices(plain) == [1, 2] and sweep_study.job_value(plain, 2) == 2


def test_trial_cap_is_the_grid_or_run_cap_whichever_is_smaller():
    body = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"a": {"values": [1, 2, 3]}, "b": {"values": [1, 2]}},
    }
    assert parse_sweep(body).grid_size() == 6 and parse_sweep(body).trial_cap() == 6
    assert parse_sweep({**body, "run_cap": 4}).trial_cap() == 4
    assert parse_sweep({**body, "method": "random"}).trial_cap() == 100


def test_a_grid_too_large_is_refused():
    body = {"method": "grid", "metric": {"name": "l"}, "parameters": {c: {"min": 1, "max": 100} for c in "abc"}}
    with pytest.raises(ValidationError, match="1,000,000 combinations; at most 10,000"):
        parse_sweep(body)
