"""``method: bayes``'s Gaussian-process sampler for Optuna: scikit-learn's GP regression, expected improvement.

Each suggestion fits a GP (Matern 5/2 with a length per dimension, plus a noise term, on
standardized values) to the sweep's finished trials, then takes the point of highest expected
improvement among random points of the space and points near the best trials so far, refined
twice near the best candidates. Parameters are mapped to the unit cube: numbers linearly or by
their log (``log_uniform_values``), an integer as the interval of width 1 around it, a categorical
as one dimension per choice (one-hot). Trials that still run count as if they had returned what
the GP predicts for them ("kriging believer"), so trials suggested while others run go elsewhere.

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
_LOCAL_POINTS = 300  # around each of the best trials, and then around the best candidates
_LOCAL_SCALES = (0.15, 0.05, 0.015)
_FIT_ITERATIONS = 50


class _Encoding:
    """Maps a trial's parameters to a point of the unit cube and back."""

    def __init__(self, space: Dict[str, BaseDistribution]) -> None:
        self.names = sorted(space)
        self.space = space
        self.slices: List[slice] = []
        width = 0
        for name in self.names:
            dims = len(space[name].choices) if _one_hot(space[name]) else 1
            self.slices.append(slice(width, width + dims))
            width += dims
        self.width = width

    def _bounds(self, dist: Any) -> Any:
        pad = 0.5 * dist.step if isinstance(dist, IntDistribution) else 0.0
        low, high = dist.low - pad, dist.high + pad
        return (math.log(low), math.log(high)) if dist.log else (low, high)

    def encode(self, params: Dict[str, Any]) -> Any:
        import numpy as np

        point = np.zeros(self.width)
        for name, where in zip(self.names, self.slices):
            dist, value = self.space[name], params[name]
            if _one_hot(dist):
                point[where.start + dist.to_internal_repr(value)] = 1.0
                continue
            if isinstance(dist, CategoricalDistribution):  # numbers: their rank
                ranks = _ranks(dist)
                point[where.start] = ranks.index(dist.to_internal_repr(value)) / max(len(ranks) - 1, 1)
                continue
            low, high = self._bounds(dist)
            x = math.log(value) if dist.log else float(value)
            point[where.start] = (x - low) / (high - low)
        return point

    def decode(self, point: Any) -> Dict[str, Any]:
        params: Dict[str, Any] = {}
        for name, where in zip(self.names, self.slices):
            dist = self.space[name]
            if _one_hot(dist):
                params[name] = dist.choices[int(point[where].argmax())]
                continue
            if isinstance(dist, CategoricalDistribution):
                ranks = _ranks(dist)
                params[name] = dist.choices[
                    ranks[round(min(max(float(point[where.start]), 0.0), 1.0) * (len(ranks) - 1))]
                ]
                continue
            low, high = self._bounds(dist)
            x = low + min(max(float(point[where.start]), 0.0), 1.0) * (high - low)
            params[name] = _on_grid(dist, math.exp(x) if dist.log else x)
        return params

    def snap(self, points: Any) -> Any:
        """Each point as the parameters it decodes to would encode (integers, steps, one choice), all at once."""
        import numpy as np

        out = np.array(points, dtype=float)
        for name, where in zip(self.names, self.slices):
            dist = self.space[name]
            if _one_hot(dist):
                block = np.zeros_like(out[:, where])
                block[np.arange(len(out)), out[:, where].argmax(axis=1)] = 1.0
                out[:, where] = block
                continue
            if isinstance(dist, CategoricalDistribution):
                top = max(len(dist.choices) - 1, 1)
                out[:, where.start] = np.round(np.clip(out[:, where.start], 0.0, 1.0) * top) / top
                continue
            if not isinstance(dist, IntDistribution) and getattr(dist, "step", None) is None:
                out[:, where.start] = np.clip(out[:, where.start], 0.0, 1.0)
                continue
            low, high = self._bounds(dist)
            x = low + np.clip(out[:, where.start], 0.0, 1.0) * (high - low)
            value = np.exp(x) if dist.log else x
            value = np.clip(dist.low + np.round((value - dist.low) / dist.step) * dist.step, dist.low, dist.high)
            out[:, where.start] = ((np.log(value) if dist.log else value) - low) / (high - low)
        return out

    def random(self, rng: Any, count: int) -> Any:
        points = rng.uniform(size=(count, self.width))
        return self.snap(points)

    def near(self, rng: Any, centers: Any, count: int, scale: float) -> Any:
        import numpy as np

        points = np.repeat(centers, count, axis=0)
        points = np.clip(points + rng.normal(scale=scale, size=points.shape), 0.0, 1.0)
        return self.snap(points)


def _numbers(dist: Any) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in dist.choices)


def _one_hot(dist: Any) -> bool:
    """A categorical of anything but numbers is one dimension per choice; one of numbers (batch sizes,
    widths) is one dimension, its choices in order, so the GP can tell 128 is between 64 and 256."""
    return isinstance(dist, CategoricalDistribution) and not _numbers(dist)


def _ranks(dist: Any) -> List[int]:
    """The choices' indices, smallest number first."""
    return sorted(range(len(dist.choices)), key=lambda i: dist.choices[i])


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
        last = self._kernels.get(encoding.width)
        gp = _fit(x, y, self._rng, last)
        self._kernels[encoding.width] = gp.kernel_
        if running:  # kriging believer: they return what is predicted for them
            pending = np.array([encoding.encode(t.params) for t in running])
            x, y = np.vstack([x, pending]), np.concatenate([y, gp.predict(pending)])
            gp = _fit(x, y, self._rng, gp.kernel_, fixed=True)
        best = y[: len(done)].min()
        top = x[np.argsort(y[: len(done)])[:5]]
        candidates = [
            encoding.random(self._rng, _RANDOM_POINTS),
            encoding.near(self._rng, top, _LOCAL_POINTS // 5, 0.1),
        ]
        for scale in _LOCAL_SCALES:
            pool = np.vstack(candidates)
            leaders = pool[np.argsort(-_expected_improvement(gp, pool, best))[:3]]
            candidates.append(encoding.near(self._rng, leaders, _LOCAL_POINTS // 3, scale))
        pool = np.vstack(candidates)
        return pool[int(np.argmax(_expected_improvement(gp, pool, best)))]


def _fit(x: Any, y: Any, rng: Any, kernel: Any = None, *, fixed: bool = False) -> Any:
    """The GP on ``x, y``; its kernel's hyperparameters start at ``kernel``'s (the last fit's) and are
    kept as they are when ``fixed``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    if kernel is None:
        # One length for every dimension: with a dozen trials, a length per dimension fits noise (measured:
        # no better at 60 trials on Hartmann-6, worse at 12 on the 2-D functions); Matern 3/2: rougher than 5/2.
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=0.3, length_scale_bounds=(1e-2, 1e2), nu=1.5)
        kernel += WhiteKernel(1e-4, (1e-8, 0.5))
    gp = GaussianProcessRegressor(kernel=kernel, optimizer=None if fixed else _lbfgsb, random_state=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gp.fit(x, y)


def _lbfgsb(objective: Any, theta: Any, bounds: Any) -> Any:
    """scikit-learn's own choice (L-BFGS-B on the log marginal likelihood), with fewer iterations: it starts
    from the last suggestion's fit, which one more trial moves little."""
    from scipy.optimize import minimize

    found = minimize(objective, theta, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": _FIT_ITERATIONS})
    return found.x, found.fun


def _expected_improvement(gp: Any, points: Any, best: float) -> Any:
    import numpy as np
    from scipy.stats import norm

    mean, std = gp.predict(points, return_std=True)
    std = np.maximum(std, 1e-9)
    gain = best - mean
    z = gain / std
    return gain * norm.cdf(z) + std * norm.pdf(z)
