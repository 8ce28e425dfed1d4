"""LoRA fine-tuning job in the style of wandb/launch-jobs jobs/torchtune/: a torchtune recipe
config file is the job's input (manage_config_file), the model and dataset are run-config inputs,
and the recipe's metric logger reports loss and learning rate per step to W&B."""

import math

import wandb
import yaml
from wandb.sdk import launch

launch.manage_config_file(
    "recipe.yaml", include=["epochs", "batch_size", "optimizer"], exclude=["optimizer._component_"]
)
launch.manage_wandb_config(include=["model", "dataset"])

with open("recipe.yaml") as f:
    recipe = yaml.safe_load(f)

run = wandb.init(
    project="torchtune",
    job_type="finetune",
    config={"model": "meta-llama/Meta-Llama-3-8B", "dataset": "alpaca:v0", "recipe": recipe},
)
optimizer = recipe["optimizer"]
print(
    f"used model={run.config.model} dataset={run.config.dataset} epochs={recipe['epochs']} "
    f"lr={optimizer['lr']} optimizer={optimizer['_component_']} checkpoint_dir={recipe['checkpointer']['checkpoint_dir']}"
)

step = 0
for epoch in range(recipe["epochs"]):
    for _ in range(2):
        lr = optimizer["lr"] * 0.5 * (1 + math.cos(math.pi * step / (2 * recipe["epochs"])))
        run.log({"loss": 2.0 / (step + 1), "lr": lr, "epoch": epoch}, step=step)
        step += 1
run.finish()
