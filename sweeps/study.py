"""A sweep as an Optuna study, kept in Redis beside the queues.

Optuna's journal storage replays a log of operations; :class:`RedisJournal` keeps that log in one
Redis LIST per sweep (``{ns}:sweep:{id}:journal``, one JSON entry per operation, RPUSH is atomic)
on launchbay's own connection, so a study lives in the same Redis, under the same ACL user, the
same Sentinel failover and the same AOF as the queues. (Optuna's ``JournalRedisBackend`` would open
its own connection from a plain URL and write one key per operation.)

The optimizers: ``grid`` is Optuna's ``GridSampler``, ``random`` its ``RandomSampler``; ``bayes`` is
launchbay's Gaussian-process sampler (``gp.py``: scikit-learn's GP, expected improvement), chosen by
bench/sweep_efficiency.py against W&B's own engine (docs/sweeps.md); ``early_terminate: hyperband``
is W&B's rule (``early.py``) as an Optuna pruner, and ``median`` ``MedianPruner``. Optuna is imported
here only, when a sweep is opened.
"""

from __future__ import annotations

import json
import random
import warnings
from typing import Any, Dict, Iterable, List, Optional

import redis
from launchbay.queue_config.keys import Keys
from launchbay.sweeps import early as sweep_early
from launchbay.sweeps.spec import Param, SweepSpec

#: The trial's user attribute that names its job, once the job is written.
JOB_ATTR = "job_id"
#: ``median``: trials that must reach a step before the median prunes at it.
MEDIAN_STARTUP_TRIALS = 3
_SCALARS = (str, int, float, bool, type(None))


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _backend_base():
    from optuna.storages.journal import BaseJournalBackend

    return BaseJournalBackend


def journal_backend(conn: redis.Redis, key: str) -> Any:
    """Optuna's journal on the Redis LIST ``key`` (a class made here so Optuna is imported only when used)."""

    class RedisJournal(_backend_base()):
        def read_logs(self, log_number_from: int) -> Iterable[Dict[str, Any]]:
            return [json.loads(entry) for entry in conn.lrange(key, log_number_from, -1)]

        def append_logs(self, logs: List[Dict[str, Any]]) -> None:
            if logs:
                conn.rpush(key, *[json.dumps(log, separators=(",", ":")) for log in logs])

    return RedisJournal()


def storage(conn: redis.Redis, keys: Keys, sweep_id: str) -> Any:
    """The sweep's Optuna storage (it replays the journal on first use, then reads only what is new)."""
    optuna = _optuna()
    return optuna.storages.JournalStorage(journal_backend(conn, keys.sweep_journal(sweep_id)))


def open_study(store: Any, sweep_id: str, spec: SweepSpec, *, trials_so_far: int = 0) -> Any:
    """The study, created on first use, with the sampler and pruner ``spec`` asks for.

    A seeded sampler is seeded with ``seed + trials_so_far``: a driver that takes over a sweep
    does not replay the draws its predecessor already made.
    """
    optuna = _optuna()
    direction = "maximize" if spec.goal == "maximize" else "minimize"
    return optuna.create_study(
        storage=store,
        study_name=sweep_id,
        direction=direction,
        sampler=_sampler(optuna, spec, None if spec.seed is None else spec.seed + trials_so_far),
        pruner=_pruner(optuna, spec),
        load_if_exists=True,
    )


def load_trials(store: Any, sweep_id: str) -> List[Any]:
    """The sweep's trials (FrozenTrial), [] before the driver first made the study."""
    try:
        study_id = store.get_study_id_from_name(sweep_id)
    except KeyError:
        return []
    return store.get_all_trials(study_id, deepcopy=False)


def _sampler(optuna: Any, spec: SweepSpec, seed: Optional[int]) -> Any:
    if spec.method == "grid":

        class Grid(optuna.samplers.GridSampler):
            def after_trial(self, *_args: Any) -> None:
                """No ``study.stop()`` once every point was made: that works only inside ``optimize``,
                and the driver ends the sweep itself."""

        return Grid({p.name: choices(p) for p in spec.params}, seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # It does not read the run cap: a sweep's first 12 trials are the same whatever its cap.
    from launchbay.sweeps.gp import GPSampler

    return GPSampler(seed=seed)


def _pruner(optuna: Any, spec: SweepSpec) -> Any:
    early = spec.pruner
    if not early:
        return optuna.pruners.NopPruner()
    if early["type"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=early["min_iter"])
    return sweep_early.optuna_pruner(optuna, early, maximize=spec.goal == "maximize")


def choices(param: Param) -> List[Any]:
    """A finite parameter's values as Optuna takes them: lists and mappings as their JSON text."""
    values = param.finite_values() or []
    if all(isinstance(v, _SCALARS) for v in values):
        return values
    return [json.dumps(v, sort_keys=True) for v in values]


def distribution(param: Param) -> Any:
    """The Optuna distribution ``param`` is sampled from (random and bayes)."""
    optuna = _optuna()
    dists = optuna.distributions
    if param.kind in ("constant", "categorical"):
        return dists.CategoricalDistribution(choices(param))
    if param.is_int:
        return dists.IntDistribution(int(param.low), int(param.high))
    # q-variants are sampled over the whole range and rounded to a multiple of q for the job, as W&B does.
    return dists.FloatDistribution(float(param.low), float(param.high), log=param.log)


def job_value(param: Param, sampled: Any) -> Any:
    """What the trial's job gets for the value Optuna sampled (JSON-encoded choices decoded, q applied)."""
    if param.kind in ("constant", "categorical") and choices(param) != list(param.finite_values() or []):
        return json.loads(sampled)
    return param.to_job(sampled)


def weighted_draw(spec: SweepSpec, trial_number: int) -> Dict[str, Any]:
    """``random``: for each parameter with ``probabilities``, a value drawn by them, as Optuna holds it
    (W&B's random search draws them so; Optuna's samplers draw categories evenly). {} otherwise."""
    weighted = [p for p in spec.params if p.probabilities is not None]
    if spec.method != "random" or not weighted:
        return {}
    # A seeded sweep repeats its draws; each trial number draws afresh, also after another driver takes over.
    rng = random.Random(f"{spec.seed}:{trial_number}") if spec.seed is not None else random.SystemRandom()
    out = {}
    for param in weighted:
        value = rng.choices(param.values, weights=param.probabilities)[0]
        keys = [json.dumps(v, sort_keys=True, default=str) for v in param.distinct_values()]
        out[param.name] = choices(param)[keys.index(json.dumps(value, sort_keys=True, default=str))]
    return out


def trial_params(spec: SweepSpec, sampled: Dict[str, Any]) -> Dict[str, Any]:
    """``{parameter name as written: value the job gets}`` for one trial."""
    return {p.name: job_value(p, sampled[p.name]) for p in spec.params if p.name in sampled}
