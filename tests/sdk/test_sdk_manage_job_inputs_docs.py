"""Every example of W&B's "Manage job inputs" page, run as a job script under launchbay.

The scripts keep the docs' code and change only the imports (``from launchbay import sdk as
wandb`` / ``as launch``), drop ``wandb.require("core")``, and print the resulting config.
"""

from __future__ import annotations

import pytest
from sdk_helpers import JobRunner


@pytest.fixture
def run_job(tmp_path):
    return JobRunner(tmp_path)


DOCS_CONFIG = """
config = {
    "trainer": {
        "learning_rate": 0.01,
        "batch_size": 32,
        "model": "resnet",
        "dataset": "cifar10",
        "private": {
            "key": "value",
        },
    },
    "seed": 42,
}
"""

DOCS_INPUT_TYPES = {
    "trainer": {
        "learning_rate": "float",
        "batch_size": "int",
        "model": "str",
        "dataset": "str",
    },
}

MANAGE_AFTER_INIT = (
    """
import json
from launchbay import sdk as wandb
from launchbay import sdk as launch
"""
    + DOCS_CONFIG
    + """
with wandb.init(config=config) as run:
    launch.manage_wandb_config(
        include=["trainer"],
        exclude=["trainer.private"],
    )
    print(json.dumps(run.config.as_dict()))
"""
)

MANAGE_BEFORE_INIT = (
    """
import json
from launchbay import sdk as wandb
from launchbay import sdk as launch
"""
    + DOCS_CONFIG
    + """
launch.manage_wandb_config(include=["trainer"], exclude=["trainer.private"])
with wandb.init(config=config) as run:
    print(json.dumps(run.config.as_dict()))
"""
)

OVERRIDES = {"trainer": {"learning_rate": 0.1, "private": {"key": "leaked"}}, "seed": 7}


@pytest.mark.parametrize("script", [MANAGE_AFTER_INIT, MANAGE_BEFORE_INIT], ids=["after-init", "before-init"])
def test_run_config_example_applies_trainer_overrides_and_ignores_the_rest_with_one_warning(run_job, script):
    job = run_job(script, run_config=OVERRIDES)

    config = job.printed
    assert config["trainer"]["learning_rate"] == 0.1
    assert config["trainer"]["private"] == {"key": "value"}
    assert config["seed"] == 42
    assert job.warnings() == ["launchbay: ignored overrides outside the job's inputs: trainer.private.key, seed"]
    assert job.config == config


def test_run_config_example_records_exactly_the_docs_input_types(run_job):
    job = run_job(MANAGE_AFTER_INIT, run_config=OVERRIDES)

    assert job.inputs == {
        "run_config": {
            "include": ["trainer"],
            "exclude": ["trainer.private"],
            "types": DOCS_INPUT_TYPES,
            "schema": None,
        },
        "files": {},
    }


def test_job_without_a_payload_keeps_its_own_config_and_warns_nothing(run_job):
    job = run_job(MANAGE_AFTER_INIT)

    assert job.printed["trainer"]["learning_rate"] == 0.01
    assert job.warnings() == []
    assert job.inputs["run_config"]["types"] == DOCS_INPUT_TYPES


def test_load_wandb_config_returns_only_the_overrides_inside_the_inputs(run_job):
    script = """
    import json
    from launchbay import sdk as launch

    launch.manage_wandb_config(include=["trainer"], exclude=["trainer.private"])
    run_config_overrides = launch.load_wandb_config()
    print(json.dumps(run_config_overrides))
    """
    job = run_job(script, run_config=OVERRIDES)

    assert job.printed == {"trainer": {"learning_rate": 0.1}}


def test_escaped_dot_excludes_the_top_level_dotted_key_but_not_the_nested_one(run_job):
    script = r"""
    import json
    from launchbay import sdk as wandb
    from launchbay import sdk as launch

    config = {
        "trainer.private": {"key": "value"},
        "trainer": {"learning_rate": 0.01, "private": {"key": "value"}},
    }
    with wandb.init(config=config) as run:
        launch.manage_wandb_config(exclude=[r"trainer\.private"])
        print(json.dumps(run.config.as_dict()))
    """
    overrides = {"trainer.private": {"key": "top"}, "trainer": {"private": {"key": "nested"}}}
    job = run_job(script, run_config=overrides)

    assert job.printed == {
        "trainer.private": {"key": "value"},
        "trainer": {"learning_rate": 0.01, "private": {"key": "nested"}},
    }
    assert job.warnings() == [r"launchbay: ignored overrides outside the job's inputs: trainer\.private.key"]
    assert job.inputs["run_config"]["exclude"] == [r"trainer\.private"]
    assert job.inputs["run_config"]["types"] == {"trainer": {"learning_rate": "float", "private": {"key": "str"}}}


CONFIG_FILE_SCRIPT = """
import json
import yaml
from launchbay import sdk as wandb
from launchbay import sdk as launch

launch.manage_config_file("config.yaml")

with open("config.yaml", "r") as f:
    config = yaml.safe_load(f)

with wandb.init(config=config) as run:
    print(json.dumps({"file": config, "run": run.config.as_dict()}))
"""

DOCS_CONFIG_YAML = """\
learning_rate: 0.01
batch_size: 32
model: resnet
dataset: cifar10
"""


def test_config_file_example_patches_the_file_before_the_job_reads_it(run_job):
    job = run_job(
        CONFIG_FILE_SCRIPT,
        files={"config.yaml": DOCS_CONFIG_YAML},
        file_overrides={"config.yaml": {"learning_rate": 0.1, "batch_size": 64}},
    )

    patched = {"learning_rate": 0.1, "batch_size": 64, "model": "resnet", "dataset": "cifar10"}
    assert job.printed["file"] == patched
    assert job.read("config.yaml") == "learning_rate: 0.1\nbatch_size: 64\nmodel: resnet\ndataset: cifar10\n"


def test_config_file_alone_means_run_config_overrides_are_neither_applied_nor_recorded(run_job):
    job = run_job(
        CONFIG_FILE_SCRIPT,
        files={"config.yaml": DOCS_CONFIG_YAML},
        run_config={"model": "vit"},
        file_overrides={"config.yaml": {"learning_rate": 0.1}},
    )

    assert job.printed["run"]["model"] == "resnet"
    assert job.printed["run"]["learning_rate"] == 0.1
    assert job.warnings() == ["launchbay: ignored overrides outside the job's inputs: model"]
    assert job.inputs == {
        "run_config": None,
        "files": {
            "config.yaml": {
                "include": [],
                "exclude": [],
                "types": {"learning_rate": "float", "batch_size": "int", "model": "str", "dataset": "str"},
                "schema": None,
            }
        },
    }


def test_config_file_include_and_exclude_filter_the_file_overrides(run_job):
    script = """
    from launchbay import sdk as launch
    launch.manage_config_file("config.yaml", include=["model", "dataset"], exclude="dataset")
    """
    job = run_job(
        script,
        files={"config.yaml": DOCS_CONFIG_YAML},
        file_overrides={"config.yaml": {"model": "vit", "dataset": "imagenet", "batch_size": 1}},
    )

    assert job.returncode == 0, job.stderr
    assert job.read("config.yaml") == "learning_rate: 0.01\nbatch_size: 32\nmodel: vit\ndataset: cifar10\n"
    assert job.warnings() == [
        "launchbay: ignored overrides outside the job's inputs in config.yaml: dataset, batch_size"
    ]
    assert job.inputs["files"]["config.yaml"]["types"] == {"model": "str"}


# The docs' dict literal is missing a comma after the "seed" entry (a SyntaxError as printed);
# it is added here and otherwise unchanged.
JSON_SCHEMA = """
schema = {
    "type": "object",
    "properties": {
        "seed": {
          "type": "integer"
        },
        "trainer": {
            "type": "object",
            "properties": {
                "learning_rate": {
                    "type": "number",
                    "description": "Learning rate of the model",
                    "exclusiveMinimum": 0,
                },
                "batch_size": {
                    "type": "integer",
                    "description": "Number of samples per batch",
                    "enum": [16, 64, 256]
                },
                "dataset": {
                    "type": "string",
                    "description": "Name of the dataset to use",
                    "enum": ["cifar10", "cifar100"]
                }
            }
        }
    }
}
"""

JSON_SCHEMA_SCRIPT = (
    """
import json
from launchbay import sdk as wandb
from launchbay import sdk as launch
"""
    + DOCS_CONFIG
    + JSON_SCHEMA
    + """
with wandb.init(config=config) as run:
    launch.manage_wandb_config(
        include=["seed", "trainer"],
        exclude=["trainer.private"],
        schema=schema,
    )
    print(json.dumps(run.config.as_dict()))
"""
)


def test_json_schema_example_accepts_valid_overrides_and_records_the_schema(run_job):
    overrides = {"seed": 7, "trainer": {"learning_rate": 0.5, "batch_size": 64, "dataset": "cifar100"}}
    job = run_job(JSON_SCHEMA_SCRIPT, run_config=overrides)

    assert job.printed["seed"] == 7
    assert job.printed["trainer"]["batch_size"] == 64
    namespace: dict = {}
    exec(JSON_SCHEMA, namespace)
    recorded = job.inputs["run_config"]
    assert recorded["schema"] == namespace["schema"]
    assert recorded["types"] == {"trainer": DOCS_INPUT_TYPES["trainer"], "seed": "int"}


def test_schema_violations_stop_the_job_with_one_message_listing_each(run_job):
    overrides = {"trainer": {"learning_rate": 0, "batch_size": 17}}
    job = run_job(JSON_SCHEMA_SCRIPT, run_config=overrides)

    assert job.returncode != 0
    assert job.stdout == ""
    message = job.stderr.strip().splitlines()[-1]
    assert message == (
        "launchbay.sdk.errors.InputValidationError: invalid launch inputs for the run config: "
        "trainer.learning_rate: 0 must be greater than 0; trainer.batch_size: 17 is not one of [16, 64, 256]"
    )


PYDANTIC_MODELS = """
from enum import Enum
from pydantic import BaseModel, Field

class DatasetEnum(str, Enum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"

class Trainer(BaseModel):
    learning_rate: float = Field(gt=0, description="Learning rate of the model")
    batch_size: int = Field(ge=1, le=256, description="Number of samples per batch")
    dataset: DatasetEnum = Field(title="Dataset", description="Name of the dataset to use")

class Schema(BaseModel):
    seed: int
    trainer: Trainer
"""

PYDANTIC_CLASS_CALL = """
launch.manage_wandb_config(
    include=["seed", "trainer"],
    exclude=["trainer.private"],
    schema=Schema,
)
"""

PYDANTIC_INSTANCE_CALL = """
t = Trainer(learning_rate=0.01, batch_size=32, dataset=DatasetEnum.cifar10)
s = Schema(seed=42, trainer=t)
launch.manage_wandb_config(
    include=["seed", "trainer"],
    exclude=["trainer.private"],
    input_schema=s,
)
"""

NORMALIZED_PYDANTIC_SCHEMA = {
    "type": "object",
    "title": "Schema",
    "required": ["seed", "trainer"],
    "properties": {
        "seed": {"title": "Seed", "type": "integer"},
        "trainer": {
            "type": "object",
            "title": "Trainer",
            "required": ["learning_rate", "batch_size", "dataset"],
            "properties": {
                "learning_rate": {
                    "description": "Learning rate of the model",
                    "exclusiveMinimum": 0,
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
                "dataset": {
                    "enum": ["cifar10", "cifar100"],
                    "title": "Dataset",
                    "type": "string",
                    "description": "Name of the dataset to use",
                },
            },
        },
    },
}


def pydantic_script(call: str) -> str:
    return (
        "import json\nfrom launchbay import sdk as wandb\nfrom launchbay import sdk as launch\n"
        + PYDANTIC_MODELS
        + DOCS_CONFIG
        + call
        + "with wandb.init(config=config) as run:\n    print(json.dumps(run.config.as_dict()))\n"
    )


@pytest.mark.parametrize("call", [PYDANTIC_CLASS_CALL, PYDANTIC_INSTANCE_CALL], ids=["class", "instance"])
def test_pydantic_schema_is_recorded_inlined_and_enforced(run_job, call):
    job = run_job(pydantic_script(call), run_config={"trainer": {"batch_size": 128, "dataset": "cifar100"}})

    assert job.printed["trainer"]["batch_size"] == 128
    assert job.printed["trainer"]["dataset"] == "cifar100"
    assert job.inputs["run_config"]["schema"] == NORMALIZED_PYDANTIC_SCHEMA


@pytest.mark.parametrize("call", [PYDANTIC_CLASS_CALL, PYDANTIC_INSTANCE_CALL], ids=["class", "instance"])
def test_pydantic_schema_rejects_out_of_range_overrides(run_job, call):
    job = run_job(pydantic_script(call), run_config={"trainer": {"batch_size": 0, "dataset": "imagenet"}})

    assert job.returncode != 0
    assert (
        job.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "trainer.batch_size: 0 is less than the minimum 1; "
            'trainer.dataset: "imagenet" is not one of ["cifar10", "cifar100"]'
        )
    )
