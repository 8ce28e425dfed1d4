"""Every example of W&B's "Configure experiments" page, run as a job script under launchbay.

Adaptations: the import (``from launchbay import sdk as wandb``), no ``project=`` argument,
and ``run.log`` / numpy dropped from the argparse example (launchbay records config, not
metrics). absl and TensorFlow flags are stood in for by a class with ``flag_values_dict()``,
which is what both libraries' ``FLAGS`` objects offer.
"""

from __future__ import annotations

import pytest
from sdk_helpers import JobRunner


@pytest.fixture
def run_job(tmp_path):
    return JobRunner(tmp_path)


DOCS_CONFIG = """
config = {
    "hidden_layer_sizes": [32, 64],
    "kernel_sizes": [3],
    "activation": "ReLU",
    "pool_sizes": [2],
    "dropout": 0.5,
    "num_classes": 10,
}
"""

FAKE_FLAGS = """
class FlagValues:
    '''The part of absl.flags.FLAGS / tf.app.flags.FLAGS that a config reads.'''

    def __init__(self):
        self._values = {}

    def DEFINE(self, name, default):
        self._values[name] = default

    def flag_values_dict(self):
        return dict(self._values)

FLAGS = FlagValues()
"""


def test_init_config_dict_is_readable_by_item_and_by_get(run_job):
    script = (
        "import json\nfrom launchbay import sdk as wandb\n"
        + DOCS_CONFIG
        + """
with wandb.init(config=config) as run:
    hidden_layer_sizes = run.config["hidden_layer_sizes"]
    kernel_sizes = run.config["kernel_sizes"]
    activation = run.config["activation"]
    by_get = [run.config.get("hidden_layer_sizes"), run.config.get("kernel_sizes"), run.config.get("activation")]
    print(json.dumps({"item": [hidden_layer_sizes, kernel_sizes, activation], "get": by_get}))
"""
    )
    job = run_job(script)

    assert job.printed == {"item": [[32, 64], [3], "ReLU"], "get": [[32, 64], [3], "ReLU"]}
    assert job.config["num_classes"] == 10


def test_init_config_receives_launch_overrides_for_any_key_when_nothing_is_managed(run_job):
    script = (
        "import json\nfrom launchbay import sdk as wandb\n"
        + DOCS_CONFIG
        + "with wandb.init(config=config) as run:\n    print(json.dumps(run.config.as_dict()))\n"
    )
    job = run_job(script, run_config={"dropout": 0.1, "hidden_layer_sizes": [8]})

    assert job.printed["dropout"] == 0.1
    assert job.printed["hidden_layer_sizes"] == [8]
    assert job.inputs["run_config"]["include"] == []
    assert job.inputs["run_config"]["types"]["hidden_layer_sizes"] == "list"


ARGPARSE_SCRIPT = """
# config_experiment.py
import argparse
import json

from launchbay import sdk as wandb


def main(args):
    with wandb.init(config=args) as run:
        lr = run.config["learning_rate"]
        bs = run.config["batch_size"]
        epochs = run.config["epochs"]
        print(json.dumps({"lr": lr, "bs": bs, "epochs": epochs}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )

    parser.add_argument("-b", "--batch_size", type=int, default=32, help="Batch size")
    parser.add_argument(
        "-e", "--epochs", type=int, default=50, help="Number of training epochs"
    )
    parser.add_argument(
        "-lr", "--learning_rate", type=int, default=0.001, help="Learning rate"
    )

    args = parser.parse_args()
    main(args)
"""


def test_argparse_namespace_becomes_the_run_config(run_job):
    job = run_job(ARGPARSE_SCRIPT, args=("-b", "64", "--epochs", "3"))

    assert job.printed == {"lr": 0.001, "bs": 64, "epochs": 3}
    assert job.inputs["run_config"]["types"] == {"batch_size": "int", "epochs": "int", "learning_rate": "float"}


def test_launch_overrides_win_over_argparse_values(run_job):
    job = run_job(ARGPARSE_SCRIPT, args=("-b", "64"), run_config={"batch_size": 256})

    assert job.printed["bs"] == 256


def test_values_set_during_the_run_by_item_attribute_and_update_are_recorded(run_job):
    script = (
        "import json\nfrom launchbay import sdk as wandb\n"
        + DOCS_CONFIG
        + """
with wandb.init(config=config) as run:
    run.config["dropout"] = 0.2
    run.config.epochs = 4
    run.config["batch_size"] = 32
    run.config.update({"lr": 0.1, "channels": 16})
    print(json.dumps({"epochs": run.config.epochs, "lr": run.config.lr, "all": run.config.as_dict()}))
"""
    )
    job = run_job(script)

    assert job.printed["epochs"] == 4
    assert job.printed["lr"] == 0.1
    expected = {
        "hidden_layer_sizes": [32, 64],
        "kernel_sizes": [3],
        "activation": "ReLU",
        "pool_sizes": [2],
        "dropout": 0.2,
        "num_classes": 10,
        "epochs": 4,
        "batch_size": 32,
        "lr": 0.1,
        "channels": 16,
    }
    assert job.printed["all"] == expected
    assert job.config == expected


def test_values_set_after_init_without_finish_are_captured_at_exit(run_job):
    script = """
    from launchbay import sdk as wandb
    run = wandb.init(config={"a": 1})
    run.config["late"] = "set after init"
    """
    job = run_job(script)

    assert job.returncode == 0, job.stderr
    assert job.config == {"a": 1, "late": "set after init"}
    assert job.inputs["run_config"]["types"] == {"a": "int", "late": "str"}


def test_absl_flags_update_the_config(run_job):
    script = (
        "import json\nfrom launchbay import sdk as wandb\n"
        + FAKE_FLAGS
        + """
FLAGS.DEFINE("model", None)  # flags.DEFINE_string("model", None, "model to run")
with wandb.init() as run:
    run.config.update(FLAGS)  # adds all absl flags to config
    print(json.dumps(run.config.as_dict()))
"""
    )
    job = run_job(script)

    assert job.printed == {"model": None}
    assert job.inputs["run_config"]["types"] == {"model": "null"}


def test_tensorflow_flags_update_the_config_after_an_attribute_set(run_job):
    script = (
        "import json\nfrom launchbay import sdk as wandb\n"
        + FAKE_FLAGS
        + """
with wandb.init() as run:
    run.config.epochs = 4

    FLAGS.DEFINE("data_dir", "/tmp/data")  # flags.DEFINE_string("data_dir", "/tmp/data")
    FLAGS.DEFINE("batch_size", 128)  # flags.DEFINE_integer("batch_size", 128, "Batch size.")
    run.config.update(FLAGS)
    print(json.dumps(run.config.as_dict()))
"""
    )
    job = run_job(script, run_config={"batch_size": 64})

    assert job.printed == {"epochs": 4, "data_dir": "/tmp/data", "batch_size": 64}
    assert job.warnings() == ["launchbay: launch overrides kept over values the job set: batch_size"]


PRINT_CONFIG = """
import json
from launchbay import sdk as wandb
with wandb.init(config=INIT_CONFIG) as run:
    print(json.dumps(run.config.as_dict()))
"""

DEFAULTS_YAML = """\
batch_size:
  desc: Size of each mini-batch
  value: 32
epochs: 10
"""


def test_config_defaults_yaml_is_loaded_in_both_forms(run_job):
    job = run_job(PRINT_CONFIG.replace("INIT_CONFIG", "None"), files={"config-defaults.yaml": DEFAULTS_YAML})

    assert job.printed == {"batch_size": 32, "epochs": 10}


def test_config_defaults_yaml_of_the_working_folder_wins_over_the_one_beside_the_script(run_job):
    # The launcher script runs from the working folder; the job's main module lives in src/. W&B reads
    # config-defaults.yaml from the working folder (wandb_config.Config._load_defaults), and so do we.
    script = """
    import runpy
    runpy.run_path("src/main.py", run_name="__main__")
    """
    job = run_job(
        script,
        files={
            "src/main.py": PRINT_CONFIG.replace("INIT_CONFIG", "None"),
            "src/config-defaults.yaml": "where: beside the script\n",
            "config-defaults.yaml": "where: working folder\n",
        },
    )

    assert job.printed == {"where": "working folder"}


def test_config_defaults_yaml_beside_the_script_is_used_when_the_working_folder_has_none(run_job):
    script = """
    import runpy
    runpy.run_path("src/main.py", run_name="__main__")
    """
    job = run_job(
        script,
        files={"src/main.py": PRINT_CONFIG.replace("INIT_CONFIG", "None"), "src/config-defaults.yaml": "where: src\n"},
    )

    assert job.printed == {"where": "src"}


def test_init_config_overrides_config_defaults(run_job):
    script = PRINT_CONFIG.replace("INIT_CONFIG", '{"epochs": 200, "batch_size": 64}')
    job = run_job(script, files={"config-defaults.yaml": DEFAULTS_YAML})

    assert job.printed == {"batch_size": 64, "epochs": 200}


def test_configs_argument_loads_other_config_files_in_order(run_job):
    files = {
        "config-defaults.yaml": DEFAULTS_YAML,
        "other-config.yaml": "epochs: 20\noptimizer: {desc: which optimizer, value: adam}\n",
        "third.yaml": "optimizer: sgd\n",
    }
    script = PRINT_CONFIG.replace("INIT_CONFIG", "None")

    assert run_job(script, files=files, args=("--configs", "other-config.yaml")).printed == {
        "batch_size": 32,
        "epochs": 20,
        "optimizer": "adam",
    }
    assert run_job(script, files=files, args=("--configs=other-config.yaml,third.yaml",)).printed == {
        "batch_size": 32,
        "epochs": 20,
        "optimizer": "sgd",
    }


def test_a_missing_configs_file_is_an_error_naming_it(run_job):
    job = run_job(PRINT_CONFIG.replace("INIT_CONFIG", "None"), args=("--configs", "nope.yaml"))

    assert job.returncode != 0
    assert "ConfigFileError: config file " in job.stderr
    assert "nope.yaml does not exist" in job.stderr


def test_precedence_is_defaults_then_init_config_then_launch_overrides(run_job):
    script = PRINT_CONFIG.replace("INIT_CONFIG", '{"from_init": "init", "everywhere": "init"}')
    job = run_job(
        script,
        files={"config-defaults.yaml": "from_defaults: defaults\nfrom_init: defaults\neverywhere: defaults\n"},
        run_config={"everywhere": "launch"},
    )

    assert job.printed == {"from_defaults": "defaults", "from_init": "init", "everywhere": "launch"}


def test_nested_config_from_a_yaml_file_and_a_dict_stays_nested(run_job):
    script = """
    import json
    import yaml
    from launchbay import sdk as wandb

    with open("meta.yaml") as f:
        my_yaml_file = yaml.safe_load(f)

    hyperparameter_defaults = dict(
        dropout=0.5,
        batch_size=100,
        learning_rate=0.001,
    )

    config_dictionary = dict(
        yaml=my_yaml_file,
        params=hyperparameter_defaults,
    )

    with wandb.init(config=config_dictionary) as run:
        print(json.dumps({"dropout": run.config["params"]["dropout"], "all": run.config.as_dict()}))
    """
    job = run_job(script, files={"meta.yaml": "owner: team-a\n"}, run_config={"params": {"dropout": 0.3}})

    assert job.printed["dropout"] == 0.3
    assert job.printed["all"] == {
        "yaml": {"owner": "team-a"},
        "params": {"dropout": 0.3, "batch_size": 100, "learning_rate": 0.001},
    }
    assert job.inputs["run_config"]["types"]["params"] == {
        "dropout": "float",
        "batch_size": "int",
        "learning_rate": "float",
    }
