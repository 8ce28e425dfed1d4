"""The trainer of W&B's "Manage job inputs" page: run-config inputs with include/exclude and the
page's JSON schema (with the comma its example lacks)."""

import wandb
from wandb.sdk import launch

wandb.require("core")

config = {
    "trainer": {
        "learning_rate": 0.01,
        "batch_size": 16,
        "model": "resnet",
        "dataset": "cifar10",
        "private": {"key": "value"},
    },
    "seed": 42,
}

schema = {
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

with wandb.init(project="launch-docs", config=config) as run:
    launch.manage_wandb_config(include=["seed", "trainer"], exclude=["trainer.private"], schema=schema)
    trainer = run.config["trainer"]
    print(
        f"used seed={run.config['seed']} learning_rate={trainer['learning_rate']} "
        f"batch_size={trainer['batch_size']} dataset={trainer['dataset']} private={trainer['private']['key']}"
    )
    for step in range(3):
        run.log({"train/loss": 1.0 / (1 + step * trainer["learning_rate"] * trainer["batch_size"])})
    run.summary["dataset"] = trainer["dataset"]
