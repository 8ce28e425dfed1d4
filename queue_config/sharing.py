"""A shared queue's rules for who goes first: preemption and fair share (pydantic models, pure).

``preemption: {enabled, grace, min_runtime_before_preempt}`` lets a ``high`` job stop ``low`` jobs
on one agent; ``fair_share: {half_life, weights}`` orders jobs of one priority by their user's
recent usage. Both are queue options (docs/queue-config.md); ``QueueConfig`` checks them against
the queue's other limits (a grace longer than the queue's max runtime is refused).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Dict, Mapping

from launchbay.queue_config.units import parse_duration_s, rename_unit_keys
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: One day: a user's usage counts half as much a day later.
DEFAULT_HALF_LIFE_S = 86_400
#: Seconds a victim has between SIGTERM and SIGKILL unless the queue says otherwise.
DEFAULT_GRACE_S = 30


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PreemptionConfig(_Strict):
    """May a ``high`` job stop ``low`` jobs of this queue, and how gently."""

    enabled: bool = False
    grace_s: int = Field(default=DEFAULT_GRACE_S, ge=0)
    min_runtime_before_preempt_s: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _accept_duration(cls, data: Any) -> Any:
        return rename_unit_keys(
            data,
            {
                # 0 is a natural setting for both: stop at once, and no minimum run time.
                "grace": ("grace_s", partial(parse_duration_s, allow_zero=True)),
                "min_runtime_before_preempt": (
                    "min_runtime_before_preempt_s",
                    partial(parse_duration_s, allow_zero=True),
                ),
            },
        )


class FairShareConfig(_Strict):
    """Usage decays with ``half_life``; a user's usage is divided by their weight (default 1)."""

    enabled: bool = True
    half_life_s: int = Field(default=DEFAULT_HALF_LIFE_S, gt=0)
    weights: Dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _accept_duration(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("half_life"), (int, float)) and data["half_life"] <= 0:
            raise ValueError(f"half_life must be a positive duration such as 1d or 12h, got {data['half_life']}")
        return rename_unit_keys(data, {"half_life": ("half_life_s", parse_duration_s)})

    @field_validator("weights")
    @classmethod
    def _positive(cls, value: Dict[str, float]) -> Dict[str, float]:
        for user, weight in value.items():
            if not (math.isfinite(weight) and weight > 0):
                raise ValueError(f"weight of user {user!r} must be a number above 0, got {weight}")
        return value


class SharingOptions(_Strict):
    """The queue options of a shared queue, mixed into ``QueueConfig`` (models.py): ``preemption``,
    ``fair_share``, and the check of the grace against the queue's max runtime."""

    preemption: PreemptionConfig = Field(default_factory=PreemptionConfig)
    fair_share: FairShareConfig = Field(default_factory=FairShareConfig)

    @model_validator(mode="after")
    def _grace_within_runtime(self) -> SharingOptions:
        limits = getattr(self, "limits", None)
        check_grace(
            self.preemption, getattr(limits, "max_runtime_s", None) or getattr(self, "default_max_runtime_s", None)
        )
        return self


def decayed(usage: float, since_s: float, half_life_s: float) -> float:
    """``usage`` recorded ``since_s`` seconds ago, as it counts now."""
    return usage * 0.5 ** (max(0.0, since_s) / half_life_s)


def normalized_usage(usage: Mapping[str, float], weights: Mapping[str, float]) -> Dict[str, float]:
    """Each user's usage divided by their weight: what fair share orders by (least first)."""
    return {user: value / weights.get(user, 1.0) for user, value in usage.items()}


def check_grace(preemption: PreemptionConfig, max_runtime_s: Any) -> None:
    """A grace period longer than the queue's longest run could never end inside it."""
    if preemption.enabled and max_runtime_s is not None and preemption.grace_s > max_runtime_s:
        raise ValueError(
            f"preemption.grace ({preemption.grace_s}s) is longer than the queue's max runtime ({max_runtime_s}s)"
        )
