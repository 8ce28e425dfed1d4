"""The launch form built from recorded inputs, and posted text read back as overrides (pure)."""

from __future__ import annotations

from launchbay.sdk.schema import prepare_schema
from launchbay.ui.form import CHECKBOX, JSON_TEXT, NUMBER, SELECT, TEXT, build_form, iter_fields, read_submission
from ui_helpers import Schema, docs_inputs, docs_run_config_section

# The docs' "JSON Schema" example (manage-job-inputs), with the comma it is missing after "seed".
DOCS_JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "seed": {"type": "integer"},
        "trainer": {
            "type": "object",
            "properties": {
                "learning_rate": {"type": "number", "description": "Learning rate of the model", "exclusiveMinimum": 0},
                "batch_size": {"type": "integer", "description": "Number of samples per batch", "enum": [16, 64, 256]},
                "dataset": {
                    "type": "string",
                    "description": "Name of the dataset to use",
                    "enum": ["cifar10", "cifar100"],
                },
            },
        },
    },
}
DOCS_TYPES = {"trainer": {"learning_rate": "float", "batch_size": "int", "model": "str", "dataset": "str"}}


def fields_by_key(sections):
    return {(item.section, item.key): item for item in iter_fields(sections)}


def section(schema=None, types=None, include=(), exclude=()):
    return {"include": list(include), "exclude": list(exclude), "types": types, "schema": schema}


def test_an_enum_becomes_a_select_whose_options_are_its_values():
    fields = fields_by_key(build_form({"run_config": section(DOCS_JSON_SCHEMA, DOCS_TYPES)}))
    dataset = fields[("run_config", "trainer.dataset")]
    assert dataset.widget == SELECT
    assert [(o.value, o.label) for o in dataset.options] == [('"cifar10"', "cifar10"), ('"cifar100"', "cifar100")]
    batch = fields[("run_config", "trainer.batch_size")]
    assert batch.widget == SELECT
    assert [o.label for o in batch.options] == ["16", "64", "256"]


def test_the_pydantic_schema_gives_bounds_titles_and_helper_text():
    fields = fields_by_key(build_form({"run_config": docs_run_config_section()}))
    batch = fields[("run_config", "trainer.batch_size")]
    assert (batch.widget, batch.html_min, batch.html_max, batch.step) == (NUMBER, "1", "256", "1")
    assert batch.label == "Batch Size"
    assert batch.helper == "Number of samples per batch. Must be at least 1 and at most 256."
    dataset = fields[("run_config", "trainer.dataset")]
    assert (dataset.widget, dataset.label) == (SELECT, "Dataset")
    assert dataset.helper == "Name of the dataset to use."


def test_an_exclusive_bound_is_described_and_left_to_the_server_for_numbers():
    fields = fields_by_key(build_form({"run_config": docs_run_config_section()}))
    rate = fields[("run_config", "trainer.learning_rate")]
    assert (rate.widget, rate.step, rate.html_min) == (NUMBER, "any", "")
    assert rate.bounds == "Must be greater than 0."


def test_an_exclusive_bound_of_an_integer_becomes_the_next_whole_number():
    schema = {
        "type": "object",
        "properties": {"workers": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 9.5, "minimum": -3}},
    }
    workers = fields_by_key(build_form({"run_config": section(schema)}))[("run_config", "workers")]
    assert (workers.html_min, workers.html_max) == ("1", "9")
    assert workers.bounds == "Must be at least -3 and greater than 0 and less than 9.5."


def test_nested_properties_become_fieldsets_titled_by_the_schema():
    sections = build_form({"run_config": docs_run_config_section()})
    run_config = sections[0]
    assert [type(item).__name__ for item in run_config.items] == ["Field", "Group"]
    trainer = run_config.items[1]
    assert (trainer.title, trainer.key) == ("Trainer", "trainer")
    assert [item.key for item in trainer.items] == [
        "trainer.learning_rate",
        "trainer.batch_size",
        "trainer.dataset",
        "trainer.model",  # recorded, not in the schema: a field from its type, after the schema's
    ]


def test_without_a_schema_each_recorded_type_gets_its_widget():
    types = {"n": "int", "lr": "float", "flag": "bool", "name": "str", "layers": "list", "extra": "dict", "x": "null"}
    fields = fields_by_key(build_form({"run_config": section(types=types)}))
    shown = {key: (item.widget, item.step) for (_, key), item in fields.items()}
    assert shown == {
        "n": (NUMBER, "1"),
        "lr": (NUMBER, "any"),
        "flag": (CHECKBOX, ""),
        "name": (TEXT, ""),
        "layers": (JSON_TEXT, ""),
        "extra": (JSON_TEXT, ""),
        "x": (JSON_TEXT, ""),
    }


def test_keys_under_an_exclude_prefix_never_appear_even_when_the_schema_lists_them():
    schema = {
        "type": "object",
        "properties": {
            "trainer": {
                "type": "object",
                "properties": {
                    "lr": {"type": "number"},
                    "private": {"type": "object", "properties": {"k": {"type": "string"}}},
                },
            },
            "secret": {"type": "string"},
        },
    }
    record = section(
        schema, {"trainer": {"lr": "float"}}, include=["trainer", "secret"], exclude=["trainer.private", "secret"]
    )
    keys = [item.key for item in iter_fields(build_form({"run_config": record}))]
    assert keys == ["trainer.lr"]


def test_keys_outside_every_include_prefix_never_appear():
    schema = {"type": "object", "properties": {"seed": {"type": "integer"}, "trainer": {"type": "integer"}}}
    keys = [item.key for item in iter_fields(build_form({"run_config": section(schema, include=["trainer"])}))]
    assert keys == ["trainer"]


def test_each_config_file_gets_its_own_section():
    sections = build_form(docs_inputs())
    assert [(s.id, s.title, s.file) for s in sections] == [
        ("run_config", "Run config", None),
        ("file:config.yaml", "Config file config.yaml", "config.yaml"),
    ]
    file_keys = [item.key for item in iter_fields(sections[1:])]
    assert file_keys == ["epochs", "augment", "optimizer.name", "optimizer.momentum"]


def test_a_section_with_nothing_to_set_says_so():
    sections = build_form({"run_config": section(types={"a": "int"}, exclude=["a"])})
    assert sections[0].items == ()
    assert sections[0].note == "No key of this section accepts launch input."


def test_a_job_that_has_not_run_gets_one_json_field_for_the_whole_run_config():
    (only,) = build_form(None)
    (blob,) = only.items
    assert (blob.widget, blob.key_path) == (JSON_TEXT, ())
    posted = read_submission([only], {blob.name: '{"trainer": {"lr": 0.1}}'})
    assert posted.run_config == {"trainer": {"lr": 0.1}}
    errors = read_submission([only], {blob.name: "[1]"}).errors
    assert errors == {blob.name: 'enter a JSON object, e.g. {"trainer": {"learning_rate": 0.1}}'}


def test_schema_defaults_fill_the_fields_and_others_stay_empty():
    schema = {
        "type": "object",
        "properties": {
            "epochs": {"type": "integer", "default": 10},
            "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
            "amp": {"type": "boolean", "default": True},
            "tag": {"type": "string"},
        },
    }
    fields = fields_by_key(build_form({"run_config": section(schema)}))
    initial = {key: item.initial for (_, key), item in fields.items()}
    assert initial == {"epochs": "10", "mode": '"slow"', "amp": "true", "tag": ""}


def test_only_filled_in_fields_become_overrides():
    sections = build_form({"run_config": docs_run_config_section()})
    posted = read_submission(
        sections,
        {
            "run_config:seed": "",
            "run_config:trainer.learning_rate": "0.05",
            "run_config:trainer.batch_size": "64",
            "run_config:trainer.dataset": "",
            "run_config:trainer.model": "   ",
        },
    )
    assert posted.errors == {}
    assert posted.run_config == {"trainer": {"learning_rate": 0.05, "batch_size": 64}}


def test_numbers_keep_their_kind_and_an_int_key_given_a_fraction_goes_on_for_validation():
    sections = build_form({"run_config": docs_run_config_section()})
    posted = read_submission(sections, {"run_config:trainer.learning_rate": "1", "run_config:seed": "3.5"})
    assert posted.run_config == {"seed": 3.5, "trainer": {"learning_rate": 1.0}}
    assert isinstance(posted.run_config["trainer"]["learning_rate"], float)


def test_text_that_is_not_a_number_is_an_error_on_its_field():
    sections = build_form({"run_config": docs_run_config_section()})
    posted = read_submission(sections, {"run_config:seed": "abc", "run_config:trainer.batch_size": "inf"})
    assert posted.errors == {
        "run_config:seed": "'abc' is not a number",
        "run_config:trainer.batch_size": "'inf' is not a finite number",
    }
    assert posted.run_config == {}
    assert posted.values == {"run_config:seed": "abc", "run_config:trainer.batch_size": "inf"}


def test_a_select_sends_the_json_value_of_the_chosen_option():
    sections = build_form({"run_config": section(DOCS_JSON_SCHEMA, DOCS_TYPES)})
    posted = read_submission(
        sections, {"run_config:trainer.batch_size": "64", "run_config:trainer.dataset": '"cifar100"'}
    )
    assert posted.run_config == {"trainer": {"batch_size": 64, "dataset": "cifar100"}}


def test_a_checkbox_is_sent_only_once_touched_and_then_either_way():
    sections = build_form({"run_config": section(types={"amp": "bool"})})
    (amp,) = iter_fields(sections)
    assert read_submission(sections, {}).run_config == {}
    assert read_submission(sections, {amp.name: "true"}).run_config == {}  # checked but never touched: no marker
    assert read_submission(sections, {amp.checkbox_marker: "1"}).run_config == {"amp": False}
    assert read_submission(sections, {amp.checkbox_marker: "1", amp.name: "true"}).run_config == {"amp": True}


def test_json_fields_take_json_and_say_where_it_breaks():
    sections = build_form({"run_config": section(types={"layers": "list"})})
    assert read_submission(sections, {"run_config:layers": "[64, 32]"}).run_config == {"layers": [64, 32]}
    errors = read_submission(sections, {"run_config:layers": "[64,"}).errors
    assert errors == {"run_config:layers": "not valid JSON: Expecting value (line 1, column 5)"}


def test_config_file_fields_become_that_files_overrides():
    sections = build_form(docs_inputs())
    posted = read_submission(sections, {"file:config.yaml:optimizer.momentum": "0.9", "run_config:seed": "1"})
    assert posted.run_config == {"seed": 1}
    assert posted.files == {"config.yaml": {"optimizer": {"momentum": 0.9}}}


def test_a_key_with_a_dot_in_its_name_is_one_key():
    record = section(types={"paths": {"data.dir": "str"}})
    (item,) = iter_fields(build_form({"run_config": record}))
    assert item.key == "paths.data\\.dir"
    assert read_submission(build_form({"run_config": record}), {item.name: "/data"}).run_config == {
        "paths": {"data.dir": "/data"}
    }


def test_the_pydantic_model_normalized_by_the_sdk_is_what_the_form_reads():
    assert docs_run_config_section()["schema"] == prepare_schema(Schema)
