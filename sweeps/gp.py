"""``method: bayes``'s Gaussian-process sampler for Optuna: scikit-learn's GP regression, expected improvement.

Each suggestion fits a GP (one Matern 5/2 length scale for every dimension, with a log-normal prior
around half the space's width, plus a noise term, on standardized values) to the sweep's finished
trials, then takes the point of highest expected improvement over the best value the GP predicts at
a finished trial, among random points of the space and points near the trials it predicts best.
Every parameter is one dimension of the unit cube: numbers linearly or by their log
(``log_uniform_values``), an integer as the interval of width 1 around it, a ``values`` list as
its choices in a row, numbers smallest first and anything else (an optimizer's name) in the order
they are listed, as W&B's engine orders them. Trials that still run count as if they had returned
what the GP predicts for them ("kriging believer"), so trials suggested while others run go elsewhere.

The first :data:`STARTUP_TRIALS` trials, and parameters outside the space every trial shares,
are Optuna's random sampling. scikit-learn (and SciPy, NumPy) are imported only when a bayes
sweep is driven.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

#: Random trials before the GP: two give it a first length scale to fit.
STARTUP_TRIALS = 2
_RANDOM_POINTS = 1000
#: Candidates near the best trials (as the GP predicts them): this many trials, this many points around each
#: at each of these distances. Random points alone fall too far apart in 6-D to get within 1% of an optimum.
_LOCAL_CENTERS = 5
_LOCAL_POINTS = 60
_LOCAL_SCALES = (0.1, 0.03, 0.01)
_FIT_ITERATIONS = 50
#: The length scale's prior (log-normal, on the unit cube): median half the width, a factor e either side
#: as one standard deviation. A dozen trials fix a length scale poorly; without it the fit swings between
#: too short (every gap looks promising) and too long (EI runs to the corners).
_LENGTH_PRIOR = (math.log(0.5), 1.0)


class _Encoding:
    """Maps a trial's parameters to a point of the unit cube (one dimension per parameter) and back."""

    def __init__(self, space: Dict[str, BaseDistribution]) -> None:
        self.names = sorted(space)
        self.space = space
        self.width = len(self.names)

    def _bounds(self, dist: Any) -> Any:
        pad = 0.5 * dist.step if isinstance(dist, IntDistribution) else 0.0
        low, high = dist.low - pad, dist.high + pad
        return (math.log(low), math.log(high)) if dist.log else (low, high)

    def encode(self, params: Dict[str, Any]) -> Any:
        import numpy as np

        point = np.zeros(self.width)
        for i, name in enumerate(self.names):
            dist, value = self.space[name], params[name]
            if isinstance(dist, CategoricalDistribution):
                order = _order(dist)
                point[i] = order.index(dist.to_internal_repr(value)) / max(len(order) - 1, 1)
                continue
            low, high = self._bounds(dist)
            x = math.log(value) if dist.log else float(value)
            point[i] = (x - low) / (high - low)
        return point

    def decode(self, point: Any) -> Dict[str, Any]:
        params: Dict[str, Any] = {}
        for i, name in enumerate(self.names):
            dist, where = self.space[name], min(max(float(point[i]), 0.0), 1.0)
            if isinstance(dist, CategoricalDistribution):
                order = _order(dist)
                params[name] = dist.choices[order[round(where * (len(order) - 1))]]
                continue
            low, high = self._bounds(dist)
            x = low + where * (high - low)
            params[name] = _on_grid(dist, math.exp(x) if dist.log else x)
        return params

    def snap(self, points: Any) -> Any:
        """Each point as the parameters it decodes to would encode (integers, steps, choices), all at once."""
        import numpy as np

        out = np.clip(np.array(points, dtype=float), 0.0, 1.0)
        for i, name in enumerate(self.names):
            dist = self.space[name]
            if isinstance(dist, CategoricalDistribution):
                top = max(len(dist.choices) - 1, 1)
                out[:, i] = np.round(out[:, i] * top) / top
                continue
            if not isinstance(dist, IntDistribution) and getattr(dist, "step", None) is None:
                continue
            low, high = self._bounds(dist)
            x = low + out[:, i] * (high - low)
            value = np.exp(x) if dist.log else x
            value = np.clip(dist.low + np.round((value - dist.low) / dist.step) * dist.step, dist.low, dist.high)
            out[:, i] = ((np.log(value) if dist.log else value) - low) / (high - low)
        return out

    def random(self, rng: Any, count: int) -> Any:
        return self.snap(rng.uniform(size=(count, self.width)))

    def near(self, rng: Any, centers: Any, count: int, scale: float) -> Any:
        import numpy as np

        points = np.repeat(centers, count, axis=0)
        return self.snap(points + rng.normal(scale=scale, size=points.shape))


def _numbers(dist: Any) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in dist.choices)


def _order(dist: Any) -> List[int]:
    """A categorical's choice indices in the order the GP places them along its dimension: numbers smallest
    first (so 128 lies between 64 and 256), anything else as listed (W&B's engine orders them so too)."""
    indices = list(range(len(dist.choices)))
    return sorted(indices, key=lambda i: dist.choices[i]) if _numbers(dist) else indices


def _on_grid(dist: Any, value: float) -> Any:
    if isinstance(dist, IntDistribution):
        steps = round((value - dist.low) / dist.step)
        return int(min(max(dist.low + steps * dist.step, dist.low), dist.high))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        steps = round((value - dist.low) / dist.step)
        return float(min(max(dist.low + steps * dist.step, dist.low), dist.high))
    return float(min(max(value, dist.low), dist.high))


class GPSampler(optuna.samplers.BaseSampler):
    """A Gaussian-process sampler (see the module's docstring); ``seed`` makes its suggestions repeatable."""

    def __init__(self, seed: Optional[int] = None, n_startup_trials: Optional[int] = None) -> None:
        import numpy as np

        self._rng = np.random.RandomState(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._startup = STARTUP_TRIALS if n_startup_trials is None else n_startup_trials
        self._space = optuna.search_space.IntersectionSearchSpace()
        self._kernels: Dict[int, Any] = {}  # the last fit's kernel, by the encoding's width

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Any, trial: FrozenTrial) -> Dict[str, BaseDistribution]:
        return {name: dist for name, dist in self._space.calculate(study).items() if not dist.single()}

    def sample_relative(self, study: Any, trial: FrozenTrial, space: Dict[str, BaseDistribution]) -> Dict[str, Any]:
        if not space:
            return {}
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        done = [t for t in trials if t.state == TrialState.COMPLETE and set(space) <= set(t.params)]
        if len(done) < self._startup:
            return {}
        running = [t for t in trials if t.state == TrialState.RUNNING and t.number != trial.number
                   and set(space) <= set(t.params)]  # fmt: skip
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        encoding = _Encoding(space)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # BLAS threads only contend at this size, and the agent's other threads need the CPU
            return encoding.decode(self._next_point(encoding, done, running, sign))

    def sample_independent(self, study: Any, trial: FrozenTrial, param_name: str, dist: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, dist)

    def _next_point(self, encoding: _Encoding, done: Sequence[FrozenTrial], running: Sequence[FrozenTrial],
                    sign: float) -> Any:  # fmt: skip
        import numpy as np

        x = np.array([encoding.encode(t.params) for t in done])
        y = np.array([sign * float(t.value) for t in done])
        y = (y - y.mean()) / (y.std() or 1.0)
        gp = _fit(x, y, self._rng, self._kernels.get(encoding.width))
        self._kernels[encoding.width] = gp.kernel_
        # The best so far as the GP sees it, not the lowest value reported: one lucky noisy report would
        # otherwise leave every point that is truly as good with no expected improvement.
        fitted = gp.predict(x)
        if running:  # kriging believer: they return what is predicted for them
            pending = np.array([encoding.encode(t.params) for t in running])
            gp = _fit(np.vstack([x, pending]), np.concatenate([y, gp.predict(pending)]), self._rng, gp.kernel_,
                      fixed=True)  # fmt: skip
        return _best_candidate(gp, encoding, self._rng, x, fitted, fitted.min())


def _best_candidate(gp: Any, encoding: _Encoding, rng: Any, x: Any, fitted: Any, best: float) -> Any:
    """The point of highest expected improvement among random points and points near the best trials."""
    import numpy as np

    top = x[np.argsort(fitted)[:_LOCAL_CENTERS]]
    pool = np.vstack([encoding.random(rng, _RANDOM_POINTS),
                      *(encoding.near(rng, top, _LOCAL_POINTS, scale) for scale in _LOCAL_SCALES)])  # fmt: skip
    return pool[int(np.argmax(_expected_improvement(gp, pool, best)))]


def _fit(x: Any, y: Any, rng: Any, kernel: Any = None, *, fixed: bool = False) -> Any:
    """The GP on ``x, y``; its kernel's hyperparameters start at ``kernel``'s (the last fit's) and are
    kept as they are when ``fixed``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    if kernel is None:
        # One length for every dimension: with a dozen trials, a length per dimension fits noise (measured:
        # no better at 60 trials on Hartmann-6, worse at 12 on the 2-D functions). Matern 5/2 rather than
        # 3/2: on the mixed space 19-20 of 20 successes at 60 trials against 12-13 (docs/sweeps.md).
        length = math.exp(_LENGTH_PRIOR[0])
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=length, length_scale_bounds=(1e-2, 1e2), nu=2.5)
        kernel += WhiteKernel(1e-4, (1e-8, 0.5))
    gp = GaussianProcessRegressor(kernel=kernel, optimizer=None if fixed else _map_fit, random_state=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gp.fit(x, y)


def _map_fit(objective: Any, theta: Any, bounds: Any) -> Any:
    """scikit-learn's own choice (L-BFGS-B on the log marginal likelihood) with the length scale's prior added
    (a maximum a posteriori fit), and fewer iterations: it starts from the last suggestion's fit, which one
    more trial moves little. ``theta`` is the kernel's log-hyperparameters: amplitude, length, noise."""
    from scipy.optimize import minimize

    mean, sd = _LENGTH_PRIOR

    def penalized(theta: Any) -> Any:
        value, grad = objective(theta)
        grad = grad.copy()
        grad[1] += (theta[1] - mean) / sd**2
        return value + 0.5 * ((theta[1] - mean) / sd) ** 2, grad

    found = minimize(penalized, theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": _FIT_ITERATIONS})
    return found.x, found.fun


def _expected_improvement(gp: Any, points: Any, best: float) -> Any:
    import numpy as np
    from scipy.stats import norm

    mean, std = gp.predict(points, return_std=True)
    std = np.maximum(std, 1e-9)
    gain = best - mean
    z = gain / std
    return gain * norm.cdf(z) + std * norm.pdf(z)
