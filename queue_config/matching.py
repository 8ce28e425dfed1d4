"""Does a resource request fit what an agent has? Pure functions, shared by the agent and the client.

The agent asks "does it fit what is free now, and on which GPUs?" before it claims a job; the client
asks "could any live agent ever run this?" before it enqueues one. Both use the same rules:

- CPUs, memory and the GPU count must fit.
- Every GPU chosen for one job has the same model name, matches ``gpu_model`` (case-insensitive
  substring of the GPU name, any ``|``-separated alternative) and has at least ``gpu_memory_mib``
  in total.
- When ``gpu_memory_mib`` is requested, each chosen GPU's live free memory (nvidia-smi, so
  processes outside launchbay count) must cover it too. When it is not requested, foreign usage
  does not block: a GPU that launchbay has not handed out is free, whatever else runs on it,
  because a job that did not say how much memory it needs cannot be judged by it. Ask for
  ``gpu_memory`` to be protected from shared GPUs.
- Every constraint label must equal the agent's label of the same name.
- A GPU whose ``health`` is not ``"ok"`` (quarantined or drained) is never chosen for a job now.

GPU choice packs before it spreads: it takes the model group with the fewest eligible free GPUs
that still has enough, and inside it the smallest run of neighbouring indices that holds the job,
so that large blocks of whole GPUs stay free for large jobs. Ties go to the lowest index.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

#: cpus are floats; sums are compared with this slack so 0.1 + 0.2 fits in 0.3.
CPU_EPSILON = 1e-9
#: The GPU health values of the capacity JSON.
GPU_OK, GPU_UNHEALTHY, GPU_DRAINED = "ok", "unhealthy", "drained"


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi reports it. ``id`` is the host index as a string; unknown numbers are None.

    ``health`` is ``"ok"``, ``"unhealthy"`` (quarantined: nvidia-smi or the kernel reported a fault,
    ``health_reason`` says which) or ``"drained"`` (an operator took it out of service). Only an
    ``"ok"`` GPU is ever handed out (``launchbay.agent.gpu_health``).
    """

    id: str
    uuid: str = ""
    name: str = ""
    memory_total_mib: Optional[int] = None
    memory_used_mib: Optional[int] = None
    memory_free_mib: Optional[int] = None
    utilization_pct: Optional[int] = None
    temperature_c: Optional[int] = None
    pci_bus_id: str = ""
    health: str = GPU_OK
    health_reason: str = ""

    @property
    def usable(self) -> bool:
        return self.health == GPU_OK

    def to_capacity_dict(self) -> Dict[str, Any]:
        """The GPU as it appears in the capacity JSON (docs/architecture.md)."""
        return {
            "id": self.id,
            "uuid": self.uuid,
            "name": self.name,
            "memory_total_mib": self.memory_total_mib,
            "memory_free_mib": self.memory_free_mib,
            "memory_used_mib": self.memory_used_mib,
            "utilization_pct": self.utilization_pct,
            "temperature_c": self.temperature_c,
            "health": self.health,
            "health_reason": self.health_reason,
        }

    @classmethod
    def from_capacity_dict(cls, data: Mapping[str, Any]) -> GpuInfo:
        return cls(
            id=str(data["id"]),
            uuid=str(data.get("uuid") or ""),
            name=str(data.get("name") or ""),
            memory_total_mib=data.get("memory_total_mib"),
            memory_free_mib=data.get("memory_free_mib"),
            memory_used_mib=data.get("memory_used_mib"),
            utilization_pct=data.get("utilization_pct"),
            temperature_c=data.get("temperature_c"),
            health=str(data.get("health") or GPU_OK),
            health_reason=str(data.get("health_reason") or ""),
        )


@dataclass(frozen=True)
class Request:
    """The canonical request of a job (``Resources.request_dict()``): zeros mean "none" or "any"."""

    cpus: float = 0.0
    memory_mib: int = 0
    gpus: int = 0
    gpu_model: str = ""
    gpu_memory_mib: int = 0

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]]) -> Request:
        data = data or {}
        return cls(
            cpus=float(data.get("cpus") or 0.0),
            memory_mib=int(data.get("memory_mib") or 0),
            gpus=int(data.get("gpus") or 0),
            gpu_model=str(data.get("gpu_model") or ""),
            gpu_memory_mib=int(data.get("gpu_memory_mib") or 0),
        )


@dataclass(frozen=True)
class Capacity:
    """What an agent may hand out: CPUs, memory, job slots and GPUs (all of it, or what is free)."""

    cpus: float
    memory_mib: int
    slots: int
    gpus: Tuple[GpuInfo, ...] = ()
    labels: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_capacity_json(cls, data: Mapping[str, Any]) -> Capacity:
        """Read an agent's capacity JSON (``launchbay:agent:<id>:capacity``)."""
        return cls(
            cpus=float(data.get("cpus") or 0.0),
            memory_mib=int(data.get("memory_mib") or 0),
            slots=int(data.get("max_jobs") or 0),
            gpus=tuple(GpuInfo.from_capacity_dict(g) for g in data.get("gpus") or ()),
            labels={str(k): str(v) for k, v in (data.get("labels") or {}).items()},
        )

    def gpu(self, gpu_id: str) -> Optional[GpuInfo]:
        for gpu in self.gpus:
            if gpu.id == gpu_id:
                return gpu
        return None

    def without(self, cpus: float, memory_mib: int, gpu_ids: Iterable[str], slots: int = 1) -> Capacity:
        """What is left after handing out ``cpus``, ``memory_mib``, a slot and the GPUs ``gpu_ids``."""
        taken = set(gpu_ids)
        return replace(
            self,
            cpus=self.cpus - cpus,
            memory_mib=self.memory_mib - memory_mib,
            slots=self.slots - slots,
            gpus=tuple(g for g in self.gpus if g.id not in taken),
        )

    def with_gpus(self, gpus: Iterable[GpuInfo], cpus: float, memory_mib: int, slots: int = 1) -> Capacity:
        """What there is after a job that held these resources gives them back."""
        present = {g.id for g in self.gpus}
        merged = self.gpus + tuple(g for g in gpus if g.id not in present)
        return replace(
            self,
            cpus=self.cpus + cpus,
            memory_mib=self.memory_mib + memory_mib,
            slots=self.slots + slots,
            gpus=tuple(sorted(merged, key=lambda g: gpu_sort_key(g.id))),
        )


def gpu_sort_key(gpu_id: str) -> Tuple[int, int, str]:
    """Numeric indices in numeric order ("2" before "10"), anything else after them by name."""
    return (0, int(gpu_id), "") if gpu_id.isdigit() else (1, 0, gpu_id)


def gpu_model_matches(name: str, pattern: str) -> bool:
    """``pattern`` is "" (any GPU) or names separated by ``|``, each a case-insensitive substring of ``name``."""
    if not pattern:
        return True
    lowered = name.lower()
    return any(part.strip().lower() in lowered for part in pattern.split("|") if part.strip())


def labels_match(constraints: Optional[Mapping[str, str]], labels: Mapping[str, str]) -> bool:
    """Every constraint label must be set on the agent with the same value."""
    return all(key in labels and labels[key] == str(value) for key, value in (constraints or {}).items())


def gpu_could_serve(gpu: GpuInfo, request: Request) -> bool:
    """Model and total memory fit: this GPU could run the job once nothing else uses it."""
    if not gpu_model_matches(gpu.name, request.gpu_model):
        return False
    if not request.gpu_memory_mib:
        return True
    return gpu.memory_total_mib is not None and gpu.memory_total_mib >= request.gpu_memory_mib


def gpu_can_serve_now(gpu: GpuInfo, request: Request) -> bool:
    """:func:`gpu_could_serve`, and when GPU memory is requested, the live free memory covers it.

    A GPU whose free memory nvidia-smi cannot report is judged by its total.
    """
    if not gpu_could_serve(gpu, request):
        return False
    if request.gpu_memory_mib and gpu.memory_free_mib is not None:
        return gpu.memory_free_mib >= request.gpu_memory_mib
    return True


def choose_gpus(request: Request, free_gpus: Sequence[GpuInfo], *, live: bool = True) -> Optional[Tuple[str, ...]]:
    """The GPU ids to give a job, or None when ``free_gpus`` cannot serve it.

    ``live=False`` ignores current free memory (used to plan for a future moment).
    """
    if request.gpus <= 0:
        return ()
    serves = gpu_can_serve_now if live else gpu_could_serve
    groups: Dict[str, List[GpuInfo]] = {}
    for gpu in free_gpus:
        # A quarantined or drained GPU is never handed out; planning (live=False) still counts it,
        # so a job that needs it is not refused as impossible while it is repaired.
        if live and not gpu.usable:
            continue
        if serves(gpu, request):
            groups.setdefault(gpu.name, []).append(gpu)
    fitting = [sorted(g, key=lambda x: gpu_sort_key(x.id)) for g in groups.values() if len(g) >= request.gpus]
    if not fitting:
        return None
    # Best fit: the smallest group that holds the job, so big groups stay whole.
    group = min(fitting, key=lambda g: (len(g), gpu_sort_key(g[0].id)))
    return _pick_from_runs(group, request.gpus)


def _pick_from_runs(gpus: List[GpuInfo], count: int) -> Tuple[str, ...]:
    runs = _index_runs([g.id for g in gpus])
    holding = [run for run in runs if len(run) >= count]
    if holding:
        run = min(holding, key=lambda r: (len(r), gpu_sort_key(r[0])))
        return tuple(run[:count])
    # No single run is long enough: use up the smallest fragments first.
    chosen: List[str] = []
    for run in sorted(runs, key=lambda r: (len(r), gpu_sort_key(r[0]))):
        chosen.extend(run[: count - len(chosen)])
        if len(chosen) == count:
            break
    return tuple(sorted(chosen, key=gpu_sort_key))


def _index_runs(ids: List[str]) -> List[List[str]]:
    """Split sorted ids into runs of consecutive indices ("0","1" | "3"); non-numeric ids stand alone."""
    runs: List[List[str]] = []
    for gpu_id in ids:
        last = runs[-1][-1] if runs else None
        if last is not None and last.isdigit() and gpu_id.isdigit() and int(gpu_id) == int(last) + 1:
            runs[-1].append(gpu_id)
        else:
            runs.append([gpu_id])
    return runs


def fit(
    request: Request, constraints: Optional[Mapping[str, str]], free: Capacity, *, live: bool = True
) -> Optional[Tuple[str, ...]]:
    """The GPU ids (maybe none) that make the job fit ``free``, or None when it does not fit.

    ``live=False`` ignores the GPUs' current free memory (to plan for a later moment).
    """
    if free.slots < 1 or not labels_match(constraints, free.labels):
        return None
    if request.cpus > free.cpus + CPU_EPSILON or request.memory_mib > free.memory_mib:
        return None
    return choose_gpus(request, free.gpus, live=live)


def misfit_reason(request: Request, constraints: Optional[Mapping[str, str]], total: Capacity) -> Optional[str]:
    """Why a job could never run on an agent with ``total`` capacity (nothing running), or None if it could."""
    for key, value in (constraints or {}).items():
        if total.labels.get(key) != str(value):
            have = total.labels.get(key)
            return f"constraint {key}={value} does not match the agent's {key}={have}" if have else f"no label {key}"
    if total.slots < 1:
        return "the agent runs no jobs (max_jobs is 0)"
    if request.cpus > total.cpus + CPU_EPSILON:
        return f"needs {request.cpus:g} CPUs, the agent hands out {total.cpus:g}"
    if request.memory_mib > total.memory_mib:
        return f"needs {request.memory_mib} MiB of memory, the agent hands out {total.memory_mib} MiB"
    if request.gpus and choose_gpus(request, total.gpus, live=False) is None:
        matching = [g for g in total.gpus if gpu_could_serve(g, request)]
        what = f"{request.gpus} GPU(s)"
        if request.gpu_model:
            what += f" matching {request.gpu_model!r}"
        if request.gpu_memory_mib:
            what += f" with {request.gpu_memory_mib} MiB"
        return f"needs {what} of one model, the agent has {len(matching)} such of {len(total.gpus)}"
    return None


def could_ever_fit(request: Request, constraints: Optional[Mapping[str, str]], total: Capacity) -> bool:
    return misfit_reason(request, constraints, total) is None
