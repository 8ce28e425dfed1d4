"""Parsing --set style overrides, --gpus shorthand, and checking overrides against recorded inputs."""

from __future__ import annotations

import pytest
from launchbay.client.overrides import build_tree, parse_assignment, parse_file_options, parse_value
from launchbay.queue_config.inputs_check import check_overrides, section_problems
from launchbay.queue_config.models import parse_gpus

from launchbay.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.1", 0.1),
        ("32", 32),
        ("true", True),
        ("off", False),
        ("[1, 2]", [1, 2]),
        ("'32'", "32"),
        ('"true"', "true"),
        ("adam", "adam"),
        ("", None),
        ("null", None),
        ("{a: 1}", {"a": 1}),
        ("2024-01-02", "2024-01-02"),
    ],
)
def test_set_values_are_read_as_yaml_scalars(text, value):
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_an_escaped_dot_stays_inside_a_key():
    assert parse_assignment(r"trainer\.private.lr=1") == (("trainer.private", "lr"), 1)


def test_the_value_may_itself_contain_an_equals_sign():
    assert parse_assignment("data.query=a=b") == (("data", "query"), "a=b")


def test_a_later_set_of_the_same_key_wins():
    assert build_tree([(("a", "b"), 1), (("a", "b"), 2), (("a", "c"), 3)]) == {"a": {"b": 2, "c": 3}}


def test_setting_a_key_inside_a_scalar_is_refused():
    with pytest.raises(ValidationError, match=r"--set: a\.b: cannot set a key inside a, which is int"):
        build_tree([(("a",), 1), (("a", "b"), 2)])


def test_file_set_needs_a_path_and_an_assignment():
    with pytest.raises(ValidationError, match=r"--file-set 'model\.depth=3' must look like PATH:KEY=VALUE"):
        parse_file_options(["model.depth=3"], [])


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("2", {"gpus": 2}),
        ("A100", {"gpus": 1, "gpu_model": "A100"}),
        ("A100:2", {"gpus": 2, "gpu_model": "A100"}),
        ("H100|A100:8", {"gpus": 8, "gpu_model": "H100|A100"}),
        (4, {"gpus": 4}),
    ],
)
def test_gpus_shorthand(text, parsed):
    assert parse_gpus(text) == parsed


@pytest.mark.parametrize("text", ["A100:", ":2", "2:A100", "-1", "", True])
def test_malformed_gpus_are_refused(text):
    with pytest.raises(ValueError, match="gpus"):
        parse_gpus(text)


SECTION = {
    "include": [],
    "exclude": [],
    "types": {"lr": "float", "epochs": "int", "flag": "bool", "extra": "dict", "note": "null", "name": "str"},
    "schema": {"type": "object", "properties": {"epochs": {"type": "integer"}}, "required": ["name"]},
}


@pytest.mark.parametrize(
    ("tree", "problems"),
    [
        ({"lr": 1}, []),
        ({"lr": True}, ["lr: expected float, got bool true"]),
        ({"epochs": 1.0}, ["epochs: expected int, got float 1.0"]),
        ({"flag": 0}, ["flag: expected bool, got int 0"]),
        ({"extra": {"anything": [1]}}, []),
        ({"note": "now a string"}, []),
        ({"lr": {"nested": 1}}, ["key 'lr.nested' is unknown: lr is a float, not a mapping"]),
        ({"epochs": 3}, []),  # "required": ["name"] is not enforced on a partial override
    ],
)
def test_section_checks_types_like_the_recorded_ones(tree, problems):
    assert section_problems(SECTION, tree) == problems


def test_nothing_recorded_means_every_override_is_accepted():
    check_overrides("job", None, {"anything": 1}, {"any.yaml": {"x": 1}})


def test_a_job_that_declared_no_run_config_refuses_run_config_overrides():
    with pytest.raises(ValidationError) as caught:
        check_overrides("job", {"run_config": None, "files": {}}, {"lr": 1}, {})
    assert str(caught.value) == (
        "invalid overrides for job 'job': its last run declared no run-config inputs, "
        "so run-config overrides would be ignored"
    )
