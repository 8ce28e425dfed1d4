"""Input schemas: normalization, the supported subset, and stdlib validation of override values."""

from __future__ import annotations

import pytest
from launchbay.sdk import SchemaError
from launchbay.sdk.schema import prepare_schema
from launchbay.sdk.validation import find_violations


def obj(**properties):
    return {"type": "object", "properties": properties}


def test_refs_are_inlined_with_sibling_keys_winning_and_defs_dropped():
    schema = {
        "type": "object",
        "$defs": {
            "Inner": {"type": "object", "properties": {"kind": {"$ref": "#/$defs/Kind"}}},
            "Kind": {"type": "string", "enum": ["a", "b"], "title": "Kind", "description": "old"},
        },
        "properties": {"inner": {"$ref": "#/$defs/Inner", "description": "the inner part"}},
    }
    assert prepare_schema(schema) == {
        "type": "object",
        "properties": {
            "inner": {
                "type": "object",
                "description": "the inner part",
                "properties": {"kind": {"type": "string", "enum": ["a", "b"], "title": "Kind", "description": "old"}},
            }
        },
    }


def test_a_single_item_all_of_is_lifted_into_its_parent():
    schema = {
        "type": "object",
        "$defs": {"Kind": {"type": "string", "enum": ["a"], "title": "Kind"}},
        "properties": {"kind": {"allOf": [{"$ref": "#/$defs/Kind"}], "title": "Which kind"}},
    }
    assert prepare_schema(schema)["properties"]["kind"] == {"type": "string", "enum": ["a"], "title": "Which kind"}


def test_pydantic_is_only_touched_through_the_model_json_schema_method():
    class FakeModel:
        @classmethod
        def model_json_schema(cls):
            return obj(seed={"type": "integer"})

    assert prepare_schema(FakeModel) == obj(seed={"type": "integer"})
    assert prepare_schema(FakeModel()) == obj(seed={"type": "integer"})


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (obj(dataset={"type": "string", "pattern": "^c"}), "schema at dataset: unsupported attribute 'pattern'"),
        (obj(lr={"anyOf": [{"type": "number"}, {"type": "null"}]}), "schema at lr: unsupported attribute 'anyOf'"),
        (
            obj(name={"type": "string", "minimum": 1}),
            "schema at name: attribute 'minimum' is not allowed for type 'string'",
        ),
        (obj(trainer=obj(lr={"title": "no type"})), "schema at trainer.lr: missing required attribute 'type'"),
        (obj(tags={"type": "null"}), "schema at tags: unsupported type 'null'"),
        (
            obj(tags={"type": "array", "items": {"type": "object"}}),
            "schema at tags.[]: array items must be a schema of type integer, number, string, boolean",
        ),
        (
            obj(lr={"type": "number", "exclusiveMinimum": True}),
            "schema at lr: attribute 'exclusiveMinimum' must be a number, got True",
        ),
        (obj(kind={"type": "string", "enum": []}), "schema at kind: attribute 'enum' must be a non-empty list"),
        ({"type": "integer"}, "schema: the top level must have type 'object', got 'integer'"),
        (
            obj(x={"type": "object", "allOf": [{"type": "object"}, {"type": "object"}]}),
            "schema at x: unsupported attribute 'allOf'",
        ),
        (obj(x={"type": "object", "enum": [{}]}), "schema at x: attribute 'enum' is not allowed for type 'object'"),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}}},
            "schema at a: unsupported or unknown $ref",
        ),
        (
            {
                "type": "object",
                "$defs": {"N": obj(next={"$ref": "#/$defs/N"})},
                "properties": {"n": {"$ref": "#/$defs/N"}},
            },
            "schema at n.next: recursive $ref",
        ),
        ([1, 2], "a schema must be a JSON-Schema dict or a pydantic model class or instance, got list"),
    ],
)
def test_unsupported_schemas_are_a_schema_error_naming_the_attribute_and_path(schema, message):
    with pytest.raises(SchemaError) as caught:
        prepare_schema(schema)
    assert str(caught.value).startswith(message)


def test_object_level_required_and_defaults_are_tolerated():
    schema = obj(seed={"type": "integer", "default": 1}, flag={"type": "boolean"})
    schema["required"] = ["seed"]
    assert prepare_schema(schema) == schema


DOCS_SCHEMA = obj(
    seed={"type": "integer"},
    trainer=obj(
        learning_rate={"type": "number", "exclusiveMinimum": 0},
        batch_size={"type": "integer", "enum": [16, 64, 256]},
        dataset={"type": "string", "enum": ["cifar10", "cifar100"]},
        epochs={"type": "integer", "minimum": 1, "maximum": 10},
        momentum={"type": "number", "exclusiveMaximum": 1},
        shuffle={"type": "boolean"},
    ),
)


@pytest.mark.parametrize(
    ("overrides", "violations"),
    [
        ({"seed": 7, "trainer": {"learning_rate": 1, "dataset": "cifar10"}}, []),
        ({"trainer": {"unknown_key": "anything"}, "other": 1}, []),
        ({"seed": True}, ["seed: expected an integer, got true"]),
        ({"seed": 1.0}, ["seed: expected an integer, got 1.0"]),
        ({"trainer": {"learning_rate": False}}, ["trainer.learning_rate: expected a number, got false"]),
        ({"trainer": {"learning_rate": 0}}, ["trainer.learning_rate: 0 must be greater than 0"]),
        ({"trainer": {"batch_size": 17}}, ["trainer.batch_size: 17 is not one of [16, 64, 256]"]),
        ({"trainer": {"dataset": 10}}, ["trainer.dataset: expected a string, got 10"]),
        ({"trainer": {"epochs": 0}}, ["trainer.epochs: 0 is less than the minimum 1"]),
        ({"trainer": {"epochs": 11}}, ["trainer.epochs: 11 is greater than the maximum 10"]),
        ({"trainer": {"momentum": 1.0}}, ["trainer.momentum: 1.0 must be less than 1"]),
        ({"trainer": {"shuffle": 1}}, ["trainer.shuffle: expected a boolean, got 1"]),
        ({"trainer": 5}, ["trainer: expected an object, got 5"]),
        (
            {"seed": "x", "trainer": {"batch_size": 17, "learning_rate": -1}},
            [
                'seed: expected an integer, got "x"',
                "trainer.batch_size: 17 is not one of [16, 64, 256]",
                "trainer.learning_rate: -1 must be greater than 0",
            ],
        ),
    ],
)
def test_only_the_given_override_values_are_checked_against_the_schema(overrides, violations):
    assert find_violations(DOCS_SCHEMA, overrides) == violations


def test_enum_of_ints_does_not_accept_true_although_true_equals_one():
    schema = obj(level={"type": "number", "enum": [1, 2]})
    assert find_violations(schema, {"level": 1.0}) == []
    assert find_violations(schema, {"level": True}) == ["level: expected a number, got true"]
