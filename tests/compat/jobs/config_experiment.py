"""config_experiment.py of W&B's "Configure experiments" page: the config comes from argparse,
and every key of it takes launch input (no manage_wandb_config call: W&B's default)."""

import argparse
import random

import wandb


def train_one_epoch(epoch, lr, bs):
    acc = 0.25 + ((epoch / 30) + (random.random() / 10))
    loss = 0.2 + (1 - ((epoch - 1) / 10 + random.random() / 5))
    return acc, loss


def main(args):
    with wandb.init(project="config_example", config=args) as run:
        lr = run.config["learning_rate"]
        bs = run.config["batch_size"]
        epochs = run.config["epochs"]
        print(f"used learning_rate={lr} batch_size={bs} epochs={epochs}")
        for epoch in range(1, epochs):
            train_acc, train_loss = train_one_epoch(epoch, lr, bs)
            run.log({"epoch": epoch, "train_acc": train_acc, "train_loss": train_loss})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-b", "--batch_size", type=int, default=32, help="Batch size")
    parser.add_argument("-e", "--epochs", type=int, default=50, help="Number of training epochs")
    parser.add_argument("-lr", "--learning_rate", type=float, default=0.001, help="Learning rate")
    main(parser.parse_args())
