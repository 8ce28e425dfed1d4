"""A sweep for the sweep page's tests: trials that finished and trials the median pruner stopped.

The sweep helpers live in ``tests/sweeps``; this module puts that folder on ``sys.path``. The driver
is the agents' real one; ``Runner`` plays the agents running the trials (no Docker).
"""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

_SWEEP_TESTS = Path(__file__).resolve().parents[1] / "sweeps"
if str(_SWEEP_TESTS) not in sys.path:
    sys.path.append(str(_SWEEP_TESTS))

from launchbay.client import sweeps  # noqa: E402
from launchbay.queue_config.keys import Keys  # noqa: E402
from launchbay.queue_config.lifecycle import Records  # noqa: E402
from launchbay.sweeps.driver import SweepDriver  # noqa: E402
from sweep_helpers import Runner, sweep_file, trainer_job, trial_values  # noqa: E402

LEARNING_RATES = [0.001, 0.01, 0.1]
MOMENTUMS = [0.5, 0.7]
DATASETS = ["cifar10", "cifar100"]
STEPS = 5


def curve(values: Dict[str, Any]) -> List[float]:
    """Loss by step: lowest at learning rate 0.01 and momentum 0.7, falling as the steps go on."""
    floor = 1.0 + (math.log10(values["lr"]) + 2.0) ** 2 + (values["momentum"] - 0.7) ** 2
    return [round(floor + 1.0 / (step + 1), 4) for step in range(STEPS)]


def grid_sweep(conn, tmp_path: Path, *, name: str = "lr-momentum-dataset") -> str:
    """A grid sweep over a log-spread learning rate, a momentum and a dataset (12 trials), created."""
    trainer_job(conn, tmp_path)
    path = sweep_file(tmp_path, {
        "name": name, "method": "grid", "metric": {"name": "loss", "goal": "minimize"}, "max_parallel": 12,
        "early_terminate": {"type": "median", "min_iter": 1},
        "parameters": {"trainer.learning_rate": {"values": LEARNING_RATES},
                       "config.yaml:optimizer.momentum": {"values": MOMENTUMS},
                       "trainer.dataset": {"values": DATASETS}},
    })  # fmt: skip
    sweep_id, _ = sweeps.create(path, "sweeps", conn=conn, keys=Keys())
    return sweep_id


def driver(conn) -> SweepDriver:
    """The sweep driver of agent ``agent-1``, as its agent runs it: ``pass_once`` advances every sweep."""
    return SweepDriver(conn, Keys(), "agent-1", ["sweeps"], threading.Event())


def finished_and_pruned(conn, tmp_path: Path, *, leave_running: bool = False) -> Tuple[str, Dict[str, Any]]:
    """``(sweep id, its show dict)``: the trials at learning rate 0.01 and the first trial run to the end;
    the others log three steps, worse than the median, and are pruned (all but one left running when
    ``leave_running``)."""
    sweep_id = grid_sweep(conn, tmp_path)
    agent = driver(conn)
    runner = Runner(conn, "sweeps", curve)
    records = Records(conn, Keys())
    agent.pass_once()
    queued = runner.queued()
    curves = {job_id: runner.start(job_id, 0) for job_id in queued}
    good = [queued[0]] + [j for j in queued[1:] if trial_values(records.as_json(j))["lr"] == 0.01]
    for job_id in good:
        runner.log_steps(job_id, curves[job_id], 0, STEPS)
    agent.pass_once()
    for job_id in good:
        runner.finish(job_id, curves[job_id][-1])
    agent.pass_once()
    rest = [j for j in queued if j not in good]
    kept = rest[:1] if leave_running else []
    for job_id in rest:
        runner.log_steps(job_id, curves[job_id], 0, 3)
    agent.pass_once()
    for job_id in rest:
        if job_id not in kept:
            assert runner.cancel_if_asked(job_id), f"{job_id} was not pruned"
    agent.pass_once()
    return sweep_id, sweeps.show(conn, Keys(), sweep_id)
