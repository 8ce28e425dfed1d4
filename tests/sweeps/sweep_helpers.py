"""Helpers for the sweep tests (no tests here): a job whose inputs are recorded, and a stand-in runner.

The runner plays the agents' part for tests of the driver alone: it takes the sweep's queued trial
jobs, "runs" each (metrics stream entries by step, then the end with a summary), through the same
lifecycle functions an agent uses. The driver under test is the real one (sweeps/driver.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import yaml
from launchbay.queue_config import lifecycle
from launchbay.queue_config.job import Outcome, Reason, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore

from launchbay.text import as_text

#: What examples/trainer's train.py records (its manage_config and manage_config_file calls).
TRAINER_INPUTS: Dict[str, Any] = {
    "run_config": {
        "include": ["seed", "trainer"],
        "exclude": ["trainer.private"],
        "types": {
            "seed": "int",
            "trainer": {
                "learning_rate": "float",
                "batch_size": "int",
                "model": "str",
                "dataset": "str",
                "private": {"key": "str"},
            },
        },
        "schema": {
            "type": "object",
            "properties": {
                "seed": {"type": "integer"},
                "trainer": {
                    "type": "object",
                    "properties": {
                        "learning_rate": {"type": "number", "exclusiveMinimum": 0},
                        "batch_size": {"type": "integer", "minimum": 1, "maximum": 256},
                        "dataset": {"type": "string", "enum": ["cifar10", "cifar100"]},
                    },
                },
            },
        },
    },
    "files": {
        "config.yaml": {
            "include": ["epochs", "optimizer"],
            "exclude": ["optimizer.name"],
            "types": {"epochs": "int", "optimizer": {"name": "str", "momentum": "float", "weight_decay": "float"}},
            "schema": {
                "type": "object",
                "properties": {
                    "epochs": {"type": "integer", "minimum": 1, "maximum": 100},
                    "optimizer": {
                        "type": "object",
                        "properties": {
                            "momentum": {"type": "number", "minimum": 0, "maximum": 1},
                            "weight_decay": {"type": "number", "minimum": 0},
                        },
                    },
                },
            },
        }
    },
}


def trainer_job(conn, tmp_path: Path, queue: str = "sweeps", *, image: str = "launchbay-test:fake",
                command: Optional[List[str]] = None, name: str = "trainer") -> Path:  # fmt: skip
    """A queue, a job spec file for ``name`` and the trainer's inputs recorded for it; returns the spec's path."""
    QueueStore(conn, Keys()).apply(QueueConfig(name=queue))
    QueueStore(conn, Keys()).record_inputs(name, TRAINER_INPUTS, "seed-run")
    spec = {"name": name, "image": image, "config": {"seed": 1, "trainer": {"learning_rate": 0.01, "batch_size": 32}}}
    if command:
        spec["command"] = command
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep_file(tmp_path: Path, body: Dict[str, Any], name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"job": "job.yaml", **body}, sort_keys=False))
    return path


def trial_values(record: Dict[str, Any]) -> Dict[str, Any]:
    """``{"lr", "momentum", "decay", "epochs"}`` as a trial's job got them."""
    run, file = record.get("run_config") or {}, (record.get("file_overrides") or {}).get("config.yaml", {})
    optimizer = file.get("optimizer", {})
    return {"lr": run.get("trainer", {}).get("learning_rate"), "momentum": optimizer.get("momentum"),
            "decay": optimizer.get("weight_decay"), "epochs": file.get("epochs")}  # fmt: skip


def bowl(values: Dict[str, Any]) -> float:
    """The known function a bayes sweep is tested on: 1.0 at lr 0.01 and momentum 0.7."""
    return 1.0 + (math.log10(values["lr"]) + 2.0) ** 2 + (values["momentum"] - 0.7) ** 2


class Runner:
    """Runs the sweep's queued trials by hand: ``curve(values) -> [metric per step]``; the last is the summary."""

    def __init__(self, conn, queue: str, curve: Callable[[Dict[str, Any]], List[float]], metric: str = "loss"):
        self.conn, self.queue, self.curve, self.metric = conn, queue, curve, metric
        self.keys = Keys()
        self.records = Records(conn, self.keys)
        self.started: List[str] = []

    def queued(self) -> List[str]:
        ids = [as_text(i) for i in self.conn.zrange(self.keys.queue_jobs(self.queue), 0, -1)]
        return [i for i in ids if self.records.state(i) == State.QUEUED]

    def start(self, job_id: str, steps: Optional[int] = None) -> List[float]:
        """Mark it running and log its first ``steps`` steps (all by default); returns the whole curve."""
        record = self.records.as_json(job_id)
        assert self.records.transition(job_id, State.RUNNING, allowed_from=[State.QUEUED])
        self.started.append(job_id)
        curve = self.curve(trial_values(record))
        self.log_steps(job_id, curve, 0, len(curve) if steps is None else steps)
        return curve

    def log_steps(self, job_id: str, curve: List[float], first: int, last: int) -> None:
        for step in range(first, last):
            entry = {"_step": step, self.metric: curve[step]}
            self.conn.xadd(self.keys.job_metrics(job_id), {"m": json.dumps(entry)})

    def finish(self, job_id: str, value: float) -> bool:
        outcome = Outcome(State.FINISHED, None, 0, "exited 0")
        return lifecycle.end(self.records, job_id, outcome, summary={self.metric: value})

    def cancel_if_asked(self, job_id: str) -> bool:
        """End the job as its agent would once a cancel was asked; True when one was."""
        if not lifecycle.cancel_was_requested(self.records, job_id):
            return False
        asked = lifecycle.cancel_reason(self.records, job_id)
        reason, message = asked or (Reason.CANCELED_BY_USER, "canceled by user")
        lifecycle.end(self.records, job_id, Outcome(State.CANCELED, reason, None, message))
        return True

    def run_all_queued(self) -> int:
        done = 0
        for job_id in self.queued():
            curve = self.start(job_id)
            self.finish(job_id, curve[-1])
            done += 1
        return done


def states(conn, job_ids: Iterable[str]) -> List[str]:
    records = Records(conn, Keys())
    return [str(records.state(j)) for j in job_ids]


def assert_bad_trials_pruned(view):
    """Every bad trial made after the first good one is pruned; the best never is.

    One bracket (``max_iter`` < ``min_iter`` * ``eta``): which trials compete does not hang on the
    bracket Optuna hashes each trial into by the sweep's id. Trials run one at a time, in number order.
    """
    trials = sorted(view["trials"], key=lambda t: t["number"])
    first_good = next(t["number"] for t in trials if t["params"]["trainer.learning_rate"] < 0.5)
    late_bad = [t for t in trials if t["number"] > first_good and t["params"]["trainer.learning_rate"] >= 0.5]
    assert late_bad and all(t["state"] == "canceled" for t in late_bad), trials
    assert next(t for t in trials if t["params"]["trainer.learning_rate"] == 0.01)["state"] == "finished"
