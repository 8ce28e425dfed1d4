"""One benchmark sweep, driven the same way for every engine: launchbay's study in Redis, or W&B's engine.

An engine session answers ``ask() -> (handle, params)`` and takes ``tell(handle, value)``.
:func:`run_sweep` keeps ``parallel`` trials open: it asks while fewer are open and trials are
left, then ends one open trial (picked by the seeded generator, as trials of unequal length end
in any order), so with ``parallel`` 4 every suggestion after the first four is made while three
trials still run. Each trial's report is the function's value at its parameters plus the
function's noise (both engines see the same noise for the same seed and trial number).

- ``launchbay-bayes`` / ``launchbay-random``: the sweep driver's own calls on the driver's own
  storage: ``sweep_study.open_study`` over the Redis journal, ``study.ask`` with the driver's
  distributions, the job id noted on the trial, ``study.tell`` with the value; the study is
  re-read (``get_trials``) before each suggestion, as each driver pass does;
- ``wandb-bayes``: W&B's engine (PyPI ``sweeps``, what ``wandb sweep``'s controller runs):
  ``sweeps.next_run(config, runs)`` with every run so far as ``SweepRun`` (finished with its
  ``summary_metrics``, or ``running`` with no metric, as W&B's controller passes them); its
  random draws come from numpy's global generator, seeded per sweep.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

from sweep_functions import Function, Params

METRIC = {"name": "loss", "goal": "minimize"}


@dataclass
class Outcome:
    """One sweep: per trial in the order suggested, what it reported and its true value; seconds per suggestion."""

    reported: List[float] = field(default_factory=list)
    true: List[float] = field(default_factory=list)
    suggest_s: List[float] = field(default_factory=list)

    def best_true(self) -> float:
        """The true value of the trial the sweep reports as best (the lowest reported)."""
        return self.true[min(range(len(self.reported)), key=self.reported.__getitem__)]


def run_sweep(session: Any, fn: Function, cap: int, parallel: int, seed: int) -> Outcome:
    # Two generators, neither drawn from by the cap: a 12-trial sweep is the first 12 trials of a
    # 60-trial one whenever the engine does not read the cap (W&B's does not).
    order, noise_rng = random.Random(f"{fn.name}/{seed}/order"), random.Random(f"{fn.name}/{seed}/noise")
    noise = [noise_rng.gauss(0.0, fn.noise) if fn.noise else 0.0 for _ in range(cap)]
    out = Outcome(reported=[0.0] * cap, true=[0.0] * cap)
    open_trials: List[Tuple[int, Any, Params]] = []
    made = 0
    while made < cap or open_trials:
        while made < cap and len(open_trials) < parallel:
            began = time.perf_counter()
            handle, params = session.ask()
            out.suggest_s.append(time.perf_counter() - began)
            open_trials.append((made, handle, params))
            made += 1
        number, handle, params = open_trials.pop(order.randrange(len(open_trials)))
        out.true[number] = fn.value(params)
        out.reported[number] = out.true[number] + noise[number]
        session.tell(handle, out.reported[number])
    return out


class LaunchbaySession:
    """A launchbay sweep's study, asked and told as the agent's sweep driver does."""

    def __init__(self, conn: Any, method: str, fn: Function, cap: int, parallel: int, seed: int, tag: str) -> None:
        from launchbay.queue_config.keys import Keys
        from launchbay.sweeps import study as sweep_study
        from launchbay.sweeps.spec import parse_sweep

        self.sweep_study = sweep_study
        body = {"method": method, "metric": METRIC, "parameters": fn.parameters, "run_cap": cap,
                "max_parallel": parallel, "seed": seed}  # fmt: skip
        self.spec = parse_sweep(body)
        self.sweep_id = f"bench-{tag}-{method}-{fn.name}-{cap}-{parallel}-{seed}"
        keys = Keys()
        conn.delete(keys.sweep_journal(self.sweep_id))
        store = sweep_study.storage(conn, keys, self.sweep_id)
        self.study = sweep_study.open_study(store, self.sweep_id, self.spec)
        self.distributions = {p.name: sweep_study.distribution(p) for p in self.spec.params}

    def ask(self) -> Tuple[Any, Params]:
        self.study.get_trials(deepcopy=False)
        trial = self.study.ask(self.distributions)
        trial.set_user_attr(self.sweep_study.JOB_ATTR, f"{self.sweep_id}-{trial.number}")
        return trial.number, self.sweep_study.trial_params(self.spec, trial.params)

    def tell(self, number: int, value: float) -> None:
        from optuna.trial import TrialState

        self.study.tell(number, value, state=TrialState.COMPLETE, skip_if_finished=True)


class WandbSession:
    """W&B's engine, given every run of the sweep on each suggestion, as W&B's sweep controller does."""

    def __init__(self, fn: Function, seed: int) -> None:
        import numpy as np

        self.sweeps, self.runs = wandb_sweeps(), []
        self.config = {"method": "bayes", "metric": METRIC, "parameters": fn.parameters}
        np.random.seed(seed)

    def ask(self) -> Tuple[Any, Params]:
        run = self.sweeps.next_run(self.config, self.runs)
        run.name, run.state = f"run-{len(self.runs)}", self.sweeps.RunState.running
        self.runs.append(run)
        return run, {name: _plain(item["value"]) for name, item in run.config.items()}

    def tell(self, run: Any, value: float) -> None:
        run.state, run.summary_metrics = self.sweeps.RunState.finished, {METRIC["name"]: value}


def _plain(value: Any) -> Any:
    """A numpy scalar (W&B's engine suggests them) as Python's: values computed from it would be numpy's too,
    and the benchmark's JSON cannot hold them."""
    return value.item() if hasattr(value, "item") else value


def wandb_sweeps() -> Any:
    """W&B's ``sweeps`` package: bench/sweeps.py (the turnaround figure) has its name on the script's path."""
    import importlib
    import sys

    bench = str(Path(__file__).resolve().parent)
    saved, shadow = sys.path[:], sys.modules.pop("sweeps", None)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != bench]
    try:
        return importlib.import_module("sweeps")
    finally:
        sys.path[:] = saved
        if shadow is not None and not hasattr(shadow, "next_run"):
            sys.modules["sweeps_turnaround"] = shadow


ENGINES = ("launchbay-bayes", "wandb-bayes", "launchbay-random")


def session(engine: str, conn: Any, fn: Function, cap: int, parallel: int, seed: int, tag: str = "") -> Any:
    if engine == "wandb-bayes":
        return WandbSession(fn, seed)
    method = engine.split("-", 1)[1]
    return LaunchbaySession(conn, method, fn, cap, parallel, seed, tag)


def one(engine: str, conn: Any, fn: Function, cap: int, parallel: int, seed: int, tag: str = "") -> Dict[str, Any]:
    """One sweep, as the JSON the benchmark keeps: per trial its true and reported values, and the suggestion times."""
    out = run_sweep(session(engine, conn, fn, cap, parallel, seed, tag), fn, cap, parallel, seed)
    return {"true": out.true, "reported": out.reported, "suggest_ms": [round(1000 * s, 3) for s in out.suggest_s]}
