"""The trainer of W&B Launch's "Manage job inputs" page, as a launchbay job.

What a launch may change, and what guards it:

- the run config's ``seed`` and ``trainer.*``, but not ``trainer.private`` (``manage_config``),
  checked by a pydantic schema: ``learning_rate`` > 0, ``batch_size`` 1-256, ``dataset`` cifar10
  or cifar100;
- in ``config.yaml``, ``epochs`` and ``optimizer.*``, but not ``optimizer.name``
  (``manage_config_file``), checked by a JSON schema.

An override of anything else is not applied (one line on stderr names it), and a value that breaks
a schema stops the job before it trains. The output marks each value an override set, and its last
line lists them.

Run by hand, without an agent (this patches config.yaml in place, as it does in the container)::

    LAUNCHBAY_RUN_CONFIG='{"trainer": {"learning_rate": 0.05}}' python3 train.py
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from enum import Enum

import yaml
from launchbay.sdk.filtering import flatten
from launchbay.sdk.paths import join_path
from pydantic import BaseModel, Field

from launchbay import sdk


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


# The schema of config.yaml's inputs, as a JSON-Schema dict (a pydantic model works here too).
FILE_SCHEMA = {
    "type": "object",
    "properties": {
        "epochs": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Passes over the data"},
        "optimizer": {
            "type": "object",
            "properties": {
                "momentum": {"type": "number", "minimum": 0, "maximum": 1},
                "weight_decay": {"type": "number", "minimum": 0},
            },
        },
    },
}

CONFIG = {
    "trainer": {
        "learning_rate": 0.01,
        "batch_size": 32,
        "model": "resnet",
        "dataset": "cifar10",
        "private": {"key": "value"},
    },
    "seed": 42,
}
MARK = "<- override"


def show(title: str, values: dict, overridden: set) -> None:
    print(title)
    for parts, value in flatten(values).items():
        path = join_path(parts)
        print(f"  {path:<24} {value!r:<10} {MARK if path in overridden else ''}".rstrip())


def main() -> None:
    # The file as shipped, only to tell which values the launch changed.
    with open("config.yaml") as f:
        shipped = flatten(yaml.safe_load(f))

    sdk.manage_config(include=["seed", "trainer"], exclude=["trainer.private"], schema=Schema)
    sdk.manage_config_file(
        "config.yaml", include=["epochs", "optimizer"], exclude=["optimizer.name"], schema=FILE_SCHEMA
    )
    # manage_config_file has patched the file: read it now.
    with open("config.yaml") as f:
        file_config = yaml.safe_load(f)

    run_overrides = {join_path(p) for p in flatten(sdk.load_config())}
    file_overrides = {join_path(p) for p, v in flatten(file_config).items() if shipped.get(p, v) != v}

    with sdk.init(config=CONFIG) as run:
        job = os.environ.get("LAUNCHBAY_JOB_ID", "(not launched by an agent)")
        print(f"trainer: job {job}, queue {os.environ.get('LAUNCHBAY_QUEUE', '-')}")
        show("run config (launch inputs: seed, trainer.* except trainer.private):", run.config.as_dict(), run_overrides)
        show("config.yaml (launch inputs: epochs, optimizer.* except optimizer.name):", file_config, file_overrides)

        trainer = run.config["trainer"]
        rng = random.Random(run.config["seed"])
        lr, epochs = trainer["learning_rate"], file_config["epochs"]
        decay = file_config["optimizer"]["weight_decay"]
        # A toy with a best learning rate (0.25: too high diverges) and a best weight decay (0.125),
        # so a sweep (examples/trainer/sweep.yaml) has something to find.
        per_epoch = math.exp(-8 * lr + 16 * lr**2) * (1 - decay + 4 * decay**2)
        loss = 2.3
        for epoch in range(1, epochs + 1):
            time.sleep(0.2)  # "training"
            loss *= per_epoch * (1 + rng.random() / math.sqrt(trainer["batch_size"]))
            print(f"epoch {epoch}/{epochs}: loss {loss:.4f}")
            run.log({"loss": loss, "epoch": epoch})  # metrics.jsonl: `launchbay metrics`, charts, sweeps
        print("result:", json.dumps({"final_loss": round(loss, 4), "dataset": trainer["dataset"]}))

        flat_run, flat_file = flatten(run.config.as_dict()), flatten(file_config)
        applied = [f"{join_path(p)}={v}" for p, v in flat_run.items() if join_path(p) in run_overrides]
        applied += [f"config.yaml:{join_path(p)}={v}" for p, v in flat_file.items() if join_path(p) in file_overrides]
        print("overrides applied:", ", ".join(applied) or "none")


if __name__ == "__main__":
    main()
