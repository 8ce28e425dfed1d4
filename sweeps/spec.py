"""A sweep's configuration (SWEEP.yaml), read as W&B's sweep configuration format where it can be.

```yaml
method: bayes                # grid | random | bayes
metric: {name: loss, goal: minimize}
parameters:
  trainer.learning_rate: {min: 0.0001, max: 0.1, distribution: log_uniform_values}
  config.yaml:optimizer.momentum: {values: [0.8, 0.9, 0.95]}
early_terminate: {type: hyperband, min_iter: 3, eta: 3}
run_cap: 20
max_parallel: 4              # launchbay's: trials queued or running at once
job: examples/trainer/job.yaml   # launchbay's: a job spec file, or the name of a job that ran
```

A parameter is a run-config key path (``trainer.lr``, ``\\.`` for a dot inside a key; W&B's nested
``trainer: {parameters: {lr: ...}}`` is the same key) or a
config-file key (``config.yaml:optimizer.momentum``): the syntax of ``--set`` and ``--file-set``.
Distributions are W&B's: ``constant`` (``value``), ``categorical`` (``values``), ``int_uniform``,
``uniform``, ``q_uniform``, ``log_uniform`` (bounds are natural logs), ``log_uniform_values``,
``q_log_uniform``, ``q_log_uniform_values``, ``inv_log_uniform_values``. With ``min``/``max`` and
no ``distribution``, two ints mean ``int_uniform`` and anything else ``uniform``, as in W&B.
W&B's unbounded ones (``normal``, ``log_normal``, ``beta`` and their q-variants) are refused: the
optimizer samples bounded ranges. Pure: no Redis, no Optuna (``sweep_study.py`` maps this to it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from launchbay.sdk.errors import SdkError
from launchbay.sdk.paths import KeyPath, split_path

from launchbay.errors import ValidationError

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
PRUNERS = ("hyperband", "median")
#: The most trials a grid may have (its every combination is one job).
MAX_GRID = 10_000
DEFAULT_MAX_PARALLEL = 4
DEFAULT_RUN_CAP = 100  # a random or bayes sweep without run_cap stops here
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_RANGE_KINDS = {
    "int_uniform": (False, False),  # (log scale, bounds given as natural logs)
    "uniform": (False, False),
    "q_uniform": (False, False),
    "log_uniform": (True, True),
    "q_log_uniform": (True, True),
    "log_uniform_values": (True, False),
    "q_log_uniform_values": (True, False),
    "inv_log_uniform_values": (True, False),
}
_UNBOUNDED = ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta", "inv_log_uniform")
_PARAM_KEYS = frozenset({"value", "values", "min", "max", "distribution", "q", "probabilities", "mu", "sigma"})
_TOP_KEYS = frozenset(
    {"method", "metric", "parameters", "early_terminate", "run_cap", "max_parallel", "job", "name", "description",
     "seed", "resources", "priority", "max_runtime", "program", "command", "project", "entity"}
)  # fmt: skip


@dataclass(frozen=True)
class Param:
    """One swept key: where it goes, and the values it may take."""

    name: str  # as written in SWEEP.yaml
    file: Optional[str]  # a config file's relative path, or None for the run config
    parts: KeyPath
    kind: str  # "constant", "categorical" or a range distribution of _RANGE_KINDS
    values: Tuple[Any, ...] = ()
    low: float = 0.0  # the range in the values the job gets (log_uniform's exponents already applied)
    high: float = 0.0
    q: Optional[float] = None

    @property
    def is_int(self) -> bool:
        return self.kind == "int_uniform" or (self.kind == "q_uniform" and _all_ints(self.low, self.high, self.q))

    @property
    def log(self) -> bool:
        return self.kind in _RANGE_KINDS and _RANGE_KINDS[self.kind][0]

    def finite_values(self) -> Optional[List[Any]]:
        """Every value it can take when that is a finite list (what a grid enumerates), else None."""
        if self.kind == "constant":
            return [self.values[0]]
        if self.kind == "categorical":
            return list(self.values)
        if self.kind == "int_uniform":
            step = int(self.q or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.kind == "q_uniform" and self.q:
            count = math.floor((self.high - self.low) / self.q + 1e-9) + 1
            cast = int if self.is_int else float
            return [cast(round(self.low + i * self.q, 12)) for i in range(count)]
        return None

    def bounds_to_check(self) -> List[Any]:
        """The values to check against the job's inputs: every finite value, else both ends of the range."""
        finite = self.finite_values()
        if finite is not None:
            return finite
        return [self.to_job(self.low), self.to_job(self.high)]

    def to_job(self, sampled: Any) -> Any:
        """The value a trial's job gets for what the optimizer sampled (q-variants round here)."""
        if self.kind in ("constant", "categorical"):
            return sampled
        if self.q and self.kind in ("q_log_uniform", "q_log_uniform_values"):
            rounded = round(float(sampled) / self.q) * self.q
            return int(rounded) if _all_ints(self.q) else round(rounded, 12)
        return int(sampled) if self.is_int else float(sampled)


@dataclass(frozen=True)
class SweepSpec:
    method: str
    params: Tuple[Param, ...]
    metric_name: Optional[str] = None
    goal: str = "minimize"
    pruner: Optional[Dict[str, Any]] = None  # {"type", "min_iter", "max_iter", "eta"}
    run_cap: Optional[int] = None
    max_parallel: int = DEFAULT_MAX_PARALLEL
    job: Optional[str] = None
    seed: Optional[int] = None
    name: Optional[str] = None
    launch: Dict[str, Any] = field(default_factory=dict)  # resources, priority, max_runtime for each trial

    def grid_size(self) -> Optional[int]:
        if self.method != "grid":
            return None
        return math.prod(len(p.finite_values() or ()) for p in self.params)

    def trial_cap(self) -> int:
        """How many trials the sweep makes at most."""
        size = self.grid_size()
        caps = [c for c in (size, self.run_cap) if c is not None]
        return min(caps) if caps else DEFAULT_RUN_CAP


def parse_sweep(data: Any, *, source: str = "sweep") -> SweepSpec:
    """The sweep in ``data`` (SWEEP.yaml's mapping); ValidationError naming every problem, one per line."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"{source}: expected a mapping (method, metric, parameters, ...)")
    problems: List[str] = []
    problems += [f"unknown field {k!r}" for k in sorted(set(map(str, data)) - _TOP_KEYS)]
    method = data.get("method")
    if method not in METHODS:
        problems.append(f"method {method!r} must be one of {', '.join(METHODS)}")
    metric_name, goal = _metric(data.get("metric"), problems)
    params = _params(data.get("parameters"), problems)
    pruner = _pruner(data.get("early_terminate"), problems)
    run_cap = _positive_int(data, "run_cap", problems)
    max_parallel = _positive_int(data, "max_parallel", problems) or DEFAULT_MAX_PARALLEL
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        problems.append(f"seed {seed!r} must be an integer")
    if not metric_name and "metric" not in data:
        problems.append("metric: {name, goal} is missing: a sweep ranks its trials by a metric the job logs")
    if method == "grid":
        problems += [f"parameter {p.name!r}: grid needs a finite set (values, int_uniform or q_uniform)"
                     for p in params if p.finite_values() is None]  # fmt: skip
    launch = {k: data[k] for k in ("resources", "priority", "max_runtime") if data.get(k) is not None}
    spec = SweepSpec(str(method), tuple(params), metric_name, goal, pruner, run_cap, max_parallel,
                     _text(data.get("job")), seed, _text(data.get("name")), launch)  # fmt: skip
    if method == "grid" and not problems and (spec.grid_size() or 0) > MAX_GRID:
        problems.append(f"the grid has {spec.grid_size():,} combinations; at most {MAX_GRID:,}")
    if problems:
        raise ValidationError(problem_lines(source, problems))
    return spec


def problem_lines(source: str, problems: List[str]) -> str:
    """One problem: one line. Several: a count, then one indented line each."""
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems\n" + "\n".join(f"  {p}" for p in problems)


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _metric(metric: Any, problems: List[str]) -> Tuple[Optional[str], str]:
    if metric is None:
        return None, "minimize"
    if not isinstance(metric, Mapping) or not isinstance(metric.get("name"), str) or not metric["name"]:
        problems.append("metric must be a mapping with a name (and goal: minimize or maximize)")
        return None, "minimize"
    goal = metric.get("goal", "minimize")
    if goal not in GOALS:
        problems.append(f"metric goal {goal!r} must be minimize or maximize")
    return metric["name"], str(goal)


def _positive_int(data: Mapping[str, Any], name: str, problems: List[str]) -> Optional[int]:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        problems.append(f"{name} {value!r} must be a positive integer")
        return None
    return value


def _pruner(early: Any, problems: List[str]) -> Optional[Dict[str, Any]]:
    if early is None:
        return None
    if not isinstance(early, Mapping) or early.get("type") not in PRUNERS:
        problems.append(f"early_terminate needs type: {' or '.join(PRUNERS)}")
        return None
    out = {"type": early["type"], "min_iter": early.get("min_iter", 1), "eta": early.get("eta", 3),
           "max_iter": early.get("max_iter")}  # fmt: skip
    for key in ("min_iter", "eta", "max_iter"):
        value = out[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"early_terminate {key} {value!r} must be a positive integer")
    if isinstance(out["eta"], int) and out["eta"] < 2:
        problems.append("early_terminate eta must be at least 2")
    return out


def _params(parameters: Any, problems: List[str], prefix: str = "") -> List[Param]:
    """Each parameter; W&B's nested form (``optimizer: {parameters: {lr: ...}}``) is the key ``optimizer.lr``."""
    if not isinstance(parameters, Mapping) or not parameters:
        problems.append(f"{prefix or 'parameters'}: must map at least one key to its values")
        return []
    params = []
    for key, body in parameters.items():
        name = f"{prefix}{str(key).replace('.', chr(92) + '.') if prefix else key}"
        if isinstance(body, Mapping) and "parameters" in body:
            params += _params(body["parameters"], problems, prefix=f"{name}.")
            continue
        try:
            params.append(parse_param(str(name), body))
        except ValidationError as exc:
            problems.append(str(exc))
    return params


def split_name(name: str) -> Tuple[Optional[str], KeyPath]:
    """``config.yaml:a.b`` -> ``("config.yaml", ("a", "b"))``; ``trainer.lr`` -> ``(None, ("trainer", "lr"))``."""
    path, sep, key = name.partition(":")
    file = path if sep and path.endswith(CONFIG_SUFFIXES) else None
    text = key if file else name
    if file is not None and (file.startswith("/") or ".." in file.split("/")):
        raise ValidationError(f"parameter {name!r}: config file path must be relative, without '..'")
    try:
        return file, split_path(text)
    except SdkError as exc:
        raise ValidationError(f"parameter {name!r}: {exc}") from None


def parse_param(name: str, body: Any) -> Param:
    """One entry of ``parameters:``; ValidationError (one line) when it is not one we can sample."""
    file, parts = split_name(name)
    where = f"parameter {name!r}"
    if not isinstance(body, Mapping):
        raise ValidationError(f"{where}: expected a mapping such as {{values: [...]}} or {{min: 0, max: 1}}")
    unknown = sorted(set(map(str, body)) - _PARAM_KEYS)
    if unknown:
        raise ValidationError(f"{where}: unknown field {unknown[0]!r}")
    kind = body.get("distribution") or _inferred(body)
    if kind in _UNBOUNDED:
        raise ValidationError(f"{where}: distribution {kind} is unbounded; sweeps sample bounded ranges (min/max)")
    if kind == "constant":
        if "value" not in body:
            raise ValidationError(f"{where}: distribution constant needs value")
        return Param(name, file, parts, "constant", (body["value"],))
    if kind == "categorical":
        values = body.get("values")
        if not isinstance(values, list) or not values:
            raise ValidationError(f"{where}: values must be a non-empty list")
        return Param(name, file, parts, "categorical", tuple(values))
    if kind is None:
        raise ValidationError(f"{where}: needs values, value, or min and max")
    if kind not in _RANGE_KINDS:
        raise ValidationError(f"{where}: unknown distribution {kind!r}")
    return _range_param(name, file, parts, kind, body)


def _inferred(body: Mapping[str, Any]) -> Optional[str]:
    if "values" in body:
        return "categorical"
    if "value" in body:
        return "constant"
    if "min" in body and "max" in body:
        return "int_uniform" if _all_ints(body["min"], body["max"]) else "uniform"
    return None


def _range_param(name: str, file: Optional[str], parts: KeyPath, kind: str, body: Mapping[str, Any]) -> Param:
    where = f"parameter {name!r}"
    low, high, q = body.get("min"), body.get("max"), body.get("q")
    if not _is_number(low) or not _is_number(high) or low >= high:
        raise ValidationError(f"{where}: {kind} needs numbers min < max, got min {low!r}, max {high!r}")
    if q is not None and (not _is_number(q) or q <= 0):
        raise ValidationError(f"{where}: q {q!r} must be a positive number")
    if kind.startswith("q_") and q is None:
        q = 1
    if kind == "int_uniform" and not _all_ints(low, high, q if q is not None else 1):
        raise ValidationError(f"{where}: int_uniform needs integer min, max (and q)")
    log, exponents = _RANGE_KINDS[kind]
    if exponents:
        low, high = math.exp(low), math.exp(high)
    elif log and low <= 0:
        raise ValidationError(f"{where}: {kind} needs min > 0, got {low!r}")
    if exponents or (log and not _all_ints(low, high)):
        low, high = float(low), float(high)
    return Param(name, file, parts, kind, (), low, high, q)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _all_ints(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values if v is not None)
