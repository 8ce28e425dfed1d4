"""examples/trainer: the job scripts/demo runs, checked here without Docker (train.py in a copy of
its folder, with the payload in env as an agent would send it) and against the models."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from launchbay.queue_config.models import load_job_spec, load_queue_config

EXAMPLE = REPO_ROOT / "examples" / "trainer"


def run_trainer(tmp_path: Path, run_config=None, file_overrides=None) -> subprocess.CompletedProcess:
    workdir = tmp_path / "app"
    shutil.copytree(EXAMPLE, workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHBAY_")}
    env["LAUNCHBAY_OUTPUT_DIR"] = str(tmp_path / "output")
    (tmp_path / "output").mkdir()
    if run_config is not None:
        env["LAUNCHBAY_RUN_CONFIG"] = json.dumps(run_config)
    if file_overrides is not None:
        env["LAUNCHBAY_FILE_OVERRIDES"] = json.dumps(file_overrides)
    return subprocess.run(
        [sys.executable, "train.py"], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )


def marked(stdout: str) -> dict:
    """``{key: value}`` of the lines train.py marks as set by an override."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"^\s+(\S+)\s+(.+?)\s+<- override$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_the_demo_overrides_are_applied_and_marked_and_nothing_else_is(tmp_path):
    result = run_trainer(tmp_path, {"trainer": {"learning_rate": 0.05}}, {"config.yaml": {"epochs": 5}})
    assert result.returncode == 0, result.stderr
    assert marked(result.stdout) == {"trainer.learning_rate": "0.05", "epochs": "5"}
    assert "epoch 5/5:" in result.stdout and "epoch 6/" not in result.stdout
    assert result.stdout.rstrip().endswith("overrides applied: trainer.learning_rate=0.05, config.yaml:epochs=5")


def test_without_overrides_the_job_runs_on_its_own_values(tmp_path):
    result = run_trainer(tmp_path)
    assert result.returncode == 0, result.stderr
    assert marked(result.stdout) == {}
    assert "epoch 3/3:" in result.stdout
    assert result.stdout.rstrip().endswith("overrides applied: none")


def test_excluded_keys_are_not_applied_and_are_named_on_stderr(tmp_path):
    result = run_trainer(
        tmp_path,
        {"trainer": {"private": {"key": "stolen"}, "batch_size": 64}},
        {"config.yaml": {"optimizer": {"name": "adam", "momentum": 0.5}}},
    )
    assert result.returncode == 0, result.stderr
    assert marked(result.stdout) == {"trainer.batch_size": "64", "optimizer.momentum": "0.5"}
    assert "'stolen'" not in result.stdout and "'adam'" not in result.stdout
    assert "ignored overrides outside the job's inputs: trainer.private.key" in result.stderr
    assert "in config.yaml: optimizer.name" in result.stderr


@pytest.mark.parametrize(
    ("run_config", "file_overrides", "problem"),
    [
        ({"trainer": {"batch_size": 512}}, None, "trainer.batch_size: 512 is greater than the maximum 256"),
        ({"trainer": {"dataset": "mnist"}}, None, 'trainer.dataset: "mnist" is not one of'),
        (None, {"config.yaml": {"epochs": 0}}, "epochs: 0 is less than the minimum 1"),
    ],
)
def test_a_value_outside_the_schemas_stops_the_job_before_it_trains(tmp_path, run_config, file_overrides, problem):
    result = run_trainer(tmp_path, run_config, file_overrides)
    assert result.returncode != 0
    assert "epoch 1/" not in result.stdout
    assert "InputValidationError" in result.stderr and problem in result.stderr


def test_the_recorded_inputs_are_what_the_readme_says_a_launch_may_change(tmp_path):
    assert run_trainer(tmp_path).returncode == 0
    inputs = json.loads((tmp_path / "output" / "inputs.json").read_text())
    assert inputs["run_config"]["include"] == ["seed", "trainer"]
    assert inputs["run_config"]["exclude"] == ["trainer.private"]
    assert "private" not in inputs["run_config"]["types"]["trainer"]
    assert inputs["files"]["config.yaml"]["types"] == {
        "epochs": "int",
        "optimizer": {"momentum": "float", "weight_decay": "float"},
    }


def test_the_job_spec_and_the_local_queue_load_and_fit_together():
    spec = load_job_spec(EXAMPLE / "job.yaml")
    queue = load_queue_config(REPO_ROOT / "queue_config" / "examples" / "local.yaml")
    assert spec.name == "trainer" and spec.command == ["python3", "train.py"] and spec.workdir == "/app"
    assert spec.resources.cpus <= queue.limits.cpus and spec.resources.memory_mib <= queue.limits.memory_mib
    assert spec.max_runtime_s <= queue.limits.max_runtime_s
    assert queue.docker.gpu_mode == "env_only"


def test_the_images_build_from_a_base_chosen_at_build_time():
    for dockerfile in (EXAMPLE / "Dockerfile", REPO_ROOT / "Dockerfile"):
        lines = [line for line in dockerfile.read_text().splitlines() if line and not line.startswith("#")]
        assert lines[0] == "ARG BASE_IMAGE=python:3.12-slim", dockerfile
        stages = [line.split() for line in lines if line.startswith("FROM ")]
        # Every stage (the agent's Dockerfile has a wheel-building one first) starts from that base.
        assert stages and all(stage[1] == "${BASE_IMAGE}" for stage in stages), dockerfile


def test_the_example_config_file_keeps_its_comments_when_patched(tmp_path):
    assert run_trainer(tmp_path, None, {"config.yaml": {"epochs": 7}}).returncode == 0
    patched = (tmp_path / "app" / "config.yaml").read_text()
    assert "epochs: 7              # passes over the data (1-100)" in patched
    assert yaml.safe_load(patched)["optimizer"]["name"] == "sgd"
