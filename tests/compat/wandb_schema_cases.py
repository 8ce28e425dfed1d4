"""W&B's input-schema cases as data (used by test_compat_schema.py).

Source: wandb/wandb ``tests/unit_tests/test_launch/test_inputs/test_internal.py`` at commit
b6e29505884ea60c79ca12091f1f75bd39d2f955: the parameters of ``test_validate_schema`` (schema and
W&B's expected warnings) with launchbay's verdict added, and the ``test_json_schema`` fixture.
"""

from __future__ import annotations

ACCEPT = ("accept", "")


def obj(**properties):
    return {"type": "object", "properties": properties}


# (id, schema, W&B's expected warnings, our verdict)
CASES = [
    ("basic", obj(key1={"type": "integer"}), [], ACCEPT),
    (
        "all-supported-keys-nested",
        obj(
            key1={"type": "integer", "minimum": 3, "exclusiveMaximum": 6.0},
            key2={"type": "number", "exclusiveMinimum": 1.2, "maximum": 3},
            key3=obj(
                key3={
                    "type": "string",
                    "title": "My cool string",
                    "description": "It is cool",
                    "enum": ["value-1", "value-2"],
                },
                key4={"type": "integer", "enum": [3, 4, 5]},
                key5={"type": "boolean"},
            ),
        ),
        [],
        ACCEPT,
    ),
    (
        "secret",
        obj(api_key={"type": "string", "format": "secret", "title": "API Key", "description": "Secret API key"}),
        [],
        ACCEPT,
    ),
    (
        "nested-secret",
        obj(
            config=obj(
                secret_token={"type": "string", "format": "secret", "description": "Nested secret"},
                public_key={"type": "string", "description": "Public configuration"},
            )
        ),
        [],
        ACCEPT,
    ),
    (
        "several-secrets",
        obj(
            api_key={"type": "string", "format": "secret"},
            db_password={"type": "string", "format": "secret"},
            regular_field={"type": "string"},
        ),
        [],
        ACCEPT,
    ),
    (
        "placeholder",
        obj(
            username={
                "type": "string",
                "placeholder": "Enter your username",
                "title": "Username",
                "description": "Your account username",
            }
        ),
        [],
        ACCEPT,
    ),
    (
        "label",
        obj(
            api_key={
                "type": "string",
                "label": "API Key",
                "placeholder": "sk-...",
                "required": True,
                "format": "secret",
            }
        ),
        [],
        ACCEPT,
    ),
    (
        "nested-label-placeholder",
        {
            "type": "object",
            "properties": {
                "database": {
                    "type": "object",
                    "label": "Database Configuration",
                    "properties": {
                        "host": {
                            "type": "string",
                            "label": "Database Host",
                            "placeholder": "localhost",
                            "description": "Database host",
                        },
                        "port": {"type": "integer", "label": "Database Port", "placeholder": "5432", "minimum": 1},
                    },
                }
            },
        },
        [],
        ACCEPT,
    ),
    (
        "required-field",
        obj(
            api_key={"type": "string", "required": True, "title": "API Key", "description": "Required API key"},
            optional_field={"type": "string", "required": False, "description": "Optional field"},
        ),
        [],
        ACCEPT,
    ),
    (
        "required-several-types",
        obj(
            count={"type": "integer", "required": True, "minimum": 1},
            threshold={"type": "number", "required": True, "minimum": 0.0},
            active={"type": "boolean", "required": False},
        ),
        [],
        ACCEPT,
    ),
    (
        "nested-required",
        obj(
            config=obj(
                name={"type": "string", "required": True, "description": "Configuration name"},
                version={"type": "string", "required": False, "placeholder": "1.0.0"},
            )
        ),
        [],
        ACCEPT,
    ),
    (
        "integer-fractional-minimum",
        obj(key1={"type": "integer", "minimum": 1.5}),
        ["1.5 is not of type 'integer'"],
        ("refuse", "schema at key1: attribute 'minimum' of an integer field must be an integer, got 1.5"),
    ),
    (
        "minimum-on-string",
        obj(key1={"type": "string", "minimum": 1}),
        ["Unevaluated properties are not allowed ('minimum' was unexpected)"],
        ("refuse", "schema at key1: attribute 'minimum' is not allowed for type 'string'"),
    ),
    (
        # We accept "default": pydantic writes it for every field that has one, and it changes nothing.
        "default",
        obj(key1={"type": "integer", "default": 5}),
        ["Unevaluated properties are not allowed ('default' was unexpected)"],
        ACCEPT,
    ),
    ("boolean-placeholder", obj(field1={"type": "boolean", "placeholder": "Enable this feature"}), [], ACCEPT),
    (
        "array-placeholder",
        obj(
            field1={
                "type": "array",
                "items": {"type": "string", "enum": ["a", "b", "c"]},
                "placeholder": "Select options...",
            }
        ),
        [],
        ACCEPT,
    ),
    (
        "placeholder-not-a-string",
        obj(field1={"type": "string", "placeholder": 123}),
        ["123 is not of type 'string'"],
        ("refuse", "schema at field1: attribute 'placeholder' must be a string, got 123"),
    ),
    (
        "label-not-a-string",
        obj(field1={"type": "string", "label": 456}),
        ["456 is not of type 'string'"],
        ("refuse", "schema at field1: attribute 'label' must be a string, got 456"),
    ),
    (
        "array-string-enum-bounds-unique",
        obj(
            tags={
                "type": "array",
                "items": {"type": "string", "enum": ["a", "b", "c"]},
                "uniqueItems": True,
                "minItems": 1,
                "maxItems": 3,
            }
        ),
        [],
        ACCEPT,
    ),
    (
        "array-integer-enum",
        obj(ids={"type": "array", "items": {"type": "integer", "enum": [1, 2, 3]}, "uniqueItems": True}),
        [],
        ACCEPT,
    ),
    (
        "array-number-enum-nested",
        obj(config=obj(lrs={"type": "array", "items": {"type": "number", "enum": [0.001, 0.01, 0.1]}, "minItems": 1})),
        [],
        ACCEPT,
    ),
    (
        "array-label-placeholder-required",
        obj(
            tags={
                "type": "array",
                "items": {"type": "string", "enum": ["dev", "prod", "test"]},
                "label": "Environment Tags",
                "placeholder": "Select environment tags...",
                "required": True,
                "minItems": 1,
                "uniqueItems": True,
            },
            optional_list={
                "type": "array",
                "items": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
                "label": "Optional Numbers",
                "placeholder": "Choose numbers (optional)",
                "required": False,
            },
        ),
        [],
        ACCEPT,
    ),
    (
        "array-contains",
        obj(arr={"type": "array", "contains": {"type": "number"}}),
        ["Unevaluated properties are not allowed ('contains' was unexpected)"],
        ("refuse", "schema at arr: unsupported attribute 'contains'"),
    ),
    (
        "array-prefix-items",
        obj(tuple_like={"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]}),
        ["Unevaluated properties are not allowed ('prefixItems' was unexpected)"],
        ("refuse", "schema at tuple_like: unsupported attribute 'prefixItems'"),
    ),
    (
        "array-fractional-min-items",
        obj(vals={"type": "array", "items": {"type": "string"}, "minItems": 1.5}),
        ["1.5 is not of type 'integer'"],
        ("refuse", "schema at vals: attribute 'minItems' must be a whole number, got 1.5"),
    ),
]


# From test_internal.py ``test_json_schema`` / ``expected_json_schema`` (test_replace_refs_and_allofs).
WANDB_REFS_SCHEMA = {
    "$defs": {
        "DatasetEnum": {"enum": ["cifar10", "cifar100"], "title": "DatasetEnum", "type": "string"},
        "Trainer": {
            "properties": {
                "learning_rate": {
                    "description": "Learning rate of the model",
                    "title": "Learning Rate",
                    "type": "number",
                },
                "batch_size": {
                    "description": "Number of samples per batch",
                    "maximum": 256,
                    "minimum": 1,
                    "title": "Batch Size",
                    "type": "integer",
                },
                "dataset": {"allOf": [{"$ref": "#/$defs/DatasetEnum"}], "description": "Name of the dataset to use"},
            },
            "required": ["learning_rate", "batch_size", "dataset"],
            "title": "Trainer",
            "type": "object",
        },
    },
    "properties": {"trainer": {"$ref": "#/$defs/Trainer"}},
    "required": ["trainer"],
    "title": "ExampleSchema",
    "type": "object",
}
