"""What the sweep pages show: the list of sweeps, and one sweep as ``launchbay sweep show`` reads it
(``client.sweeps.show``) with the texts its template prints worked out once.

The charts are drawn in the browser (``static/sweep.js``) from the same dict served as JSON.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping

import redis
from launchbay.client import sweeps
from launchbay.client.sweeps import param_text, trial_value_text, value_text
from launchbay.queue_config.keys import Keys
from launchbay.sweeps.store import OPEN_STATES

#: Sweeps listed on /sweeps, newest first.
SWEEPS_SHOWN = 50


def sweep_rows(conn: redis.Redis, keys: Keys) -> List[Dict[str, Any]]:
    """One row per sweep: its summary, with the trial counts and best value as text."""
    rows = []
    for summary in sweeps.list_sweeps(conn, keys, limit=SWEEPS_SHOWN):
        best = summary.get("best")
        rows.append(
            {
                **summary,
                "metric": summary.get("metric") or {},
                "best_text": value_text(best["value"]) if best else "-",
                "trials_text": _trials_text(summary.get("ended"), summary.get("trials"), summary.get("trial_cap")),
            }
        )
    return rows


def sweep_page(conn: redis.Redis, keys: Keys, sweep_id: str) -> Dict[str, Any]:
    """``client.sweeps.show``'s dict with the page's texts added (NotFoundError for an unknown id)."""
    sweep = sweeps.show(conn, keys, sweep_id)
    trials = sweep["trials"]
    ended = sum(1 for t in trials if t["ended"])
    best = sweep["best"]
    return {
        **sweep,
        "open": sweep["state"] in {str(s) for s in OPEN_STATES},
        "trials_text": _trials_text(ended, len(trials), sweep["trial_cap"]),
        "best_text": value_text(best["value"]) if best else "",
        "best_number": next((t["number"] for t in trials if best and t["job_id"] == best["job_id"]), None),
        "best_params": [(name, param_text(best["params"].get(name))) for name in sweep["parameters"]] if best else [],
        "rows": [
            {
                **trial,
                "value_text": trial_value_text(trial),
                "param_texts": [param_text(trial["params"].get(name)) for name in sweep["parameters"]],
            }
            for trial in trials
        ],
    }


def as_json(sweep: Any) -> Any:
    """The dict with every NaN or infinity as null: browsers refuse JSON that holds them."""
    if isinstance(sweep, float):
        return sweep if math.isfinite(sweep) else None
    if isinstance(sweep, Mapping):
        return {key: as_json(value) for key, value in sweep.items()}
    if isinstance(sweep, (list, tuple)):
        return [as_json(value) for value in sweep]
    return sweep


def _trials_text(ended: Any, made: Any, cap: Any) -> str:
    """``4 ended / 6 made of 9`` (``of ∞`` for a sweep without a cap)."""
    return f"{ended or 0} ended / {made or 0} made of {cap if cap else '∞'}"
