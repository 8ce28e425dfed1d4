"""``launchbay sweep create``: a sweep that could make an invalid trial is refused, one line per
problem, exit 2, nothing written; a good one prints its id and ``sweep show --json`` has the shape
docs/sweeps.md gives."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from launchbay.queue_config.keys import Keys
from sweep_helpers import sweep_file, trainer_job

pytestmark = pytest.mark.integration

METRIC = {"name": "loss", "goal": "minimize"}


def sweep_keys(conn):
    return sorted(k.decode() for k in conn.keys(f"{Keys().namespace}:sweep*"))


def create(redis_url, path, *extra):
    return run_cli("sweep", "create", str(path), "-q", "sweeps", "--redis-url", redis_url, *extra)


@pytest.mark.parametrize(
    ("parameter", "body", "expected"),
    [
        ("trainer.private.key", {"values": ["a", "b"]}, "parameter 'trainer.private.key': key 'trainer.private.key' is excluded by prefix 'trainer.private'"),
        ("config.yaml:optimizer.name", {"values": ["adam"]}, "is excluded by prefix 'optimizer.name'"),
        ("model.depth", {"values": [1, 2]}, "parameter 'model.depth': key 'model.depth' is under no include prefix"),
        ("config.yaml:optimizer.momentum", {"min": 0.5, "max": 1.5}, "parameter 'config.yaml:optimizer.momentum': optimizer.momentum: 1.5 is greater than the maximum of 1"),
        ("config.yaml:epochs", {"min": 0, "max": 10}, "parameter 'config.yaml:epochs': epochs: 0 is less than the minimum of 1"),
        ("trainer.batch_size", {"values": [16, "big"]}, "parameter 'trainer.batch_size': trainer.batch_size: expected int, got str \"big\""),
        ("trainer.batch_size", {"min": 0.5, "max": 64.5}, "trainer.batch_size: expected int, got float 0.5"),
        ("trainer.dataset", {"values": ["cifar10", "imagenet"]}, "'imagenet' is not one of ['cifar10', 'cifar100']"),
        ("other.yaml:lr", {"values": [1]}, "config file 'other.yaml' is not one the job manages (it manages: config.yaml)"),
    ],
)  # fmt: skip
def test_a_sweep_that_could_make_an_invalid_trial_is_refused(
    redis_conn, redis_url, tmp_path, parameter, body, expected
):
    trainer_job(redis_conn, tmp_path)
    path = sweep_file(tmp_path, {"method": "random", "metric": METRIC, "parameters": {parameter: body}})
    result = create(redis_url, path)
    assert result.returncode == 2, result
    assert expected in result.stderr, result.stderr
    assert result.stdout == ""
    assert sweep_keys(redis_conn) == []


def test_every_problem_gets_its_own_line(redis_conn, redis_url, tmp_path):
    trainer_job(redis_conn, tmp_path)
    path = sweep_file(tmp_path, {"method": "grid", "metric": METRIC, "parameters": {
        "trainer.private.key": {"values": ["x"]},
        "trainer.learning_rate": {"values": [0.1, "fast"]},
        "config.yaml:optimizer.momentum": {"values": [0.9, 2.0]},
    }})  # fmt: skip
    result = create(redis_url, path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: sweep refused (job 'trainer'): 3 problems"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "parameter 'trainer.private.key'",
        "parameter 'trainer.learning_rate'",
        "parameter 'config.yaml",
    ]
    assert sweep_keys(redis_conn) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"method": "hill", "metric": METRIC, "parameters": {"seed": {"values": [1]}}}, "method 'hill' must be one of grid, random, bayes"),
        ({"method": "random", "parameters": {"seed": {"values": [1]}}}, "metric: {name, goal} is missing"),
        ({"method": "random", "metric": METRIC, "parameters": {"seed": {"distribution": "normal", "mu": 0, "sigma": 1}}}, "distribution normal is unbounded"),
        ({"method": "grid", "metric": METRIC, "parameters": {"trainer.learning_rate": {"min": 0.1, "max": 0.5}}}, "grid needs a finite set"),
        ({"method": "random", "metric": METRIC, "parameters": {"seed": {"min": 5, "max": 1}}}, "needs numbers min < max"),
        ({"method": "random", "metric": METRIC, "run_cap": 0, "parameters": {"seed": {"values": [1]}}}, "run_cap 0 must be a positive integer"),
        ({"method": "random", "metric": METRIC, "early_terminate": {"type": "asha"}, "parameters": {"seed": {"values": [1]}}}, "early_terminate needs type: hyperband or median"),
    ],
)  # fmt: skip
def test_a_sweep_file_w_and_b_would_not_run_either_is_refused(redis_conn, redis_url, tmp_path, body, expected):
    trainer_job(redis_conn, tmp_path)
    result = create(redis_url, sweep_file(tmp_path, body))
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert sweep_keys(redis_conn) == []


def test_a_job_that_never_ran_and_declares_nothing_cannot_be_swept(redis_conn, redis_url, tmp_path):
    trainer_job(redis_conn, tmp_path, name="fresh")
    redis_conn.delete(Keys().jobdef("fresh"))
    result = create(
        redis_url, sweep_file(tmp_path, {"method": "random", "metric": METRIC, "parameters": {"seed": {"values": [1]}}})
    )
    assert result.returncode == 2
    assert "has recorded no inputs" in result.stderr and "add inputs: to its spec" in result.stderr


def test_create_prints_the_id_and_show_json_has_the_documented_shape(redis_conn, redis_url, tmp_path):
    trainer_job(redis_conn, tmp_path)
    body = {"method": "bayes", "metric": METRIC, "run_cap": 5, "max_parallel": 2, "parameters": {
        "trainer.learning_rate": {"distribution": "log_uniform_values", "min": 0.001, "max": 0.1},
        "config.yaml:optimizer.momentum": {"min": 0.0, "max": 1.0},
    }}  # fmt: skip
    result = create(redis_url, sweep_file(tmp_path, body))
    assert result.returncode == 0, result.stderr
    sweep_id = result.stdout.strip()
    shown = run_cli("sweep", "show", sweep_id, "--json", "--redis-url", redis_url)
    view = json.loads(shown.stdout)
    assert {"id", "state", "metric", "best", "trials"} <= set(view)
    assert (view["id"], view["state"], view["metric"], view["best"], view["trials"]) == (
        sweep_id,
        "running",
        METRIC,
        None,
        [],
    )
    listed = run_cli("sweep", "list", "--redis-url", redis_url)
    assert sweep_id in listed.stdout and "trainer bayes" in listed.stdout
    paused = run_cli("sweep", "pause", sweep_id, "--redis-url", redis_url)
    assert paused.stdout.strip() == f"sweep {sweep_id}: paused"
    assert run_cli("sweep", "stop", sweep_id, "--redis-url", redis_url).returncode == 0
    again = run_cli("sweep", "resume", sweep_id, "--redis-url", redis_url)
    assert again.returncode == 2 and f"sweep {sweep_id} is stopping; it cannot be made running" in again.stderr
    missing = run_cli("sweep", "show", "nope", "--redis-url", redis_url)
    assert missing.returncode == 2 and "unknown sweep 'nope'" in missing.stderr


def test_job_may_name_a_job_that_ran_and_the_trials_get_its_image_and_command(redis_conn, redis_url, tmp_path):
    from launchbay.client.enqueue import enqueue
    from launchbay.queue_config.store import QueueStore
    from sweep_helpers import TRAINER_INPUTS

    spec = trainer_job(redis_conn, tmp_path, image="registry.local/trainer:7", command=["python3", "train.py"])
    ran = enqueue(spec, "sweeps", conn=redis_conn, keys=Keys())
    QueueStore(redis_conn, Keys()).record_inputs("trainer", TRAINER_INPUTS, ran.id)  # what its agent records
    body = {"job": "trainer", "method": "grid", "metric": METRIC, "parameters": {"seed": {"values": [1, 2]}}}
    result = create(redis_url, sweep_file(tmp_path, body, name="by-name.yaml"))
    assert result.returncode == 0, result.stderr
    template = json.loads(redis_conn.hget(Keys().sweep(result.stdout.strip()), "template"))
    assert (template["name"], template["spec"]["image"], template["spec"]["command"]) == (
        "trainer", "registry.local/trainer:7", ["python3", "train.py"]
    )  # fmt: skip

    unknown = create(redis_url, sweep_file(tmp_path, {**body, "job": "nobody"}, name="unknown.yaml"))
    assert unknown.returncode == 2
    assert "job 'nobody': no job spec file of that name, and no recorded run of it" in unknown.stderr
