"""SWEEP.yaml read as W&B's sweep configuration: distributions, inference, grids, names. Pure."""

from __future__ import annotations

import math

import pytest
from launchbay.sweeps import study as sweep_study
from launchbay.sweeps.spec import parse_param, parse_sweep, split_name

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
        # W&B's grid of a q_uniform is numpy.arange(min, max, q): max is not listed; ints only when all are ints
        ({"min": 0, "max": 1, "distribution": "q_uniform", "q": 0.25}, "q_uniform", [0.0, 0.25, 0.5, 0.75]),
        ({"min": 0, "max": 10, "distribution": "q_uniform", "q": 5}, "q_uniform", [0, 5]),
        ({"min": 0, "max": 3, "distribution": "q_uniform"}, "q_uniform", [0.0, 1.0, 2.0]),  # W&B's q: 1.0
        ({"values": [1, 1.0, "a", 2, "a"]}, "categorical", [1, "a", 2]),  # a grid makes each value once
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


def test_w_and_b_nested_parameters_are_dotted_keys():
    body = {"method": "grid", "metric": {"name": "r", "goal": "maximize"}, "parameters": {
        "a": {"values": [1, 2, 3, 4]},
        "b": {"parameters": {"b1": {"values": [1, 2]}, "b.2": {"value": 0}}},
        "config.yaml:optimizer": {"parameters": {"momentum": {"values": [0.9]}}},
    }}  # fmt: skip
    spec = parse_sweep(body)
    assert [(p.name, p.file, p.parts) for p in spec.params] == [
        ("a", None, ("a",)),
        ("b.b1", None, ("b", "b1")),
        (r"b.b\.2", None, ("b", "b.2")),
        ("config.yaml:optimizer.momentum", "config.yaml", ("optimizer", "momentum")),
    ]
    assert spec.grid_size() == 8


# Sweep configurations from public repositories that run them with W&B, as data (the parameters as written there).
PUBLIC_SWEEPS = {
    # borkh/mcbm-ring-reco, sweep_configs.py: categorical, constant, uniform and q_log_uniform with natural-log bounds
    "borkh/mcbm-ring-reco": {"method": "random", "metric": {"name": "loss", "goal": "minimize"}, "parameters": {
        "optimizer": {"values": ["adam", "sgd"]}, "layers": {"values": [2, 3, 4]}, "epochs": {"value": 15},
        "learning_rate": {"distribution": "uniform", "min": 0, "max": 0.1},
        "batch_size": {"distribution": "q_log_uniform", "q": 1, "min": math.log(32), "max": math.log(256)}}},
    # nedtaylor/athena, tools/sweep_initialise.py: min/max only, ints and floats (W&B infers the distribution)
    "nedtaylor/athena": {"method": "random", "metric": {"goal": "minimize", "name": "loss"}, "parameters": {
        "num_epochs": {"max": 20, "min": 10}, "learning_rate": {"max": 0.1, "min": 0.005},
        "momentum": {"max": 0.9, "min": 0.0}, "cv_clip_norm": {"max": 50.0, "min": 1.0}}},
    # MihirBafna/DiffRNAFold, sweep.py: categorical values of several types, a name
    "MihirBafna/DiffRNAFold": {"method": "random", "name": "sweep", "metric": {"goal": "minimize", "name": "val_loss"},
        "parameters": {"lr": {"values": [1e-7, 5e-7, 1e-6]}, "model_type": {"values": ["VAE", "AE"]},
                       "augmented": {"values": [True, False]}}},
}  # fmt: skip


@pytest.mark.parametrize("source", sorted(PUBLIC_SWEEPS))
def test_sweep_files_people_run_with_w_and_b_are_read_as_w_and_b_reads_them(source):
    spec = parse_sweep(PUBLIC_SWEEPS[source], source=source)
    kinds = {p.name: p.kind for p in spec.params}
    if source == "borkh/mcbm-ring-reco":
        batch = next(p for p in spec.params if p.name == "batch_size")
        assert kinds == {"optimizer": "categorical", "layers": "categorical", "epochs": "constant",
                         "learning_rate": "uniform", "batch_size": "q_log_uniform"}  # fmt: skip
        assert (batch.low, batch.high) == pytest.approx((32, 256)) and batch.to_job(100.4) == 100
    elif source == "nedtaylor/athena":
        assert kinds == {
            "num_epochs": "int_uniform",
            "learning_rate": "uniform",
            "momentum": "uniform",
            "cv_clip_norm": "uniform",
        }
    else:
        assert spec.name == "sweep" and kinds == dict.fromkeys(("lr", "model_type", "augmented"), "categorical")
    for param in spec.params:  # every one maps to an Optuna distribution
        assert sweep_study.distribution(param) is not None
