"""The seed pages' examples (W&B's "Manage job inputs" and "Configure experiments") run verbatim
after the one-import change.

Each example is a stored code block (seed_examples/, see its README) run as ``python train.py``
in a fresh folder. Fragments that the page writes as a continuation get the names the page
assumes from before (its imports, a ``run``), given as a prelude here; numpy, absl and
tensorflow are the stand-ins of standins/. An epilogue may print what the example computed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from compat_helpers import JobRunner, rewrite_imports

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "seed_examples"
STANDINS = HERE / "standins"

DOCS_CONFIG = {
    "trainer": {
        "learning_rate": 0.01,
        "batch_size": 32,
        "model": "resnet",
        "dataset": "cifar10",
        "private": {"key": "value"},
    },
    "seed": 42,
}
# The page's "input types" block for its first example.
DOCS_INPUT_TYPES = {"trainer": {"learning_rate": "float", "batch_size": "int", "model": "str", "dataset": "str"}}
SCHEMA_LAUNCH = {"seed": 7, "trainer": {"learning_rate": 0.5, "batch_size": 64, "dataset": "cifar100"}}
PRINT_OVERRIDES = "\nimport json\nprint(json.dumps(launch.load_wandb_config().as_dict()))\n"


def example(*names: str, prelude: str = "", epilogue: str = "") -> str:
    body = "".join((EXAMPLES / name).read_text() for name in names)
    return rewrite_imports(prelude + body + epilogue)


@pytest.fixture
def run_job(tmp_path):
    runner = JobRunner(tmp_path)

    def run(script, **kwargs):
        return runner(script, python_path=(STANDINS,), **kwargs)

    run.runner = runner
    return run


def test_manage_wandb_config_example(run_job):
    overrides = {"trainer": {"learning_rate": 0.1, "private": {"key": "leaked"}}, "seed": 7}

    job = run_job(example("mji_01.py"), run_config=overrides)

    assert job.returncode == 0, job.stderr
    expected = json.loads(json.dumps(DOCS_CONFIG))
    expected["trainer"]["learning_rate"] = 0.1
    assert job.config == expected
    assert job.inputs["run_config"]["types"] == DOCS_INPUT_TYPES
    assert job.warnings() == ["launchbay: ignored overrides outside the job's inputs: trainer.private.key, seed"]


def test_load_wandb_config_example(run_job):
    job = run_job(
        example("mji_03.py", epilogue="\nprint(json.dumps(run_config_overrides.as_dict()))\n", prelude="import json\n"),
        run_config={"seed": 7},
    )

    assert job.printed == {"seed": 7}


def test_manage_config_file_example(run_job):
    job = run_job(
        example("mji_04.py"),
        files={"config.yaml": (EXAMPLES / "mji_05.yaml").read_text()},
        file_overrides={"config.yaml": {"learning_rate": 0.1, "dataset": "cifar100"}},
    )

    assert job.returncode == 0, job.stderr
    assert job.config == {"learning_rate": 0.1, "batch_size": 32, "model": "resnet", "dataset": "cifar100"}
    assert job.read("config.yaml") == "learning_rate: 0.1\nbatch_size: 32\nmodel: resnet\ndataset: cifar100\n"


@pytest.mark.parametrize(
    ("names", "prelude"),
    [
        (("mji_06.py",), "from wandb.sdk import launch\n"),
        (
            ("mji_07.py",),
            "from enum import Enum\nfrom pydantic import BaseModel, Field\nfrom wandb.sdk import launch\n",
        ),
        (
            ("mji_07.py", "mji_08.py"),
            "from enum import Enum\nfrom pydantic import BaseModel, Field\nfrom wandb.sdk import launch\n",
        ),
    ],
    ids=["json-schema", "pydantic-class", "pydantic-instance"],
)
def test_schema_examples_accept_good_values_and_stop_bad_ones(run_job, tmp_path, names, prelude):
    script = example(*names, prelude=prelude, epilogue=PRINT_OVERRIDES)

    good = run_job(script, run_config=SCHEMA_LAUNCH)
    assert good.printed == SCHEMA_LAUNCH

    bad = run_job(script, run_config={"seed": 7, "trainer": {"learning_rate": 0, "dataset": "mnist"}})
    assert bad.returncode != 0
    assert "trainer.learning_rate: 0 must be greater than 0" in bad.stderr
    assert 'trainer.dataset: "mnist" is not one of' in bad.stderr


def test_dict_config_example_and_reading_it_back(run_job):
    job = run_job(
        example(
            "ce_01.py",
            "ce_02.py",
            epilogue="\nprint(json.dumps([hidden_layer_sizes, activation]))\n",
            prelude="import json\n",
        )
    )

    assert job.printed == [[32, 64], "ReLU"]
    assert job.config["dropout"] == 0.5


def test_argparse_example_logs_each_epoch(run_job):
    job = run_job(example("ce_03.py"), args=("-e", "5"), run_config={"batch_size": 16})

    assert job.returncode == 0, job.stderr
    assert job.config == {"batch_size": 16, "epochs": 5, "learning_rate": 0.001}
    lines = run_job.runner.metrics()
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4]
    assert [line["_step"] for line in lines] == [0, 1, 2, 3]
    assert all({"train_acc", "train_loss", "val_acc", "val_loss"} <= set(line) for line in lines)
    assert run_job.runner.summary()["epoch"] == 4


def test_setting_config_through_the_script_example(run_job):
    job = run_job(example("ce_04.py"))

    assert job.returncode == 0, job.stderr
    assert job.config["dropout"] == 0.2
    assert (job.config["epochs"], job.config["batch_size"]) == (4, 32)


def test_config_update_fragment(run_job):
    job = run_job(example("ce_05.py", prelude="import wandb\nrun = wandb.init()\n"))

    assert job.returncode == 0, job.stderr
    assert job.config == {"lr": 0.1, "channels": 16}


def test_absl_flags_fragment(run_job):
    job = run_job(example("ce_07.py", prelude="import wandb\nfrom absl import flags\nrun = wandb.init()\n"))

    assert job.returncode == 0, job.stderr
    assert job.config == {"model": None}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), {"batch_size": 64, "epochs": 200}),
        (("--configs", "other-config.yaml"), {"batch_size": 64, "epochs": 200, "dropout": 0.3}),
    ],
    ids=["defaults", "configs-argument"],
)
def test_config_defaults_yaml_examples(run_job, args, expected):
    files = {"config-defaults.yaml": (EXAMPLES / "ce_08.yaml").read_text(), "other-config.yaml": "dropout: 0.3\n"}

    job = run_job(example("ce_09.py"), files=files, args=args)

    assert job.returncode == 0, job.stderr
    assert job.config == expected


def test_file_based_config_use_case_fragment(run_job):
    job = run_job(example("ce_11.py", prelude="import wandb\nmy_yaml_file = 'config.yaml'\n"))

    assert job.returncode == 0, job.stderr
    assert job.config == {"yaml": "config.yaml", "params": {"dropout": 0.5, "batch_size": 100, "learning_rate": 0.001}}


def test_tensorflow_flags_fragment_keeps_the_launch_value(run_job):
    job = run_job(example("ce_12.py", prelude="import wandb\nimport tensorflow as tf\n"), run_config={"batch_size": 64})

    assert job.returncode == 0, job.stderr
    assert job.config == {"epochs": 4, "data_dir": "/tmp/data", "batch_size": 64}
