"""W&B's cases for key paths, include/exclude filtering, recorded input types and config-file overrides.

Sources (wandb/wandb at commit b6e29505884ea60c79ca12091f1f75bd39d2f955), named on each case:
``tests/unit_tests/test_launch/test_inputs/test_internal.py``, ``.../test_files_helpers.py``,
``core/pkg/launch/config_test.go`` and ``core/pkg/launch/job_builder_test.go``. W&B's recorded
types (``wb_type: string`` in a ``typedDict``) are shown in launchbay's shape (``"str"`` in a dict).
"""

from __future__ import annotations

import copy
import json

import pytest
from compat_helpers import JobRunner, launchbay_job
from launchbay.sdk import ConfigPathError, split_path
from launchbay.sdk.filtering import filter_tree


@pytest.fixture
def run_job(tmp_path):
    return JobRunner(tmp_path)


# test_internal.py: test_split_on_unesc_dot
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (r"path", ["path"]),
        (r"path.with.dot", ["path", "with", "dot"]),
        (r"path\.with\.esc.dot", ["path.with.esc", "dot"]),
        (r"path\.with.esc\.dot", ["path.with", "esc.dot"]),
        (r"path.with\.esc.dot", ["path", "with.esc", "dot"]),
    ],
)
def test_split_on_unescaped_dot(path, expected):
    assert list(split_path(path)) == expected


def test_split_trailing_backslash_raises():
    # test_internal.py: test_split_on_unesc_dot_trailing_backslash (W&B raises LaunchError)
    with pytest.raises(ConfigPathError, match="trailing backslash"):
        split_path("path\\")


GO_CONFIG = {"number": 9, "nested": {"list": ["a", "b", "c"], "text": "xyz"}}
DEEP_CONFIG = {
    "key1": "value1",
    "key2": {"key3": "value3", "key4": {"key5": "value5", "key6": {"key7": "value7", "key8": "value8"}}},
}


# config_test.go: TestFilterTree_Include / _Exclude / _IncludeAndExclude / _DeeplyNested
@pytest.mark.parametrize(
    ("config", "include", "exclude", "expected"),
    [
        (GO_CONFIG, [("number",), ("nested", "list")], [], {"number": 9, "nested": {"list": ["a", "b", "c"]}}),
        (GO_CONFIG, [], [("number",), ("nested", "list")], {"nested": {"text": "xyz"}}),
        (GO_CONFIG, [("nested",)], [("nested", "text")], {"nested": {"list": ["a", "b", "c"]}}),
        (
            DEEP_CONFIG,
            [("key2",)],
            [("key2", "key4", "key6", "key8"), ("key2", "key3")],
            {"key2": {"key4": {"key5": "value5", "key6": {"key7": "value7"}}}},
        ),
    ],
    ids=["include", "exclude", "include-and-exclude", "deeply-nested"],
)
def test_filter_tree(config, include, exclude, expected):
    before = copy.deepcopy(config)

    kept, _dropped = filter_tree(config, include, exclude)

    assert kept == expected
    # config_test.go: TestFilterDoesntMutateConfig
    assert config == before


def test_recorded_run_config_types_follow_include_and_exclude(run_job):
    # job_builder_test.go: TestWandbConfigParameters
    script = launchbay_job("""
    import wandb
    from wandb.sdk import launch

    config = {"key1": "value1", "key2": "value2",
              "key3": {"key4": {"key6": "value6", "key7": "value7"}, "key5": "value5"}}
    with wandb.init(config=config):
        launch.manage_wandb_config(include=["key1", "key3.key4"], exclude=["key3.key4.key6"])
    """)

    job = run_job(script)

    assert job.returncode == 0, job.stderr
    assert job.inputs["run_config"]["types"] == {"key1": "str", "key3": {"key4": {"key7": "str"}}}


def test_recorded_config_file_types_follow_include_and_exclude(run_job):
    # job_builder_test.go: TestConfigFileParameters
    script = launchbay_job("""
    from wandb.sdk import launch

    launch.manage_config_file("config.yaml", include=["key1", "key3"], exclude=["key3.key4"])
    """)
    yaml_text = "key1: value1\nkey2: value2\nkey3:\n  key4:\n    key6: value6\n    key7: value7\n  key5: value5\n"

    job = run_job(script, files={"config.yaml": yaml_text})

    assert job.returncode == 0, job.stderr
    assert job.inputs["files"]["config.yaml"]["types"] == {"key1": "str", "key3": {"key5": "str"}}


def test_recorded_schema_is_kept_with_the_inputs(run_job):
    # job_builder_test.go: TestWandbConfigParametersWithInputSchema (the schema travels with the inputs)
    script = launchbay_job("""
    import wandb
    from wandb.sdk import launch

    schema = {"type": "object", "properties": {"key1": {"type": "string", "label": "Key one"}}}
    with wandb.init(config={"key1": "value1"}):
        launch.manage_wandb_config(include=["key1"], schema=schema)
    """)

    job = run_job(script)

    assert job.inputs["run_config"]["schema"] == {
        "type": "object",
        "properties": {"key1": {"type": "string", "label": "Key one"}},
    }


FILE_OVERRIDE_SCRIPT = launchbay_job("""
from wandb.sdk import launch

launch.manage_config_file("{name}")
""")


@pytest.mark.parametrize(
    ("name", "before", "overrides", "after"),
    [
        # test_files_helpers.py: test_override_file_basic (W&B re-dumps JSON with indent=2 and no newline)
        ("config.json", '{"key": "value"}', {"key": "new_value"}, json.dumps({"key": "new_value"}, indent=2) + "\n"),
        # test_files_helpers.py: test_override_file_nested
        (
            "config.json",
            '{"key": {"nested_key": "value"}}',
            {"key": {"nested_key": "new_value"}},
            json.dumps({"key": {"nested_key": "new_value"}}, indent=2) + "\n",
        ),
        # test_files_helpers.py: test_override_file_yaml
        ("config.yaml", "key: value", {"key": "new_value"}, "key: new_value\n"),
    ],
    ids=["json", "json-nested", "yaml"],
)
def test_override_file(run_job, name, before, overrides, after):
    job = run_job(FILE_OVERRIDE_SCRIPT.replace("{name}", name), file_overrides={name: overrides}, files={name: before})

    assert job.returncode == 0, job.stderr
    assert job.read(name) == after


@pytest.mark.parametrize(
    ("name", "files", "file_overrides", "message"),
    [
        # test_files_helpers.py: test_override_file_unknown_extension
        ("config.unknown", {"config.unknown": '{"key": "value"}'}, None, "must end in .yaml, .yml or .json"),
        # test_files_helpers.py: test_config_path_is_valid_invalid (missing file)
        ("config.json", {}, None, "does not exist"),
        # test_files_helpers.py: test_config_path_is_valid_not_file (a folder)
        ("config", {"config/x.txt": ""}, None, "must end in .yaml, .yml or .json"),
    ],
    ids=["unknown-extension", "missing", "folder"],
)
def test_bad_config_file_paths_stop_the_job(run_job, name, files, file_overrides, message):
    job = run_job(FILE_OVERRIDE_SCRIPT.replace("{name}", name), files=files, file_overrides=file_overrides)

    assert job.returncode != 0
    assert message in job.stderr


def test_an_absolute_config_file_path_stops_the_job(run_job):
    # test_files_helpers.py: test_config_path_is_valid_absolute
    script = launchbay_job("""
    import os
    from wandb.sdk import launch

    launch.manage_config_file(os.path.abspath("config.json"))
    """)

    job = run_job(script, files={"config.json": '{"key": "value"}'})

    assert job.returncode != 0
    assert "must be relative to the working directory" in job.stderr


@pytest.mark.parametrize(
    "payload_text",
    [
        '{"config.json": {"key": "new_value"}',  # test_files_helpers.py: test_file_overrides_invalid_json
        '["config.json"]',  # test_files_helpers.py: test_file_overrides_non_dict
    ],
    ids=["invalid-json", "not-an-object"],
)
def test_malformed_file_override_payload_stops_the_job(run_job, payload_text):
    job = run_job(
        FILE_OVERRIDE_SCRIPT.replace("{name}", "config.json"),
        files={"config.json": '{"key": "value"}'},
        raw_env={"LAUNCHBAY_FILE_OVERRIDES": payload_text},
    )

    assert job.returncode != 0
    assert "malformed launchbay payload in env LAUNCHBAY_FILE_OVERRIDES" in job.stderr
    assert job.read("config.json") == '{"key": "value"}'


def test_override_file_from_wandbs_split_env_var(run_job):
    # test_files_helpers.py: test_override_file_split_env_var (launchbay reads W&B's variables when its own are absent)
    whole = json.dumps({"config.json": {"key": "new_value"}})
    job = run_job(
        FILE_OVERRIDE_SCRIPT.replace("{name}", "config.json"),
        files={"config.json": '{"key": "value"}'},
        raw_env={
            "WANDB_LAUNCH_FILE_OVERRIDES_0": whole[: len(whole) // 2],
            "WANDB_LAUNCH_FILE_OVERRIDES_1": whole[len(whole) // 2 :],
        },
    )

    assert job.returncode == 0, job.stderr
    assert job.read("config.json") == json.dumps({"key": "new_value"}, indent=2) + "\n"


@pytest.mark.parametrize("split", [False, True], ids=["whole", "split"])
def test_run_config_from_wandbs_env_is_filtered_like_launchbays(run_job, split):
    overrides = json.dumps({"trainer": {"lr": 0.5, "private": "leaked"}, "seed": 9})
    if split:
        raw_env = {f"WANDB_CONFIG_{i}": overrides[i * 10 : (i + 1) * 10] for i in range((len(overrides) + 9) // 10)}
    else:
        raw_env = {"WANDB_CONFIG": overrides}
    script = launchbay_job("""
    import json
    import wandb
    from wandb.sdk import launch

    with wandb.init(config={"trainer": {"lr": 0.1, "private": "value"}, "seed": 1}) as run:
        launch.manage_wandb_config(include=["trainer"], exclude=["trainer.private"])
        print(json.dumps(run.config.as_dict()))
    """)

    job = run_job(script, raw_env=raw_env)

    assert job.printed == {"trainer": {"lr": 0.5, "private": "value"}, "seed": 1}


def test_launchbays_payload_wins_over_wandbs(run_job):
    script = launchbay_job("""
    import json
    from wandb.sdk import launch

    print(json.dumps(launch.load_wandb_config().as_dict()))
    """)

    job = run_job(script, run_config={"seed": 2}, raw_env={"WANDB_CONFIG": '{"seed": 3}'})

    assert job.printed == {"seed": 2}


def test_a_secret_field_is_masked_in_the_recorded_config(run_job):
    # The schema of test_internal.py's "label" case: a secret API key the job uses but never records.
    script = launchbay_job("""
    import wandb
    from wandb.sdk import launch

    schema = {"type": "object", "properties": {
        "api_key": {"type": "string", "label": "API Key", "placeholder": "sk-...", "required": True, "format": "secret"},
        "model": {"type": "string"},
    }}
    launch.manage_wandb_config(schema=schema)
    with wandb.init(config={"api_key": "", "model": "small"}) as run:
        print("key length", len(run.config.api_key))
    """)

    job = run_job(script, run_config={"api_key": "sk-live-123456", "model": "large"})

    assert job.returncode == 0, job.stderr
    assert "key length 14" in job.stdout
    assert job.config == {"api_key": "***", "model": "large"}
    assert "sk-live" not in (job.outdir / "config.json").read_text() + (job.outdir / "inputs.json").read_text()


def test_declarations_made_before_init_are_recorded_when_the_run_starts(run_job):
    # test_internal.py: test_handle_run_config_input_staged / test_handle_config_file_input_staged
    script = launchbay_job("""
    import wandb
    from wandb.sdk import launch

    launch.manage_config_file("config.yaml", include=["epochs"])
    launch.manage_wandb_config(include=["lr"], exclude=["lr.private"])
    with wandb.init(config={"lr": 0.1, "other": 1}):
        pass
    """)

    job = run_job(script, files={"config.yaml": "epochs: 3\nname: x\n"})

    assert job.inputs["run_config"]["include"] == ["lr"]
    assert job.inputs["run_config"]["exclude"] == ["lr.private"]
    assert job.inputs["run_config"]["types"] == {"lr": "float"}
    assert job.inputs["files"]["config.yaml"]["types"] == {"epochs": "int"}
