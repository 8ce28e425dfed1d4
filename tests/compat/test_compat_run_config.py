"""W&B's ``Run.config`` cases, and the rest of the ``wandb`` surface, against ``launchbay.wandb``.

Config cases come from wandb/wandb ``tests/unit_tests/test_wandb_config.py`` (commit
b6e29505884ea60c79ca12091f1f75bd39d2f955). W&B locks keys with ``update_locked(d, "sweep")``;
the launchbay equivalent of a locked key is a launch override, so those cases launch the job
with the locked values as its run-config overrides.
"""

from __future__ import annotations

import json

import pytest
from launchbay.sdk import _reset_for_tests, payload

import launchbay.wandb as wandb
from launchbay.wandb.sdk import launch


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    for name in (payload.ENV_RUN_CONFIG, payload.ENV_FILE_OVERRIDES, payload.ENV_INPUTS_DIR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(payload.ENV_OUTPUT_DIR, str(tmp_path / "output"))
    monkeypatch.setenv("LAUNCHBAY_WANDB_FORWARD", "0")
    monkeypatch.chdir(tmp_path)
    _reset_for_tests()
    yield
    _reset_for_tests()


def launched_with(monkeypatch, overrides):
    monkeypatch.setenv(payload.ENV_RUN_CONFIG, json.dumps(overrides))


def test_attribute_set():
    # test_attrib_set
    run = wandb.init()
    run.config.this = 2
    assert dict(run.config) == {"this": 2}


@pytest.mark.parametrize("how", ["attribute", "item", "update"])
def test_locked_keys_keep_their_value(monkeypatch, capsys, how):
    # test_locked_set_attr / test_locked_set_key / test_locked_update
    launched_with(monkeypatch, {"this": 2, "that": 4})
    run = wandb.init()
    if how == "attribute":
        run.config.this = 8
    elif how == "item":
        run.config["this"] = 8
    else:
        run.config.update({"this": 8})
    assert run.config.this == 2
    assert run.config["that"] == 4
    assert dict(run.config) == {"this": 2, "that": 4}
    assert "launch overrides kept over values the job set: this" in capsys.readouterr().err


def test_locked_update_does_not_change_its_argument(monkeypatch):
    # test_locked_no_sideeffect
    launched_with(monkeypatch, {"this": 2, "that": 4})
    run = wandb.init()
    update_arg = {"this": 8}
    run.config.update(update_arg)
    assert update_arg == {"this": 8}
    assert dict(run.config) == {"this": 2, "that": 4}


def test_update():
    # test_update
    run = wandb.init()
    run.config.update({"this": 8})
    assert dict(run.config) == {"this": 8}
    run.config.update({"that": 4})
    assert dict(run.config) == {"this": 8, "that": 4}


def test_update_with_allow_val_change_does_not_store_it_as_a_key():
    run = wandb.init(config={"lr": 0.1})
    run.config.update({"lr": 0.2}, allow_val_change=True)
    assert dict(run.config) == {"lr": 0.2}


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        ({"extra": 2, "another": 4}, {"this": 8, "extra": 2, "another": 4}),  # test_setdefaults
        ({"extra": 2, "this": 4}, {"this": 8, "extra": 2}),  # test_setdefaults_existing
    ],
)
def test_setdefaults(defaults, expected):
    run = wandb.init()
    run.config.update({"this": 8})
    run.config.setdefaults(defaults)
    assert dict(run.config) == expected


def test_config_defaults_yaml_is_loaded_from_the_working_directory(tmp_path, monkeypatch):
    # test_load_config_default: W&B writes config-defaults.yaml into the working directory, {"value": ...} entries
    (tmp_path / "config-defaults.yaml").write_text("epochs:\n  value: 32\nsize_batch:\n  value: 32\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("launchbay.sdk.runs.script_dir", lambda: tmp_path / "elsewhere")
    run = wandb.init()
    assert dict(run.config) == {"epochs": 32, "size_batch": 32}


def test_config_defaults_yaml_beside_the_script_is_the_fallback_and_the_working_directorys_wins(tmp_path, monkeypatch):
    script_dir, work_dir = tmp_path / "script", tmp_path / "work"
    script_dir.mkdir(), work_dir.mkdir()
    (script_dir / "config-defaults.yaml").write_text("epochs: 3\nlr: 0.1\n")
    monkeypatch.setattr("launchbay.sdk.runs.script_dir", lambda: script_dir)
    monkeypatch.chdir(work_dir)
    assert dict(wandb.init().config) == {"epochs": 3, "lr": 0.1}
    (work_dir / "config-defaults.yaml").write_text("epochs: 5\n")
    assert dict(wandb.init().config) == {"epochs": 5}  # one file, as in W&B: not merged with the script's


def test_run_config_static_is_a_read_only_snapshot():
    # wandb_run.Run.config_static -> wandb_config.ConfigStatic: attributes and items, no writes
    run = wandb.init(config={"a": 1, "b": {"c": 2}})
    static = run.config_static
    assert static.a == 1 and static["b"] == {"c": 2} and list(static.keys()) == ["a", "b"]
    with pytest.raises(AttributeError):
        static.a = 5
    with pytest.raises(AttributeError):
        static["a"] = 5
    run.config.update({"a": 3})
    assert static.a == 1 and run.config_static.a == 3


def test_an_empty_config_defaults_yaml_gives_no_defaults(tmp_path, monkeypatch):
    # test_load_empty_config_default (W&B also warns; we take the empty file quietly)
    (tmp_path / "config-defaults.yaml").write_text("")
    monkeypatch.setattr("launchbay.sdk.runs.script_dir", lambda: tmp_path)
    assert dict(wandb.init().config) == {}


def test_get_default_and_missing_attribute():
    # test_config_getattr_default
    run = wandb.init()
    assert run.config.get("a", 1) == 1
    with pytest.raises(AttributeError, match="object has no attribute 'a'"):
        _ = run.config.a


def test_nested_launch_override_keeps_sibling_keys(monkeypatch):
    # test_nested_config_overwrite (merge_locked of a nested value)
    launched_with(monkeypatch, {"path": {"to": {"override": "bar"}}})
    run = wandb.init()
    run.config.update({"path": {"to": {"override": "baz", "keep": "baf"}}})
    assert dict(run.config) == {"path": {"to": {"override": "bar", "keep": "baf"}}}


def test_sets_and_tuples_become_lists():
    run = wandb.init(config={"ids": {3, 1, 2}, "shape": (2, 3), "nested": {"pair": (1, "a")}})
    run.config.update({"later": {9, 8}})
    assert run.config.as_dict() == {"ids": [1, 2, 3], "shape": [2, 3], "nested": {"pair": [1, "a"]}, "later": [8, 9]}


def test_config_surface():
    run = wandb.init(config={"a": 1, "b": {"c": 2}})
    assert "a" in run.config and "z" not in run.config
    assert list(run.config.keys()) == ["a", "b"]
    assert list(run.config.values()) == [1, {"c": 2}]
    assert dict(run.config.items()) == {"a": 1, "b": {"c": 2}}
    assert run.config.config_static.b == {"c": 2}
    run.config.persist()
    assert json.loads((payload.output_dir() / "config.json").read_text()) == {"a": 1, "b": {"c": 2}}


def test_init_takes_every_wandb_keyword_and_keeps_the_run_fields():
    run = wandb.init(
        project="demo",
        entity="team",
        name="first",
        group="g",
        job_type="train",
        tags=["a", "b"],
        notes="n",
        dir=".",
        mode="offline",
        id="abc123",
        resume="allow",
        reinit=True,
        settings=wandb.Settings(console="off"),
        config={"a": 1, "b": 2, "c": 3},
        config_exclude_keys=["b"],
        allow_val_change=True,
        save_code=False,
        force=False,
        sync_tensorboard=False,
    )
    assert (run.project, run.entity, run.name, run.group, run.job_type) == ("demo", "team", "first", "g", "train")
    assert (run.id, run.tags, run.mode) == ("abc123", ("a", "b"), "offline")
    assert dict(run.config) == {"a": 1, "c": 3}
    assert wandb.run is run and wandb.config is run.config and wandb.summary is run.summary


def test_init_config_include_keys_and_a_config_file_name(tmp_path):
    (tmp_path / "params.yaml").write_text("lr:\n  desc: learning rate\n  value: 0.1\nepochs: 3\nseed: 1\n")
    run = wandb.init(config="params.yaml", config_include_keys=["lr", "epochs"])
    assert dict(run.config) == {"lr": 0.1, "epochs": 3}


def test_module_level_config_before_init_says_to_call_init():
    with pytest.raises(wandb.Error, match=r"call launchbay.wandb.init\(\) before using wandb.config"):
        _ = wandb.config["lr"]
    assert wandb.run is None


def test_require_login_and_term_functions(capsys):
    wandb.require("core")
    assert wandb.login(key="unused") is True
    wandb.termlog("hello")
    wandb.termwarn("careful")
    wandb.termerror("broken")
    assert capsys.readouterr().err == "wandb: hello\nwandb: WARNING careful\nwandb: ERROR broken\n"


def test_load_wandb_config_returns_a_config_object(monkeypatch):
    launched_with(monkeypatch, {"trainer": {"lr": 0.5}, "seed": 3})
    launch.manage_wandb_config(include=["trainer"])
    loaded = launch.load_wandb_config()
    assert loaded.as_dict() == {"trainer": {"lr": 0.5}}
    assert loaded.trainer == {"lr": 0.5}


def test_reinit_return_previous_returns_the_active_run():
    first = wandb.init(config={"a": 1})
    assert wandb.init(reinit="return_previous") is first
    second = wandb.init(config={"b": 2})
    assert second is not first and first.finished


def test_init_refuses_a_keyword_wandb_init_does_not_take():
    with pytest.raises(TypeError, match="unexpected keyword argument 'projcet'"):
        wandb.init(projcet="typo")
