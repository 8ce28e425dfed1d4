import yaml
import wandb
from wandb.sdk import launch

# Launch SDK の利用に必須
wandb.require("core")

launch.manage_config_file("config.yaml")

with open("config.yaml", "r") as f:
    config = yaml.safe_load(f)

with wandb.init(config=config):
    # など
    pass
