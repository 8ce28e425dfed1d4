"""W&B's own input-schema cases, run against launchbay's schema check.

Source of every case unless noted: wandb/wandb ``tests/unit_tests/test_launch/test_inputs/test_internal.py``
(``test_validate_schema``, ``test_replace_refs_and_allofs``, ``test_validate_schema_pydantic_*``),
at commit b6e29505884ea60c79ca12091f1f75bd39d2f955. Each case keeps W&B's schema and W&B's verdict
(no warning, or the warning text); ours is one of:

- ``ACCEPT``: no warning, no error (W&B accepts it silently too, or the case is in ACCEPTED_DIFFERENCES);
- ``("warn", text)``: kept, with a warning line containing ``text`` (W&B warns too);
- ``("refuse", text)``: :class:`SchemaError` containing ``text``. W&B warns and publishes a schema
  it never enforces; we enforce schemas, so an attribute we cannot enforce is refused. These are
  listed in docs/migrating-from-wandb.md as deliberate differences.
"""

from __future__ import annotations

import copy
import re
from enum import Enum
from pathlib import Path

import pytest
from launchbay.sdk import SchemaError, _reset_for_tests
from launchbay.sdk.schema import prepare_schema
from launchbay.sdk.validation import find_violations
from wandb_schema_cases import CASES, WANDB_REFS_SCHEMA, obj


@pytest.fixture(autouse=True)
def _fresh():
    _reset_for_tests()


#: Cases W&B warns about that we accept silently (listed in docs/migrating-from-wandb.md).
ACCEPTED_DIFFERENCES = {"default"}


@pytest.mark.parametrize(("case_id", "schema", "wandb_warnings", "verdict"), CASES, ids=[c[0] for c in CASES])
def test_wandb_meta_schema_case(capsys, case_id, schema, wandb_warnings, verdict):
    kind, text = verdict
    if kind == "refuse":
        assert wandb_warnings, "we refuse only what W&B warns about"
        with pytest.raises(SchemaError, match=re.escape(text)):
            prepare_schema(copy.deepcopy(schema))
        return
    prepare_schema(copy.deepcopy(schema))
    warnings = capsys.readouterr().err
    if kind == "warn":
        assert wandb_warnings
        assert text in warnings
    else:
        assert warnings == ""
        assert not wandb_warnings or case_id in ACCEPTED_DIFFERENCES


def test_array_fields_are_enforced_at_launch():
    # The array cases above, as launch values: launchbay checks what W&B's drawer only offers.
    schema = prepare_schema(_case("array-string-enum-bounds-unique"))
    assert find_violations(schema, {"tags": ["a", "c"]}) == []
    assert find_violations(schema, {"tags": []}) == ["tags: [] has fewer than 1 items"]
    assert find_violations(schema, {"tags": ["a", "a"]}) == ['tags: ["a", "a"] has repeated items']
    assert find_violations(schema, {"tags": ["a", "b", "c", "a"]}) == [
        'tags: ["a", "b", "c", "a"] has more than 3 items'
    ]
    assert find_violations(schema, {"tags": ["d"]}) == ['tags: item 0: "d" is not one of ["a", "b", "c"]']
    assert find_violations(schema, {"tags": "a"}) == ['tags: expected a list, got "a"']


def test_a_secret_value_never_appears_in_a_violation():
    schema = prepare_schema(obj(api_key={"type": "string", "format": "secret", "enum": ["sk-1"]}))

    (violation,) = find_violations(schema, {"api_key": "sk-live-very-private"})

    assert "sk-live-very-private" not in violation
    assert violation.startswith("api_key: the value given for this secret field is invalid")


def test_refs_and_all_ofs_are_replaced_as_wandb_does():
    prepared = prepare_schema(copy.deepcopy(WANDB_REFS_SCHEMA))

    trainer = copy.deepcopy(WANDB_REFS_SCHEMA["$defs"]["Trainer"])
    trainer["properties"]["dataset"] = {
        "enum": ["cifar10", "cifar100"],
        "title": "DatasetEnum",
        "type": "string",
        "description": "Name of the dataset to use",
    }
    assert prepared == {
        "properties": {"trainer": trainer},
        "required": ["trainer"],
        "title": "ExampleSchema",
        "type": "object",
    }


class DatasetEnum(str, Enum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"


@pytest.mark.parametrize("container", [list, set], ids=["lists", "sets"])
def test_pydantic_lists_and_sets_of_enums_become_arrays_of_string_items(capsys, container):
    # test_validate_schema_pydantic_lists / test_validate_schema_pydantic_sets
    pydantic = pytest.importorskip("pydantic")

    model = pydantic.create_model(
        "Generic",
        enums=(container[DatasetEnum], pydantic.Field(min_length=1)),
        enums_no_bounds=(container[DatasetEnum], pydantic.Field()),
    )
    props = prepare_schema(model)["properties"]

    assert props["enums"]["type"] == "array"
    assert props["enums"]["items"]["type"] == "string"
    assert props["enums"]["items"]["enum"] == ["cifar10", "cifar100"]
    assert props["enums_no_bounds"]["type"] == "array"
    assert props["enums_no_bounds"]["items"]["type"] == "string"
    assert capsys.readouterr().err == ""


def _case(name):
    return copy.deepcopy(next(case[1] for case in CASES if case[0] == name))


def test_every_case_we_do_not_pass_as_wandb_does_is_listed_as_a_deliberate_difference():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "migrating-from-wandb.md").read_text()
    differences = doc.split("## 3. What differs, on purpose", 1)[1].split("\n## ", 1)[0]
    for case_id, _schema, _wandb_warnings, (kind, text) in CASES:
        if kind == "refuse":
            attribute = re.search(r"attribute '(\w+)'", text).group(1)
            assert f"`{attribute}`" in differences, case_id
    for case_id in ACCEPTED_DIFFERENCES:
        assert f"`{case_id}`" in differences, case_id
