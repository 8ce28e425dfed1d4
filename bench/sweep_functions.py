"""The test functions the sweep-efficiency benchmark minimizes, each with its search space, optimum and range.

Every function is written as a sweep would see it: ``parameters`` in W&B's SWEEP.yaml form (what
launchbay and W&B's engine both read), ``value(params)`` the true value at a trial's parameters,
``noise`` the standard deviation added to what the trial reports. A sweep succeeds when the trial
it reports as best (lowest reported value) is, in truth, within 1% of the function's range above
its optimum.

- ``branin``: Branin-Hoo, 2-D, smooth, three global minima (0.397887);
- ``loglr``: a learning rate on a log scale (1e-5..1) and a momentum, the optimal learning rate
  depending on the momentum (0 at lr 1e-2, momentum 0.7);
- ``hartmann6``: Hartmann, 6-D on the unit cube, one global minimum (-3.32237) among local ones;
- ``mixed``: optimizer (categorical), layers (integer), width (categorical of integers), learning
  rate (log) and dropout; the best learning rate depends on the optimizer (0 at adam, 4 layers,
  width 128, lr 1e-3, dropout 0.2);
- ``branin_noisy``: Branin, each report with Gaussian noise of 0.5% of its range.

The constants of Branin and Hartmann-6 are those of Surjanovic & Bingham, "Virtual Library of
Simulation Experiments" (https://www.sfu.ca/~ssurjano/optimization.html).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List

Params = Dict[str, Any]


@dataclass
class Function:
    name: str
    parameters: Dict[str, Any]
    value: Callable[[Params], float]
    optimum: float
    worst: float  # the largest value on the space (exact, or from a dense grid / sample: see each)
    noise: float = 0.0

    @property
    def range(self) -> float:
        return self.worst - self.optimum

    def success(self, best_true: float) -> bool:
        return best_true <= self.optimum + 0.01 * self.range

    def report(self, params: Params, rng: random.Random) -> float:
        """What a trial at ``params`` reports: the true value plus this function's noise."""
        true = self.value(params)
        return true + (rng.gauss(0.0, self.noise) if self.noise else 0.0)


def branin(p: Params) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def loglr(p: Params) -> float:
    u, m = math.log10(p["lr"]), p["momentum"]
    return (u + 2 + 1.5 * (m - 0.7)) ** 2 + 2 * (m - 0.7) ** 2


_ALPHA = [1.0, 1.2, 3.0, 3.2]
_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
_P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]


def hartmann6(p: Params) -> float:
    x = [p[f"x{i}"] for i in range(1, 7)]
    return -sum(
        alpha * math.exp(-sum(a * (xi - pi) ** 2 for a, xi, pi in zip(row, x, prow)))
        for alpha, row, prow in zip(_ALPHA, _A, _P)
    )


_OPTIMIZERS = {"sgd": (0.6, -1.5), "momentum": (0.3, -2.0), "adam": (0.0, -3.0)}  # base loss, best log10 lr


def mixed(p: Params) -> float:
    base, best_u = _OPTIMIZERS[p["optimizer"]]
    depth, width = p["layers"] - 4, math.log2(p["width"]) - 7
    return (
        base
        + 0.5 * (math.log10(p["lr"]) - best_u) ** 2
        + 0.05 * depth**2
        + 0.1 * width**2
        + 0.03 * depth * width
        + 2 * (p["dropout"] - 0.2) ** 2
    )


def _grid_max(value: Callable[[Params], float], axes: Dict[str, List[Any]]) -> float:
    names = list(axes)
    return max(value(dict(zip(names, point))) for point in itertools.product(*axes.values()))


def _lin(low: float, high: float, n: int) -> List[float]:
    return [low + (high - low) * i / (n - 1) for i in range(n)]


def _hartmann6_max() -> float:
    """Hartmann-6 is negative everywhere; its largest value from 20,000 seeded uniform points."""
    rng = random.Random(0)
    return max(hartmann6({f"x{i}": rng.random() for i in range(1, 7)}) for _ in range(20_000))


def functions() -> Dict[str, Function]:
    unit = {"min": 0.0, "max": 1.0}
    branin_space = {"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}}
    branin_max = _grid_max(branin, {"x1": _lin(-5, 10, 301), "x2": _lin(0, 15, 301)})
    loglr_space = {
        "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1.0},
        "momentum": {"min": 0.0, "max": 0.99},
    }
    lrs = [10 ** (-5 + 5 * i / 100) for i in range(101)]
    mixed_space = {
        "optimizer": {"values": list(_OPTIMIZERS)},
        "layers": {"distribution": "int_uniform", "min": 1, "max": 8},
        "width": {"values": [32, 64, 128, 256, 512]},
        "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
        "dropout": {"min": 0.0, "max": 0.5},
    }
    mixed_axes = {**{k: v.get("values") for k, v in mixed_space.items() if "values" in v}, "layers": list(range(1, 9))}
    # convex in lr and dropout, so the largest value is at their bounds
    mixed_max = _grid_max(mixed, {**mixed_axes, "lr": [1e-5, 1e-1], "dropout": [0.0, 0.5]})
    return {
        "branin": Function("branin", branin_space, branin, 0.397887, branin_max),
        "loglr": Function("loglr", loglr_space, loglr, 0.0, _grid_max(loglr, {"lr": lrs, "momentum": _lin(0, 0.99, 100)})),
        "hartmann6": Function("hartmann6", {f"x{i}": dict(unit) for i in range(1, 7)}, hartmann6, -3.32237, _hartmann6_max()),
        "mixed": Function("mixed", mixed_space, mixed, 0.0, mixed_max),
        "branin_noisy": Function("branin_noisy", branin_space, branin, 0.397887, branin_max, 0.005 * (branin_max - 0.397887)),
    }  # fmt: skip
