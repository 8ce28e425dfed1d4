"""init(), Run.config and the process-wide state, exercised in this process."""

from __future__ import annotations

import argparse
import json

import pytest
from launchbay.sdk import ConfigPathError, InputValidationError, PayloadError, SdkError, payload
from sdk_helpers import fresh_sdk

from launchbay import sdk


@pytest.fixture(autouse=True)
def clean_sdk(monkeypatch):
    yield from fresh_sdk(monkeypatch)


DOCS_CONFIG = {
    "trainer": {"learning_rate": 0.01, "batch_size": 32, "private": {"key": "value"}},
    "seed": 42,
}


@pytest.fixture
def outdir(tmp_path, monkeypatch):
    folder = tmp_path / "output"
    monkeypatch.setenv(payload.ENV_OUTPUT_DIR, str(folder))
    return folder


def launch_with(monkeypatch, run_config):
    monkeypatch.setenv(payload.ENV_RUN_CONFIG, json.dumps(run_config))


def test_config_reads_like_a_dict_and_top_level_keys_like_attributes():
    run = sdk.init(config=DOCS_CONFIG)

    assert run.config["trainer"]["private"] == {"key": "value"}
    assert run.config.seed == 42
    assert run.config.get("missing", "fallback") == "fallback"
    assert "trainer" in run.config
    assert len(run.config) == 2
    assert list(run.config.keys()) == ["trainer", "seed"]
    assert dict(run.config.items()) == DOCS_CONFIG
    assert run.config == DOCS_CONFIG
    with pytest.raises(AttributeError, match="the run config has no key 'missing'"):
        _ = run.config.missing


def test_update_reads_namespaces_flags_objects_and_keywords():
    class Flags:
        def flag_values_dict(self):
            return {"model": "vit"}

    class Settings:
        def __init__(self):
            self.depth = 3
            self._hidden = "not config"

    run = sdk.init()
    run.config.update(argparse.Namespace(epochs=5))
    run.config.update(Flags())
    run.config.update(Settings(), extra=True)

    assert run.config.as_dict() == {"epochs": 5, "model": "vit", "depth": 3, "extra": True}
    with pytest.raises(TypeError, match="cannot read config values from int"):
        run.config.update(3)


def test_as_dict_is_a_copy_that_leaves_the_config_alone():
    run = sdk.init(config=DOCS_CONFIG)
    copy = run.config.as_dict()
    copy["trainer"]["learning_rate"] = 99

    assert run.config["trainer"]["learning_rate"] == 0.01


def test_launch_overrides_never_change_the_dict_the_job_passed_in(monkeypatch):
    launch_with(monkeypatch, {"trainer": {"learning_rate": 0.5}})
    mine = json.loads(json.dumps(DOCS_CONFIG))

    run = sdk.init(config=mine)

    assert run.config["trainer"]["learning_rate"] == 0.5
    assert mine == DOCS_CONFIG


def test_manage_config_after_init_reverts_newly_filtered_keys_to_the_job_values(monkeypatch, capsys):
    launch_with(monkeypatch, {"seed": 7, "trainer": {"learning_rate": 0.5, "new": 1}, "added": {"deep": 1}})
    run = sdk.init(config=DOCS_CONFIG)
    assert run.config["seed"] == 7
    assert run.config["added"] == {"deep": 1}

    sdk.manage_config(include="trainer.learning_rate")

    assert run.config.as_dict() == {**DOCS_CONFIG, "trainer": {**DOCS_CONFIG["trainer"], "learning_rate": 0.5}}
    assert capsys.readouterr().err == (
        "launchbay: ignored overrides outside the job's inputs: seed, trainer.new, added.deep\n"
    )


def test_writes_to_overridden_keys_keep_the_override_and_say_so(monkeypatch, capsys):
    launch_with(monkeypatch, {"trainer": {"learning_rate": 0.5}, "seed": 7})
    run = sdk.init(config=DOCS_CONFIG)

    run.config.update({"trainer": {"learning_rate": 0.02, "batch_size": 8}, "seed": 7, "other": 1})

    assert run.config["trainer"] == {"learning_rate": 0.5, "batch_size": 8}
    assert run.config["seed"] == 7
    assert (
        capsys.readouterr().err == "launchbay: launch overrides kept over values the job set: trainer.learning_rate\n"
    )


def test_a_dict_override_onto_a_scalar_config_value_stops_init(monkeypatch):
    launch_with(monkeypatch, {"seed": {"value": 1}})

    with pytest.raises(InputValidationError) as caught:
        sdk.init(config=DOCS_CONFIG)
    assert str(caught.value) == (
        "invalid launch inputs for the run config: seed.value: cannot set a key inside seed, which is int"
    )


def test_load_config_is_empty_without_a_payload_and_returns_fresh_copies(monkeypatch):
    assert sdk.load_config() == {}
    sdk._reset_for_tests()
    launch_with(monkeypatch, {"layers": [1, 2]})

    first = sdk.load_wandb_config()
    first["layers"].append(3)

    assert sdk.load_config() == {"layers": [1, 2]}


def test_the_payload_is_read_once_per_process(monkeypatch):
    launch_with(monkeypatch, {"seed": 1})
    assert sdk.load_config() == {"seed": 1}

    launch_with(monkeypatch, {"seed": 2})

    assert sdk.load_config() == {"seed": 1}


def test_a_payload_file_wins_over_the_environment(tmp_path, monkeypatch):
    (tmp_path / payload.RUN_CONFIG_FILE).write_text('{"seed": "from file"}')
    monkeypatch.setenv(payload.ENV_INPUTS_DIR, str(tmp_path))
    launch_with(monkeypatch, {"seed": "from env"})

    assert sdk.load_config() == {"seed": "from file"}


def test_a_malformed_payload_is_an_error_naming_its_source(monkeypatch):
    monkeypatch.setenv(payload.ENV_RUN_CONFIG, "{not json")

    with pytest.raises(PayloadError, match=r"^malformed launchbay payload in env LAUNCHBAY_RUN_CONFIG: "):
        sdk.init()
    assert issubclass(PayloadError, SdkError)


def test_schema_and_input_schema_together_are_refused():
    schema = {"type": "object"}
    with pytest.raises(SdkError, match="pass the schema as schema= or as input_schema=, not both"):
        sdk.manage_config(schema=schema, input_schema=schema)


def test_a_bad_include_path_is_raised_by_the_manage_call_and_records_nothing(outdir):
    with pytest.raises(ConfigPathError, match=r"^include: invalid key path 'a\\b': a backslash may only escape a dot"):
        sdk.manage_config(include=[r"a\b"])
    assert not outdir.exists()


def test_repeated_manage_config_calls_add_prefixes_and_the_last_schema_wins(outdir):
    first = {"type": "object", "properties": {"seed": {"type": "integer"}}}
    second = {"type": "object", "title": "second"}

    sdk.manage_config(include="trainer", schema=first)
    sdk.manage_config(include=["seed", "trainer"], exclude="trainer.private", schema=second)
    sdk.manage_config(exclude=["trainer.private"])

    recorded = json.loads((outdir / "inputs.json").read_text())["run_config"]
    assert recorded["include"] == ["trainer", "seed"]
    assert recorded["exclude"] == ["trainer.private"]
    assert recorded["schema"] == second


def test_records_are_written_at_each_call_without_leftover_temporary_files(outdir, monkeypatch):
    launch_with(monkeypatch, {"seed": 7})
    sdk.manage_config(include="seed")
    assert json.loads((outdir / "inputs.json").read_text())["run_config"]["types"] == {"seed": "int"}
    assert not (outdir / "config.json").exists()

    run = sdk.init(config=DOCS_CONFIG)
    run.config["seed"] = 8
    run.finish()

    assert json.loads((outdir / "config.json").read_text())["seed"] == 7
    assert sorted(path.name for path in outdir.iterdir()) == ["config.json", "inputs.json"]


def test_the_module_level_run_follows_init_and_finish():
    assert sdk.run is None
    with sdk.init() as run:
        assert sdk.run is run
    assert sdk.run is None
    assert run.finished


def test_a_second_init_finishes_the_first_run():
    first = sdk.init(config={"a": 1})
    second = sdk.init(config={"b": 2})

    assert first.finished
    assert sdk.run is second


def test_ignored_overrides_are_reported_once_a_run_takes_them_not_by_an_early_declaration(
    tmp_path, monkeypatch, capsys
):
    launch_with(monkeypatch, {"seed": 7, "other": 1})
    (tmp_path / "config.yaml").write_text("a: 1\n")
    monkeypatch.chdir(tmp_path)

    sdk.manage_config_file("config.yaml")
    sdk.manage_config(include="seed")
    assert capsys.readouterr().err == ""

    run = sdk.init(config={"seed": 1})

    assert run.config["seed"] == 7
    assert capsys.readouterr().err == "launchbay: ignored overrides outside the job's inputs: other\n"
