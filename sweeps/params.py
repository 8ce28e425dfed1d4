"""One swept parameter of SWEEP.yaml: its distribution, read as W&B's sweep engine reads it.

Distributions are W&B's: ``constant`` (``value``), ``categorical`` (``values``, with
``probabilities`` for random search), ``int_uniform``, ``uniform``, ``q_uniform``, ``log_uniform``
and ``inv_log_uniform`` (bounds are natural logs), ``log_uniform_values``,
``inv_log_uniform_values``, ``q_log_uniform``, ``q_log_uniform_values``. With ``min``/``max`` and no
``distribution``, two ints mean ``int_uniform`` and anything else ``uniform``, as in W&B. A ``q_*``
value is a multiple of ``q`` (``round(x / q) * q``), an int when ``q`` is one; ``q`` defaults to
W&B's ``1.0``. A grid over ``q_uniform`` lists ``min, min + q, ...`` below ``max``, as W&B's
``numpy.arange`` does. W&B's unbounded ones (``normal``, ``log_normal``, ``beta`` and their
q-variants) are refused: the optimizer samples bounded ranges. The fields of each distribution are
W&B's schema's (wandb/sweeps ``src/sweeps/config/schema.json``): a field another distribution
takes is refused, as W&B refuses it. Pure: no Redis, no Optuna.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from launchbay.queue_config.structured import check_finite
from launchbay.sdk.errors import SdkError
from launchbay.sdk.paths import KeyPath, split_path

from launchbay.errors import ValidationError

#: The most values one parameter may list, and the most a grid lists: a size is counted before any value is listed.
MAX_GRID = 10_000
#: Integer bounds stay where a float counts exactly (the optimizer samples integers through floats).
MAX_INT = 2**53
#: ``log_uniform``'s bounds are natural logs: e**709 is near the largest float, e**-708 the smallest normal one.
MAX_EXPONENT = 708
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
#: W&B's default ``q`` (schema.json: ``"default": 1.0``): a float, so a q-value is a float unless ``q`` is an int.
DEFAULT_Q = 1.0
_RANGE_KINDS = {
    "int_uniform": (False, False),  # (log scale, bounds given as natural logs)
    "uniform": (False, False),
    "q_uniform": (False, False),
    "log_uniform": (True, True),
    "q_log_uniform": (True, True),
    "inv_log_uniform": (True, True),
    "log_uniform_values": (True, False),
    "q_log_uniform_values": (True, False),
    "inv_log_uniform_values": (True, False),
}
_UNBOUNDED = ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta")
_CATEGORICAL = ("categorical", "categorical_w_probabilities")
_PARAM_KEYS = frozenset(
    {"value", "values", "min", "max", "distribution", "q", "probabilities", "mu", "sigma", "a", "b"}
)
#: The fields each distribution takes besides ``distribution`` (W&B's schema: ``additionalProperties: false``).
_FIELDS = {
    "constant": {"value"},
    "categorical": {"values", "probabilities"},
    "int_uniform": {"min", "max"},
    **{kind: {"min", "max", "q"} if kind.startswith("q_") else {"min", "max"} for kind in _RANGE_KINDS if kind != "int_uniform"},
}  # fmt: skip
#: W&B's ``np.isclose(sum(probabilities), 1.0)``: its default tolerances.
_PROB_RTOL, _PROB_ATOL = 1e-5, 1e-8


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
    probabilities: Optional[Tuple[float, ...]] = None  # categorical: one weight per value (random search)

    @property
    def is_int(self) -> bool:
        return self.kind == "int_uniform"

    @property
    def log(self) -> bool:
        return self.kind in _RANGE_KINDS and _RANGE_KINDS[self.kind][0]

    def distinct_values(self) -> List[Any]:
        """``values`` without repeats (``1`` and ``1.0`` are one value, as in W&B's grid): a grid makes each once."""
        seen, out = set(), []
        for value in self.values:
            key = _value_key(value)
            if key not in seen:
                seen.add(key)
                out.append(value)
        return out

    def size(self) -> Optional[int]:
        """How many values a grid lists for it when that is finite (counted, never listed), else None."""
        if self.kind == "constant":
            return 1
        if self.kind == "categorical":
            return len(self.distinct_values())
        if self.kind == "int_uniform":
            return int(self.high) - int(self.low) + 1
        if self.kind == "q_uniform" and self.q:
            steps = (self.high - self.low) / self.q  # numpy.arange(min, max, q): max itself is not listed
            return max(1, math.ceil(steps)) if math.isfinite(steps) else sys.maxsize
        return None

    def finite_values(self) -> Optional[List[Any]]:
        """Every value a grid lists for it when that is finite, else None.

        ValueError past :data:`MAX_GRID` values: a range of 10**9 must never be listed (validation
        refuses such a grid before anything lists it).
        """
        size = self.size()
        if size is None:
            return None
        if size > MAX_GRID:
            raise ValueError(f"parameter {self.name!r} takes {size:,} values; at most {MAX_GRID:,} are listed")
        if self.kind == "constant":
            return [self.values[0]]
        if self.kind == "categorical":
            return self.distinct_values()
        if self.kind == "int_uniform":
            return list(range(int(self.low), int(self.high) + 1))
        ints = _all_ints(self.low, self.high, self.q)  # numpy.arange's dtype: int only when all three are
        return [int(self.low + i * self.q) if ints else round(self.low + i * self.q, 12) for i in range(size)]

    def bounds_to_check(self) -> List[Any]:
        """The values to check against the job's inputs: every value of a listable set, else both ends."""
        if self.kind in ("constant", "categorical"):
            return list(self.values)
        listed = self.finite_values() if (self.size() or MAX_GRID + 1) <= MAX_GRID else []
        return [*(listed or []), self.to_job(self.low), self.to_job(self.high)]  # random's q-rounded ends too

    def to_job(self, sampled: Any) -> Any:
        """The value a trial's job gets for what the optimizer sampled (q-variants round here, as W&B does)."""
        if self.kind in ("constant", "categorical"):
            return sampled
        if self.q is not None:
            rounded = round(float(sampled) / self.q) * self.q
            return int(rounded) if _all_ints(self.q) else round(rounded, 12)
        return int(sampled) if self.is_int else float(sampled)


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
    kind = "categorical" if kind in _CATEGORICAL else kind
    if kind is None:
        raise ValidationError(f"{where}: needs values, value, or min and max")
    if kind not in _FIELDS:
        raise ValidationError(f"{where}: unknown distribution {kind!r}")
    extra = sorted(set(map(str, body)) - _FIELDS[kind] - {"distribution"})
    if extra:
        takes = ", ".join(k for k in ("value", "values", "probabilities", "min", "max", "q") if k in _FIELDS[kind])
        raise ValidationError(f"{where}: {kind} takes {takes}, not {', '.join(extra)} (W&B refuses the mix too)")
    if kind == "constant":
        _check_finite([body["value"]], f"{where}: value")
        return Param(name, file, parts, "constant", (body["value"],))
    if kind == "categorical":
        return _categorical(name, file, parts, body)
    return _range_param(name, file, parts, kind, body)


def _categorical(name: str, file: Optional[str], parts: KeyPath, body: Mapping[str, Any]) -> Param:
    where = f"parameter {name!r}"
    values = body.get("values")
    if not isinstance(values, list) or not values:
        raise ValidationError(f"{where}: values must be a non-empty list")
    if len(values) > MAX_GRID:
        raise ValidationError(f"{where}: {len(values):,} values; at most {MAX_GRID:,}")
    _check_finite(values, f"{where}: values")
    probs = body.get("probabilities")
    if probs is None:
        return Param(name, file, parts, "categorical", tuple(values))
    if not isinstance(probs, list) or not all(_is_number(p) and p >= 0 for p in probs):
        raise ValidationError(f"{where}: probabilities must be a list of numbers >= 0, one per value")
    if len(probs) != len(values):
        raise ValidationError(f"{where}: {len(values)} values but {len(probs)} probabilities; give one per value")
    if not math.isclose(math.fsum(probs), 1.0, rel_tol=_PROB_RTOL, abs_tol=_PROB_ATOL):
        raise ValidationError(f"{where}: probabilities sum to {math.fsum(probs):g}; they must sum to 1")
    return Param(name, file, parts, "categorical", tuple(values), probabilities=tuple(float(p) for p in probs))


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
    for what, value in (("min", low), ("max", high), ("q", q)):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise ValidationError(f"{where}: {what} {_short(value)} is out of range: numbers within ±2**53")
        _refuse_number_text(where, what, value)
    if not _is_number(low) or not _is_number(high) or low >= high:
        raise ValidationError(f"{where}: {kind} needs numbers min < max, got min {_short(low)}, max {_short(high)}")
    if q is not None and (not _is_number(q) or q <= 0):
        raise ValidationError(f"{where}: q {_short(q)} must be a positive number")
    if kind.startswith("q_") and q is None:
        q = DEFAULT_Q
    if kind == "int_uniform" and not _all_ints(low, high):
        raise ValidationError(f"{where}: int_uniform needs integer min and max")
    log, exponents = _RANGE_KINDS[kind]
    if exponents:
        if not -MAX_EXPONENT <= low < high <= MAX_EXPONENT:
            raise ValidationError(
                f"{where}: {kind} bounds are natural logs (e**min to e**max) and must lie within "
                f"±{MAX_EXPONENT}, got min {low!r}, max {high!r}; {kind}_values takes the values themselves"
            )
        # inv_log_uniform is W&B's exp(-u) for u in [min, max]: log-uniform between e**-max and e**-min.
        low, high = (math.exp(-high), math.exp(-low)) if kind == "inv_log_uniform" else (math.exp(low), math.exp(high))
    elif log and low <= 0:
        raise ValidationError(f"{where}: {kind} needs min > 0, got {low!r}")
    if exponents or (log and not _all_ints(low, high)):
        low, high = float(low), float(high)
    return Param(name, file, parts, kind, (), low, high, q)


def _refuse_number_text(where: str, what: str, value: Any) -> None:
    """YAML 1.1 reads ``1e-6`` (no dot) as text: say so, and how to write it, rather than "needs numbers"."""
    if not isinstance(value, str):
        return
    try:
        number = float(value)
    except ValueError:
        return
    mantissa, _, exponent = value.strip().lower().partition("e")
    sign = "" if exponent[:1] in "+-" else "+"  # YAML 1.1 wants the exponent's sign as well as the dot
    hint = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{sign}{exponent}" if exponent else repr(number)
    raise ValidationError(
        f"{where}: {what} {value!r} is text, not a number (YAML reads a number with an exponent but no dot "
        f"as text); write {hint}"
    )


def _value_key(value: Any) -> str:
    """A value's identity for a grid: ``1.0`` is ``1`` (W&B's grid hashes whole floats as ints)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, default=str)


def _check_finite(values: List[Any], what: str) -> None:
    try:
        check_finite(list(values), what)
    except ValueError as exc:
        raise ValidationError(str(exc).replace(": (top level)", "")) from None


def _short(value: Any) -> str:
    """A value for a one-line message: a 330-digit number is not shown whole."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} characters)"


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= MAX_INT if isinstance(value, int) else math.isfinite(value)


def _all_ints(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values if v is not None)
