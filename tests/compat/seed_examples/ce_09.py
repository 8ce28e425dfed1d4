import wandb

# config-defaults.yaml をカスタム値で上書き
with wandb.init(config={"epochs": 200, "batch_size": 64}) as run:
    ...
