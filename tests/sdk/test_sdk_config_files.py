"""manage_config_file: path rules, the in-place patch, YAML comments, and the fallback dump."""

from __future__ import annotations

import json

import pytest
import yaml
from launchbay.sdk import ConfigFileError, InputValidationError, payload
from sdk_helpers import JobRunner, fresh_sdk

from launchbay import sdk


@pytest.fixture
def run_job(tmp_path):
    return JobRunner(tmp_path)


@pytest.fixture(autouse=True)
def clean_sdk(monkeypatch):
    yield from fresh_sdk(monkeypatch)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def launch_with(monkeypatch, file_overrides):
    monkeypatch.setenv(payload.ENV_FILE_OVERRIDES, json.dumps(file_overrides))


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/config.yaml", "config file path '/etc/config.yaml' must be relative to the working directory"),
        ("../config.yaml", "config file path '../config.yaml' must not contain a '..' component"),
        ("conf/../config.yaml", "config file path 'conf/../config.yaml' must not contain a '..' component"),
        ("config.toml", "config file path 'config.toml' must end in .yaml, .yml or .json"),
        ("", "config file path '' must be relative to the working directory"),
    ],
)
def test_invalid_config_file_paths_are_a_clear_error(workdir, path, message):
    with pytest.raises(ConfigFileError) as caught:
        sdk.manage_config_file(path)
    assert str(caught.value) == message


def test_a_dotted_file_name_is_not_mistaken_for_a_parent_folder(workdir, monkeypatch):
    (workdir / "a..b.yaml").write_text("x: 1\n")
    launch_with(monkeypatch, {"a..b.yaml": {"x": 2}})

    sdk.manage_config_file("a..b.yaml")

    assert (workdir / "a..b.yaml").read_text() == "x: 2\n"


def test_a_missing_file_is_an_error_naming_the_resolved_path(workdir):
    with pytest.raises(ConfigFileError) as caught:
        sdk.manage_config_file("conf/missing.yml")
    assert str(caught.value) == f"config file {workdir / 'conf' / 'missing.yml'} does not exist"


def test_json_files_are_deep_merged_in_key_order_with_indent_two_and_a_final_newline(workdir, monkeypatch):
    (workdir / "config.json").write_text('{"model": {"name": "resnet", "depth": 50}, "layers": [1, 2], "seed": 1}')
    launch_with(monkeypatch, {"./config.json": {"model": {"depth": 101, "new": True}, "layers": [3]}})

    sdk.manage_config_file("config.json")

    expected = {"model": {"name": "resnet", "depth": 101, "new": True}, "layers": [3], "seed": 1}
    assert (workdir / "config.json").read_text() == json.dumps(expected, indent=2) + "\n"


COMMENTED_YAML = """\
# Training settings
learning_rate: 0.01  # tuned on cifar10
batch_size: 32
model: "resnet"   # quoted on purpose
optimizer:
  name: adam  # the default
  betas: [0.9, 0.999]
  # weight_decay: 0.01
layers:
  - 64
  - 128
scheduler:
# end of file
"""


def test_yaml_patch_keeps_comments_quotes_and_layout(workdir, monkeypatch):
    (workdir / "config.yaml").write_text(COMMENTED_YAML)
    overrides = {
        "learning_rate": 0.1,
        "model": "vit",
        "optimizer": {"betas": [0.8, 0.9], "momentum": 0.5},
        "layers": [256],
        "scheduler": "cosine",
        "warmup": {"steps": 100},
    }
    launch_with(monkeypatch, {"config.yaml": overrides})

    sdk.manage_config_file("config.yaml")

    assert (workdir / "config.yaml").read_text() == (
        "# Training settings\n"
        "learning_rate: 0.1  # tuned on cifar10\n"
        "batch_size: 32\n"
        'model: "vit"   # quoted on purpose\n'
        "optimizer:\n"
        "  name: adam  # the default\n"
        "  betas: [0.8, 0.9]\n"
        "  momentum: 0.5\n"
        "  # weight_decay: 0.01\n"
        "layers: [256]\n"
        "scheduler: cosine\n"
        "warmup:\n"
        "  steps: 100\n"
        "# end of file\n"
    )


def test_yaml_patch_writes_values_that_need_quoting_so_they_load_back_as_given(workdir, monkeypatch):
    (workdir / "config.yaml").write_text("name: plain\nversion: 1\nflag: false\nnote: x # comment\n")
    values = {"name": "yes", "version": "1.0", "flag": "off", "note": "a: b # c\nsecond line"}
    launch_with(monkeypatch, {"config.yaml": values})

    sdk.manage_config_file("config.yaml")

    text = (workdir / "config.yaml").read_text()
    assert yaml.safe_load(text) == values
    assert text.endswith('note: "a: b # c\\nsecond line" # comment\n')


@pytest.mark.parametrize(
    ("original", "overrides"),
    [
        ("base: &base {lr: 0.1}\nrun: *base\nseed: 1\n", {"seed": 2}),
        ("notes: |\n  multi\n  line\nseed: 1\n", {"notes": "one line", "seed": 2}),
        ("seed: 1\nnotes: >\n  folded\n", {"extra": 2}),
        ("{seed: 1, notes: flow}\n", {"seed": 2}),
        ("seed: !!int 1\n", {"seed": 2}),
    ],
    ids=["anchors", "block-scalar-value", "block-scalar-before-new-key", "flow-root", "explicit-tag"],
)
def test_yaml_shapes_too_complex_to_patch_fall_back_to_a_full_dump_with_the_same_content(
    workdir, monkeypatch, original, overrides
):
    (workdir / "config.yaml").write_text(original)
    launch_with(monkeypatch, {"config.yaml": overrides})

    sdk.manage_config_file("config.yaml")

    expected = {**yaml.safe_load(original), **overrides}
    text = (workdir / "config.yaml").read_text()
    assert text == yaml.safe_dump(expected, sort_keys=False, allow_unicode=True, default_flow_style=False)


def test_a_block_scalar_the_overrides_do_not_touch_keeps_its_style(workdir, monkeypatch):
    (workdir / "config.yaml").write_text("notes: |\n  multi\n  line\nseed: 1  # seed\n")
    launch_with(monkeypatch, {"config.yaml": {"seed": 2}})

    sdk.manage_config_file("config.yaml")

    assert (workdir / "config.yaml").read_text() == "notes: |\n  multi\n  line\nseed: 2  # seed\n"


def test_a_file_without_overrides_is_left_byte_for_byte_alone(workdir, monkeypatch):
    (workdir / "config.yaml").write_text("a:   1   # odd spacing\n")
    launch_with(monkeypatch, {"other.yaml": {"a": 2}})

    sdk.manage_config_file("config.yaml")

    assert (workdir / "config.yaml").read_text() == "a:   1   # odd spacing\n"


def test_a_dict_override_onto_a_scalar_is_an_input_error_and_the_file_is_untouched(workdir, monkeypatch):
    (workdir / "config.yaml").write_text("model: resnet\nlayers: [1]\n")
    launch_with(monkeypatch, {"config.yaml": {"model": {"name": "vit"}, "layers": {"n": 2}}})

    with pytest.raises(InputValidationError) as caught:
        sdk.manage_config_file("config.yaml")

    assert str(caught.value) == (
        "invalid launch inputs for config file config.yaml: "
        "model.name: cannot set a key inside model, which is str; "
        "layers.n: cannot set a key inside layers, which is list"
    )
    assert (workdir / "config.yaml").read_text() == "model: resnet\nlayers: [1]\n"


def test_file_overrides_are_checked_against_the_file_schema_before_writing(workdir, monkeypatch):
    (workdir / "config.yaml").write_text("batch_size: 32\n")
    launch_with(monkeypatch, {"config.yaml": {"batch_size": "big"}})
    schema = {"type": "object", "properties": {"batch_size": {"type": "integer"}}}

    with pytest.raises(InputValidationError, match='batch_size: expected an integer, got "big"'):
        sdk.manage_config_file("config.yaml", schema=schema)

    assert (workdir / "config.yaml").read_text() == "batch_size: 32\n"


def test_a_file_that_does_not_parse_is_an_error_naming_it(workdir):
    (workdir / "config.json").write_text("{not json")

    with pytest.raises(ConfigFileError, match=f"cannot read config file {workdir / 'config.json'}: "):
        sdk.manage_config_file("config.json")


def test_overrides_for_a_file_the_job_never_manages_are_reported_at_exit(run_job):
    script = """
    from launchbay import sdk
    sdk.manage_config_file("config.yaml")
    """
    job = run_job(
        script,
        files={"config.yaml": "a: 1\n"},
        file_overrides={"config.yaml": {"a": 2}, "other.yaml": {"b": 1}},
    )

    assert job.returncode == 0, job.stderr
    assert job.read("config.yaml") == "a: 2\n"
    assert job.warnings() == [
        "launchbay: ignored overrides for config files the job never passed to manage_config_file: other.yaml"
    ]
