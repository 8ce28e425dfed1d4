"""A W&B Launch job as a W&B user writes it: the real ``wandb``, nothing of launchbay's.

It declares its run config and one config file as launch inputs the way W&B's docs show, then
prints what it ended up with on one ``RESULT`` line, so a test can read it from the job's log
(strings longer than 200 characters are shown as their length, to keep the line short).
"""

import json
import os

import wandb
import yaml
from wandb.sdk import launch

CONFIG_FILE = "wandb_env_job.yaml"
DEFAULTS = {
    "trainer": {"learning_rate": 0.1, "batch_size": 32, "private": {"key": "original"}},
    "seed": 1,
}


def shown(value):
    if isinstance(value, dict):
        return {key: shown(child) for key, child in value.items()}
    if isinstance(value, str) and len(value) > 200:
        return f"<{len(value)} characters>"
    return value


launch.manage_wandb_config(include=["trainer"], exclude=["trainer.private"])
launch.manage_config_file(CONFIG_FILE, include=["epochs", "optimizer.momentum"])

run = wandb.init(project="launchbay-compat", config=DEFAULTS)
with open(CONFIG_FILE) as handle:
    file_config = yaml.safe_load(handle)
result = {
    "config": shown(dict(run.config)),
    "file": file_config,
    "wandb_env": sorted(name for name in os.environ if name.startswith(("WANDB_CONFIG", "WANDB_LAUNCH"))),
    "mode": run.settings.mode,
}
print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
run.finish()
