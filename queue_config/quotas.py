"""Per-user quotas of a queue: the model (``quotas:`` in a queue config) and the usage counters.

``quotas: {default: {gpus: 4}, users: {alice: {gpus: 8}}}`` limits what one submitter may hold
*running* in the queue at once: GPUs, CPUs and jobs. A user listed under ``users`` gets that
limit instead of ``default`` (per resource: a resource the user's entry leaves out falls back to
``default``). No quota (the default) means no limit.

Usage lives in ``{ns}:quota_usage:{queue}:{user}`` (HASH gpus/cpus/jobs, see ``keys.py``). ``claim.lua``
checks it and adds a claim's allocation in the same atomic step as the claim, and the release
script (:data:`RELEASE_LUA`) takes it off in the same step as the ledger entry, so two agents can
never together take a user past a limit.
"""

from __future__ import annotations

import json
from typing import Dict, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The resources a quota may limit, as named in queue configs and usage counters.
QUOTA_RESOURCES = ("gpus", "cpus", "jobs")


class Quota(BaseModel):
    """Limits on what one user may hold running at once; None = no limit on that resource."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: Optional[int] = Field(default=None, ge=0)
    cpus: Optional[float] = Field(default=None, ge=0)
    jobs: Optional[int] = Field(default=None, ge=0)

    def limits(self) -> Dict[str, float]:
        return {name: float(value) for name in QUOTA_RESOURCES if (value := getattr(self, name)) is not None}


class Quotas(BaseModel):
    """A queue's quotas: ``default`` for every user, ``users`` for named ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Quota = Field(default_factory=Quota)
    users: Dict[str, Quota] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _user_names(cls, value: Dict[str, Quota]) -> Dict[str, Quota]:
        for name in value:
            if not name or len(name) > 128 or any(ch.isspace() or ch == ":" for ch in name):
                raise ValueError(f"user name {name!r} must be 1-128 characters without spaces or ':'")
        return value

    def for_user(self, user: str) -> Dict[str, float]:
        """The limits that apply to ``user`` (``{}`` when none)."""
        own = self.users.get(user)
        return {**self.default.limits(), **(own.limits() if own else {})}

    @property
    def any(self) -> bool:
        return bool(self.default.limits()) or any(q.limits() for q in self.users.values())


def limits_json(limits: Mapping[str, float]) -> str:
    """The limits as ``claim.lua`` reads them (empty object = unlimited)."""
    return json.dumps(dict(limits), sort_keys=True, separators=(",", ":"))


def over_quota(limits: Mapping[str, float], usage: Mapping[str, float], ask: Mapping[str, float]) -> Optional[str]:
    """The first resource whose limit ``usage`` + ``ask`` would pass, as a sentence; None when within."""
    for name in QUOTA_RESOURCES:
        if name in limits and float(usage.get(name, 0)) + float(ask.get(name, 0)) > limits[name] + 1e-9:
            return f"{name}: {float(usage.get(name, 0)):g} in use + {float(ask.get(name, 0)):g} asked > quota {limits[name]:g}"
    return None


def ask_of(request: Mapping[str, object]) -> Dict[str, float]:
    """What one job counts against a quota: its GPUs, its CPUs and one job."""
    return {"gpus": float(request.get("gpus") or 0), "cpus": float(request.get("cpus") or 0), "jobs": 1.0}  # type: ignore[arg-type]


def parse_usage(raw: Mapping[object, object]) -> Dict[str, float]:
    out = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        try:
            out[name] = float(value.decode() if isinstance(value, bytes) else value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return out


#: Free a claimed job's resources and take its allocation off its user's usage, in one step.
#: KEYS[1] the ledger, KEYS[2] the usage hash named in the entry (or any key when it names none).
#: ARGV[1] job id. Returns 1 when the job held resources.
RELEASE_LUA = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local ok, entry = pcall(cjson.decode, raw)
if ok and type(entry) == 'table' and type(entry.user) == 'string' and entry.user ~= '' then
  local gpus = 0
  if type(entry.gpus) == 'table' then gpus = #entry.gpus end
  local left = {gpus = gpus, cpus = tonumber(entry.cpus) or 0, jobs = 1}
  for name, amount in pairs(left) do
    -- claim.lua counted only what the job asked for: a counter it left alone is not touched here
    if amount > 0 then
      local now = tonumber(redis.call('HINCRBYFLOAT', KEYS[2], name, -amount))
      if now < 1e-9 then redis.call('HDEL', KEYS[2], name) end
    end
  end
end
return 1
"""
