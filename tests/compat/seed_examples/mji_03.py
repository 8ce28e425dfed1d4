from wandb.sdk import launch

run_config_overrides = launch.load_wandb_config()
