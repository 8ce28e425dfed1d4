"""W&B Launch's env contract as the agent builds it (agent/wandb_env.py and the container spec), without Docker.

The names, the JSON and the splitting are W&B's: wandb/wandb ``wandb/sdk/launch/_project_spec.py``
(``_inject_wandb_config_env_vars``, ``_inject_file_overrides_env_vars``) and ``utils.MAX_ENV_LENGTHS``.
What a real ``wandb`` does with them is in tests/compat/test_wandb_env_e2e.py.
"""

from __future__ import annotations

import json

import pytest
from launchbay.agent import wandb_env
from launchbay.agent.container_spec import build_container_spec
from launchbay.agent.job_secrets import JobSecrets
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.payload_dir import prepare_payload
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.models import QueueConfig

INPUTS = {
    "run_config": {"include": ["trainer"], "exclude": ["trainer.private"], "types": None, "schema": None},
    "files": {"config.yaml": {"include": ["epochs"], "exclude": [], "types": None, "schema": None}},
}


def joined(env: dict, name: str) -> str:
    """What wandb reads: the value itself, else its numbered pieces in order (wandb_init._handle_launch_config)."""
    if name in env:
        return env[name]
    pieces, i = [], 0
    while f"{name}_{i}" in env:
        pieces.append(env[f"{name}_{i}"])
        i += 1
    return "".join(pieces)


def test_small_overrides_go_in_one_variable_each_as_wandb_writes_them():
    env, notes = wandb_env.contract_env({"trainer": {"lr": 0.05}}, {"config.yaml": {"epochs": 5}}, None)
    assert env == {
        "WANDB_LAUNCH": "true",
        "WANDB_CONFIG": '{"trainer": {"lr": 0.05}}',
        "WANDB_LAUNCH_FILE_OVERRIDES": '{"config.yaml": {"epochs": 5}}',
    }
    assert notes == []


def test_no_overrides_still_hand_an_empty_object_as_wandb_does():
    env, _ = wandb_env.contract_env({}, {}, None)
    assert env == {"WANDB_LAUNCH": "true", "WANDB_CONFIG": "{}", "WANDB_LAUNCH_FILE_OVERRIDES": "{}"}


@pytest.mark.parametrize("length", [32670, 32671, 65340, 65341, 100_000])
def test_a_long_value_is_cut_into_numbered_pieces_of_wandbs_limit(length):
    text = "x" * length
    pieces = wandb_env.split_value("WANDB_CONFIG", text)
    if length <= 32670:
        assert pieces == {"WANDB_CONFIG": text}
        return
    count = -(-length // 32670)
    assert list(pieces) == [f"WANDB_CONFIG_{i}" for i in range(count)]
    assert all(len(piece) == 32670 for piece in list(pieces.values())[:-1])
    assert "".join(pieces.values()) == text


def test_a_large_run_config_arrives_whole_through_the_pieces():
    config = {"trainer": {"notes": "é" * 20_000, "lr": 0.1}}  # non-ASCII: escaped, as json.dumps does
    env, _ = wandb_env.contract_env(config, {}, None)
    assert "WANDB_CONFIG" not in env and "WANDB_CONFIG_1" in env
    assert json.loads(joined(env, "WANDB_CONFIG")) == config


def test_keys_outside_the_inputs_are_left_out_and_named():
    env, notes = wandb_env.contract_env(
        {"trainer": {"lr": 0.05, "private": {"key": "leaked"}}, "seed": 7},
        {"config.yaml": {"epochs": 5, "optimizer": {"name": "adam"}}, "other.yaml": {"a": 1}},
        INPUTS,
    )
    assert json.loads(env["WANDB_CONFIG"]) == {"trainer": {"lr": 0.05}}
    assert json.loads(env["WANDB_LAUNCH_FILE_OVERRIDES"]) == {"config.yaml": {"epochs": 5}}
    assert notes == [
        "W&B env: left out overrides outside the job's inputs: trainer.private.key, seed, "
        "config.yaml:optimizer.name, other.yaml:a"
    ]


def test_inputs_without_a_run_config_section_let_no_run_config_through():
    env, notes = wandb_env.contract_env({"seed": 7}, {}, {"run_config": None, "files": {}})
    assert env["WANDB_CONFIG"] == "{}"
    assert notes and notes[0].endswith(": seed")


def test_a_contract_over_the_total_cap_is_left_out_with_a_note():
    env, notes = wandb_env.contract_env({"blob": "x" * (wandb_env.MAX_TOTAL_BYTES + 1)}, {}, None)
    assert env == {}
    assert "left out" in notes[-1] and str(wandb_env.MAX_TOTAL_BYTES) in notes[-1]


@pytest.mark.parametrize(
    ("name", "owned"),
    [("WANDB_CONFIG", True), ("WANDB_CONFIG_12", True), ("WANDB_LAUNCH", True), ("WANDB_LAUNCH_FILE_OVERRIDES_0", True),
     ("WANDB_DIR", True), ("WANDB_CONFIG_DIR", False), ("WANDB_API_KEY", False), ("WANDB_MODE", False)],
)  # fmt: skip
def test_only_the_contract_names_are_the_agents(name, owned):
    assert wandb_env.is_contract_name(name) is owned


# -- in the container spec --------------------------------------------------------------------------


def build(tmp_path, queue: QueueConfig, env: dict, secrets=None, inputs=None) -> dict:
    spec = {"image": "img", "command": ["python", "train.py"], "workdir": None, "env": env, "docker": {}}
    if inputs is not None:
        spec["inputs"] = inputs
    record = {"id": "job-1", "name": "t", "spec": spec, "run_config": {"trainer": {"lr": 0.5}}, "file_overrides": {}}
    alloc = LedgerEntry("job-1", queue.name, 0.0, 0, (), claimed_at=0.0, max_runtime_s=None)
    payload = prepare_payload(tmp_path, "job-1", record["run_config"], {})
    warnings: list = []
    kwargs = build_container_spec(
        JobRecord.from_fields("job-1", record),
        queue,
        alloc,
        agent_id="a",
        payload=payload,
        gpu_uuid_for=lambda _gpu: None,
        warn=warnings.append,
        secrets=secrets,
    )
    return {"env": kwargs["environment"], "warnings": warnings}


def test_every_container_gets_the_contract_and_the_jobs_own_wandb_config_is_dropped(tmp_path):
    built = build(
        tmp_path, QueueConfig(name="q"), {"WANDB_CONFIG": '{"x": 1}', "WANDB_CONFIG_0": "{", "WANDB_MODE": "offline"}
    )
    env = built["env"]
    assert env["WANDB_LAUNCH"] == "true"
    assert json.loads(env["WANDB_CONFIG"]) == {"trainer": {"lr": 0.5}}
    assert "WANDB_CONFIG_0" not in env
    assert env["WANDB_MODE"] == "offline"


def test_a_queue_with_wandb_env_off_sets_none_of_it_and_leaves_the_jobs_env_alone(tmp_path):
    env = build(tmp_path, QueueConfig(name="q", wandb_env=False), {"WANDB_CONFIG": '{"x": 1}'})["env"]
    assert env["WANDB_CONFIG"] == '{"x": 1}'
    assert "WANDB_LAUNCH" not in env and "WANDB_LAUNCH_FILE_OVERRIDES" not in env


def test_the_container_spec_filters_by_the_records_inputs_and_says_so_in_the_log(tmp_path):
    inputs = {"run_config": {"include": ["seed"], "exclude": [], "types": None, "schema": None}, "files": {}}
    built = build(tmp_path, QueueConfig(name="q"), {}, inputs=inputs)
    assert built["env"]["WANDB_CONFIG"] == "{}"
    assert built["warnings"] == ["W&B env: left out overrides outside the job's inputs: trainer.lr"]


def test_secrets_go_over_the_jobs_env_and_under_launchbays_own_names(tmp_path):
    secrets = JobSecrets(env={"WANDB_API_KEY": "k-123456"}, run_config={"trainer": {"lr": 0.5}}, file_overrides={})
    env = build(tmp_path, QueueConfig(name="q"), {"WANDB_API_KEY": "submitters-own"}, secrets=secrets)["env"]
    assert env["WANDB_API_KEY"] == "k-123456"
    assert env["LAUNCHBAY_JOB_ID"] == "job-1"


def test_wandbs_run_files_go_to_the_output_folder_and_without_a_key_the_run_is_offline(tmp_path):
    # The job's own WANDB_DIR would put the run where the agent cannot follow it.
    env = build(tmp_path, QueueConfig(name="q"), {"WANDB_DIR": "/tmp"})["env"]
    assert env["WANDB_DIR"] == "/launchbay/output"
    assert env["WANDB_MODE"] == "offline"  # no key: wandb.init must not wait at a login prompt


def test_with_the_queues_key_or_the_jobs_own_mode_the_agent_sets_no_mode(tmp_path):
    secrets = JobSecrets(env={"WANDB_API_KEY": "k-123456"}, run_config={}, file_overrides={})
    assert "WANDB_MODE" not in build(tmp_path / "a", QueueConfig(name="q"), {}, secrets=secrets)["env"]
    env = build(tmp_path / "b", QueueConfig(name="q"), {"WANDB_MODE": "disabled"})["env"]
    assert env["WANDB_MODE"] == "disabled"


def test_a_queue_with_wandb_env_off_gets_no_wandb_dir_or_mode(tmp_path):
    env = build(tmp_path, QueueConfig(name="q", wandb_env=False), {})["env"]
    assert "WANDB_DIR" not in env and "WANDB_MODE" not in env
