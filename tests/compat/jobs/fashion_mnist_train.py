"""Fashion-MNIST training job (modelled on wandb/launch-jobs jobs/fashion_mnist_train/job.py).

The model is replaced by a loss that decays with the learning rate, so the job runs anywhere.
"""

import argparse
import math

import wandb
from wandb.sdk import launch


def train(project, entity):
    run = wandb.init(
        project=project,
        entity=entity,
        config={"epochs": 10, "learning_rate": 0.001, "steps_per_epoch": 10},
    )
    launch.manage_wandb_config(include=["epochs", "learning_rate"])

    train_config = run.config
    epochs = train_config.get("epochs", 10)
    learning_rate = train_config.get("learning_rate", 0.001)
    steps_per_epoch = train_config.get("steps_per_epoch", 10)
    print(f"used epochs={epochs} learning_rate={learning_rate} steps_per_epoch={steps_per_epoch}")

    for epoch in range(epochs):
        loss = math.exp(-learning_rate * steps_per_epoch * (epoch + 1))
        accuracy = 1.0 - loss / 2
        wandb.log({"epoch": epoch + 1, "loss": loss, "sparse_categorical_accuracy": accuracy})

    wandb.finish()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--entity", "-e", type=str, default=None)
    parser.add_argument("--project", "-p", type=str, default=None)
    args = parser.parse_args()
    train(**vars(args))


if __name__ == "__main__":
    main()
