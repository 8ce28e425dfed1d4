"""A sweep's ``early_terminate``: W&B's hyperband (its rungs, its rule) and launchbay's median.

W&B's engine (wandb/sweeps ``src/sweeps/hyperband_stopping.py``) has one set of rungs ("bands"),
not Optuna's brackets. With ``max_iter`` and ``s``: ``max_iter / eta**i`` for ``i`` in ``1..s``,
each as an int, those below 1 left out. With ``min_iter``: ``min_iter * eta**k``. At each band
``b``, the threshold is the value at the ``b``-th logged step that the best ``1/eta`` of all trials
that reached it beat (``sorted(values)[int(len / eta)]``); a running trial past a band is stopped
when its best value so far (``strict: true``: its value at that band) is worse. Pure but for
:func:`optuna_pruner`, which wraps the rule for the driver's study.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

PRUNERS = ("hyperband", "median")
_HYPERBAND_KEYS = frozenset({"type", "min_iter", "max_iter", "s", "eta", "strict"})
_MEDIAN_KEYS = frozenset({"type", "min_iter"})
#: No rung past this many steps: W&B lists 100 of ``min_iter * eta**k``, which overflow for a large eta.
MAX_BAND = 2**31


def parse_early_terminate(early: Any, problems: List[str]) -> Optional[Dict[str, Any]]:
    """``{"type", "min_iter", "max_iter", "eta", "s", "strict", "bands"}``, or None; problems appended."""
    if early is None:
        return None
    if not isinstance(early, Mapping) or early.get("type") not in PRUNERS:
        problems.append(f"early_terminate needs type: {' or '.join(PRUNERS)}")
        return None
    allowed = _HYPERBAND_KEYS if early["type"] == "hyperband" else _MEDIAN_KEYS
    problems += [f"early_terminate: unknown field {k!r}" for k in sorted(set(map(str, early)) - allowed)]
    out = {"type": early["type"], "eta": early.get("eta", 3), "strict": early.get("strict", False)}
    for key in ("min_iter", "max_iter", "s"):
        out[key] = _whole(early.get(key), f"early_terminate {key}", problems)
    if not isinstance(out["eta"], (int, float)) or isinstance(out["eta"], bool) or not out["eta"] > 1:
        problems.append(f"early_terminate eta {out['eta']!r} must be a number above 1")
        return None
    if not isinstance(out["strict"], bool):
        problems.append(f"early_terminate strict {out['strict']!r} must be true or false")
    if out["type"] == "median":
        out["min_iter"] = out["min_iter"] or 1
        return out
    if out["min_iter"] is None and (out["max_iter"] is None or out["s"] is None):
        problems.append("early_terminate hyperband needs min_iter, or max_iter and s (as W&B's does)")
        return None
    out["bands"] = hyperband_bands(out["min_iter"], out["max_iter"], out["s"], out["eta"])
    if not out["bands"]:
        problems.append(f"early_terminate: max_iter {out['max_iter']}, s {out['s']}, eta {out['eta']} make no rung "
                        "(max_iter / eta is below 1); raise max_iter or lower eta")  # fmt: skip
    return out


def _whole(value: Any, what: str, problems: List[str]) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1 or value != int(value):
        problems.append(f"{what} {value!r} must be a positive integer")
        return None
    return int(value)


def hyperband_bands(min_iter: Optional[int], max_iter: Optional[int], s: Optional[int], eta: float) -> List[int]:
    """W&B's rungs: the numbers of logged steps at which trials are compared."""
    if max_iter is not None and s is not None:  # W&B's engine takes this branch whenever max_iter is given
        bands, band = [], float(max_iter)
        for _ in range(s):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
        return sorted(bands)
    # min_iter (with max_iter and no s W&B's engine fails on the missing s: here max_iter caps the rungs)
    limit = min(max_iter or MAX_BAND, MAX_BAND)
    bands, band = [], float(min_iter or 1)
    while band <= limit and len(bands) < 100:
        bands.append(int(band))
        band *= eta
    return bands


def thresholds(bands: Sequence[int], histories: Sequence[Sequence[float]], eta: float) -> List[float]:
    """Per band, the value a trial must not be worse than (histories as minimized values, in step order)."""
    out = []
    for band in bands:
        values = sorted(h[band - 1] for h in histories if len(h) >= band)
        out.append(values[int(len(values) / eta)] if values else math.inf)
    return out


def should_stop(history: Sequence[float], bands: Sequence[int], limits: Sequence[float], strict: bool) -> bool:
    """W&B's rule for one running trial: its last band reached decides (values minimized)."""
    reached = [(band, limit) for band, limit in zip(bands, limits) if band <= len(history)]
    if not reached:
        return False
    band, limit = reached[-1]
    return (history[band - 1] if strict else min(history)) > limit


def optuna_pruner(optuna: Any, early: Mapping[str, Any], maximize: bool) -> Any:
    """An Optuna pruner that applies W&B's hyperband rule to the study's intermediate values."""
    sign = -1.0 if maximize else 1.0

    def history(trial: Any) -> List[float]:
        return [sign * value for _, value in sorted(trial.intermediate_values.items())]

    class WandbHyperband(optuna.pruners.BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            histories = [h for h in (history(t) for t in study.get_trials(deepcopy=False)) if h]
            limits = thresholds(early["bands"], histories, early["eta"])
            return should_stop(history(trial), early["bands"], limits, bool(early["strict"]))

    return WandbHyperband()
