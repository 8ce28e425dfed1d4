import wandb

# config 用の辞書オブジェクトを定義
config = {
    "hidden_layer_sizes": [32, 64],
    "kernel_sizes": [3],
    "activation": "ReLU",
    "pool_sizes": [2],
    "dropout": 0.5,
    "num_classes": 10,
}

# W&B を初期化するときに config の辞書を渡す
with wandb.init(project="config_example", config=config) as run:
    # W&B を初期化した後に config を更新
    run.config["dropout"] = 0.2
    run.config.epochs = 4
    run.config["batch_size"] = 32
