"""A W&B training job as a W&B user writes it: the real ``wandb``, nothing of launchbay's.

It minimizes nothing itself: its loss is a known function of the launch value ``x``,
``(x - 3)^2 + 1 / (step + 1)``, so a sweep over ``x`` has a known best value (3). It logs ``steps``
steps at once (enough that W&B's writer, which writes its run file 32 KiB at a time, puts them on
disk while the job runs), sets a summary value, then holds ``hold_s`` seconds before it finishes.
"""

import time

import wandb

run = wandb.init(project="launchbay-metrics", config={"x": 0.0, "steps": 400, "hold_s": 0})
x, steps = float(run.config["x"]), int(run.config["steps"])
for step in range(steps):
    wandb.log({"loss": (x - 3) ** 2 + 1.0 / (step + 1), "train": {"acc": step / steps}})
run.summary["objective"] = (x - 3) ** 2
time.sleep(float(run.config["hold_s"]))
run.finish()
