"""A sweep's configuration (SWEEP.yaml), read as W&B's sweep configuration format where it can be.

```yaml
method: bayes                # grid | random | bayes
metric: {name: loss, goal: minimize, target: 0.05}
parameters:
  trainer.learning_rate: {min: 0.0001, max: 0.1, distribution: log_uniform_values}
  config.yaml:optimizer.momentum: {values: [0.8, 0.9, 0.95]}
early_terminate: {type: hyperband, min_iter: 3, eta: 3}
run_cap: 20
max_parallel: 4              # launchbay's: trials queued or running at once
job: examples/trainer/job.yaml   # launchbay's: a job spec file, or the name of a job that ran
```

A parameter is a run-config key path (``trainer.lr``, ``\\.`` for a dot inside a key; W&B's nested
``trainer: {parameters: {lr: ...}}`` is the same key) or a config-file key
(``config.yaml:optimizer.momentum``): the syntax of ``--set`` and ``--file-set``. Its distribution
is read in ``params.py``. W&B's sweep engine (wandb/sweeps) is the reference: what its
validator refuses is refused here, what it accepts is accepted or refused with one line saying why,
and keys that mean nothing on launchbay (``controller``, ``scheduler``, ``apiVersion``, ``kind``,
``image_uri``) are accepted with a note. Pure: no Redis, no Optuna (``sweep_study.py`` maps this to it).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from launchbay.sweeps.early import parse_early_terminate
from launchbay.sweeps.params import MAX_GRID, Param, parse_param, split_name

from launchbay.errors import ValidationError

__all__ = ["MAX_GRID", "Param", "SweepSpec", "parse_param", "parse_sweep", "problem_lines", "split_name"]

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
IMPUTES = ("latest", "best", "worst")
#: The most trials any sweep makes (``run_cap``): its study lives in Redis and is replayed by readers.
MAX_RUN_CAP = 10_000
#: SWEEP.yaml as JSON, at most: the sweep hash is read by every agent of its queue and by `sweep list`.
MAX_CONFIG_BYTES = 256 << 10
DEFAULT_MAX_PARALLEL = 4
DEFAULT_RUN_CAP = 100  # a random or bayes sweep without run_cap stops here
#: W&B's keys that mean nothing here (its controller, its launch scheduler, its manifest header, its image).
IGNORED_KEYS = ("controller", "scheduler", "apiVersion", "kind", "image_uri")
_TOP_KEYS = frozenset(
    {"method", "metric", "parameters", "early_terminate", "run_cap", "max_parallel", "job", "name", "description",
     "seed", "resources", "priority", "max_runtime", "program", "command", "project", "entity", *IGNORED_KEYS}
)  # fmt: skip
_METRIC_KEYS = frozenset({"name", "goal", "target", "impute", "impute_while_running"})
#: W&B's schema's ``propertyNames`` for a parameter (its name at each level of nested ``parameters:``).
_WANDB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class SweepSpec:
    method: str
    params: Tuple[Param, ...]
    metric_name: Optional[str] = None
    goal: str = "minimize"
    pruner: Optional[Dict[str, Any]] = None  # {"type", "min_iter", "max_iter", "eta", "s", "strict", "bands"}
    run_cap: Optional[int] = None
    max_parallel: int = DEFAULT_MAX_PARALLEL
    job: Optional[str] = None
    seed: Optional[int] = None
    name: Optional[str] = None
    launch: Dict[str, Any] = field(default_factory=dict)  # resources, priority, max_runtime for each trial
    target: Optional[float] = None  # metric.target: no new trial once a trial's value reaches it
    notes: Tuple[str, ...] = ()  # what was accepted but means nothing here (printed on stderr by `sweep create`)

    def grid_size(self) -> Optional[int]:
        """The number of combinations, counted (never listed); None unless the method is grid."""
        if self.method != "grid":
            return None
        return math.prod(p.size() or 0 for p in self.params)

    def trial_cap(self) -> int:
        """How many trials the sweep makes at most."""
        size = self.grid_size()
        caps = [c for c in (size, self.run_cap) if c is not None]
        return min(caps) if caps else DEFAULT_RUN_CAP

    def reached(self, value: Optional[float]) -> bool:
        """Whether a trial's ``value`` reaches ``metric.target`` (at or below it when minimizing)."""
        if self.target is None or value is None:
            return False
        return value <= self.target if self.goal == "minimize" else value >= self.target


def parse_sweep(data: Any, *, source: str = "sweep") -> SweepSpec:
    """The sweep in ``data`` (SWEEP.yaml's mapping); ValidationError naming every problem, one per line."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"{source}: expected a mapping (method, metric, parameters, ...)")
    _check_size(data, source)
    problems: List[str] = []
    problems += [f"unknown field {k!r}" for k in sorted(set(map(str, data)) - _TOP_KEYS)]
    problems += _ignored_key_problems(data)
    method = data.get("method")
    if method == "custom":
        problems.append("method custom is W&B's hook for an external scheduler; launchbay runs grid, random or bayes")
    elif method not in METHODS:
        problems.append(f"method {method!r} must be one of {', '.join(METHODS)}")
    metric = _metric(data.get("metric"), problems)
    params = _params(data.get("parameters"), problems)
    problems += _collisions(params)
    pruner = parse_early_terminate(data.get("early_terminate"), problems)
    run_cap = _positive_int(data, "run_cap", problems)
    if run_cap is not None and run_cap > MAX_RUN_CAP:
        problems.append(f"run_cap {run_cap:,} is more than a sweep makes: at most {MAX_RUN_CAP:,}")
    max_parallel = _positive_int(data, "max_parallel", problems) or DEFAULT_MAX_PARALLEL
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        problems.append(f"seed {seed!r} must be an integer")
    if not metric["name"] and "metric" not in data:
        problems.append("metric: {name, goal} is missing: a sweep ranks its trials by a metric the job logs")
    if method == "grid":
        problems += _grid_problems(params)
    launch = {k: data[k] for k in ("resources", "priority", "max_runtime") if data.get(k) is not None}
    notes = [f"{key}: W&B's, ignored by launchbay" for key in IGNORED_KEYS if key in data] + metric["notes"]
    spec = SweepSpec(str(method), tuple(params), metric["name"], metric["goal"], pruner, run_cap, max_parallel,
                     _text(data.get("job")), seed, _text(data.get("name")), launch, metric["target"],
                     tuple(f"{source}: {n}" for n in notes))  # fmt: skip
    size = spec.grid_size() or 0
    if method == "grid" and not problems and size > MAX_GRID:
        count = f"{size:,}" if size < sys.maxsize else "more"
        problems.append(f"the grid has {count} combinations; at most {MAX_GRID:,}")
    if problems:
        raise ValidationError(problem_lines(source, problems))
    return spec


def _check_size(data: Mapping[str, Any], source: str) -> None:
    """Refuse a config too big to be a SWEEP.yaml before anything walks it (it is read on every driver pass)."""
    try:
        size = len(json.dumps(data, default=str))
    except (ValueError, RecursionError) as exc:  # a NaN is refused below, where it can be named
        if isinstance(exc, RecursionError):
            raise ValidationError(f"{source}: nested too deeply") from None
        return
    if size > MAX_CONFIG_BYTES:
        raise ValidationError(f"{source}: {size:,} bytes as JSON; a sweep's config is at most {MAX_CONFIG_BYTES:,}")


def problem_lines(source: str, problems: List[str]) -> str:
    """One problem: one line. Several: a count, then one indented line each."""
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems\n" + "\n".join(f"  {p}" for p in problems)


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _metric(metric: Any, problems: List[str]) -> Dict[str, Any]:
    """``{name, goal, target, notes}`` of ``metric:``; W&B's schema's fields, each checked as W&B checks it."""
    out: Dict[str, Any] = {"name": None, "goal": "minimize", "target": None, "notes": []}
    if metric is None:
        return out
    if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str) or not metric["name"]:
        problems.append("metric must be a mapping with a name (and goal: minimize or maximize)")
        return out
    problems += [f"metric: unknown field {k!r}" for k in sorted(set(map(str, metric)) - _METRIC_KEYS)]
    out["name"], out["goal"] = metric["name"], str(metric.get("goal", "minimize"))
    if out["goal"] not in GOALS:
        problems.append(f"metric goal {out['goal']!r} must be minimize or maximize")
    target = metric.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                               or not math.isfinite(target)):  # fmt: skip
        problems.append(f"metric target {target!r} must be a number")
    elif target is not None:
        out["target"] = float(target)
    for key, allowed in (("impute", IMPUTES), ("impute_while_running", (*IMPUTES, "false"))):
        if key not in metric:
            continue
        if metric[key] not in allowed:
            problems.append(f"metric {key} {metric[key]!r} must be one of {', '.join(allowed)}")
        elif metric[key] != "false":
            # W&B's bayes fills in failed (impute) or running (impute_while_running) runs' values; launchbay's do not.
            out["notes"].append(f"metric.{key}: accepted; launchbay's optimizers leave failed and running trials out")
    return out


def _ignored_key_problems(data: Mapping[str, Any]) -> List[str]:
    """The keys launchbay ignores are still checked as W&B's schema checks them: a typo is not ignored silently."""
    problems = []
    controller, scheduler = data.get("controller"), data.get("scheduler")
    if "controller" in data and (
        not isinstance(controller, Mapping) or controller.get("type") not in ("local", "cloud")
    ):
        problems.append("controller must be {type: local} or {type: cloud} (W&B's)")
    scheduler_keys = {"engine", "source", "optimizer", "search_space"}
    if "scheduler" in data and (not isinstance(scheduler, Mapping) or scheduler.get("engine") not in ("optuna", "ax", "wandb")
                                or set(map(str, scheduler)) - scheduler_keys):  # fmt: skip
        problems.append("scheduler must be {engine: optuna, ax or wandb, source, optimizer, search_space} (W&B's)")
    if "kind" in data and data["kind"] != "sweep":
        problems.append(f"kind {data['kind']!r} must be sweep")
    problems += [
        f"{key} must be text" for key in ("apiVersion", "image_uri") if key in data and not isinstance(data[key], str)
    ]
    return problems


def _positive_int(data: Mapping[str, Any], name: str, problems: List[str]) -> Optional[int]:
    """A positive integer; a whole float (``5.0``) is one, as W&B's JSON schema counts it."""
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer() and value >= 1:
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        problems.append(f"{name} {value!r} must be a positive integer")
        return None
    return value


def _params(parameters: Any, problems: List[str], prefix: str = "") -> List[Param]:
    """Each parameter; W&B's nested form (``optimizer: {parameters: {lr: ...}}``) is the key ``optimizer.lr``."""
    if not isinstance(parameters, Mapping) or not parameters:
        problems.append(f"{prefix or 'parameters'}: must map at least one key to its values")
        return []
    params = []
    for key, body in parameters.items():
        name = f"{prefix}{str(key).replace('.', chr(92) + '.') if prefix else key}"
        bad_name = _name_problem(str(key), nested=bool(prefix))
        if bad_name:
            problems.append(f"parameter {name!r}: {bad_name}")
            continue
        if isinstance(body, Mapping) and "parameters" in body:
            extra = sorted(set(map(str, body)) - {"parameters"})
            if extra:
                problems.append(f"parameter {name!r}: nested parameters take no other field, got {', '.join(extra)}")
            params += _params(body["parameters"], problems, prefix=f"{name}.")
            continue
        try:
            params.append(parse_param(str(name), body))
        except ValidationError as exc:
            problems.append(str(exc))
    return params


def _name_problem(key: str, *, nested: bool) -> Optional[str]:
    """Why W&B's schema refuses this name, if it does. At the top level launchbay's own forms pass too:
    a ``config.yaml:`` prefix (``--file-set``) and ``\\.`` (a dot inside a key)."""
    text = key
    if not nested:
        path, sep, rest = key.partition(":")
        text = (rest if sep and path.endswith((".yaml", ".yml", ".json")) else key).replace("\\.", ".")
    if _WANDB_NAME.fullmatch(text):
        return None
    return "a name starts with a letter or '_' and holds only letters, digits, '_', '.' and '-' (W&B's rule)"


def _collisions(params: List[Param]) -> List[str]:
    """Two parameters on one key (``a.b`` and ``a: {parameters: {b}}``), or one inside the other: refused,
    never merged (which one a trial got would depend on their order)."""
    problems, seen = [], {}
    for param in params:
        for (file, parts), other in seen.items():
            if file == param.file and parts[: len(param.parts)] == param.parts[: len(parts)]:
                if other == param.name:  # the same text: once dotted, once through nested parameters:
                    problems.append(
                        f"parameter {other!r} is given twice (a dotted name and nested parameters:); keep one"
                    )
                    continue
                same = "the same key" if parts == param.parts else "keys one inside the other"
                problems.append(f"parameters {other!r} and {param.name!r} set {same}; keep one")
        seen[(param.file, param.parts)] = param.name
    return problems


def _grid_problems(params: List[Param]) -> List[str]:
    problems = []
    for p in params:
        if p.size() is None:
            problems.append(f"parameter {p.name!r}: grid needs a finite set (values, int_uniform or q_uniform)")
        elif p.probabilities is not None:
            problems.append(f"parameter {p.name!r}: grid makes every value once; probabilities are for random search")
    return problems
