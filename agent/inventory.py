"""What this host has: CPUs and memory (psutil, cgroup limits) and GPUs (nvidia-smi).

GPUs come from one query::

    nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu,\\
        temperature.gpu,pci.bus_id,ecc.errors.uncorrected.volatile.total,retired_pages.pending,\\
        remapped_rows.pending,remapped_rows.failure,clocks_event_reasons.hw_slowdown \\
        --format=csv,noheader,nounits

(older drivers get a shorter query, :data:`QUERY_VARIANTS`). The health fields, the kernel's XID
reports and GPUs nvidia-smi cannot reach decide each GPU's ``health`` (``gpu_health.py``).

Values nvidia-smi cannot give (``[N/A]``, ``N/A``, ``[Not Supported]``) become None. No nvidia-smi
on PATH means no GPUs (a CPU host). A failing one (driver not loaded, exit 9; driver/library
version mismatch, exit 18; output we cannot read; no answer within the timeout) also means no GPUs
for now, with one warning per distinct failure rather than one per refresh: the agent keeps running
CPU jobs and picks the GPUs up again when nvidia-smi recovers.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psutil
from launchbay.agent.gpu_health import XidReader, apply_xids, bus_key, judge, lost_gpus, mark_lost
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config.matching import Capacity, GpuInfo, gpu_sort_key

log = logging.getLogger(__name__)

BASE_FIELDS = ("index", "uuid", "name", "memory.total", "memory.used", "memory.free", "utilization.gpu")
_HEALTH = ("temperature.gpu", "pci.bus_id", "ecc.errors.uncorrected.volatile.total", "retired_pages.pending")
_REMAP = ("remapped_rows.pending", "remapped_rows.failure")
#: Tried in this order: a driver that does not know one field refuses the whole query (exit 2,
#: 'Field "..." is not a valid field to query.'), so the probe steps down to the next and stays there.
QUERY_VARIANTS: Tuple[Tuple[str, ...], ...] = (
    BASE_FIELDS + _HEALTH + _REMAP + ("clocks_event_reasons.hw_slowdown",),  # driver >= 535
    BASE_FIELDS + _HEALTH + _REMAP + ("clocks_throttle_reasons.hw_slowdown",),  # 460 - 530
    BASE_FIELDS + _HEALTH + ("clocks_throttle_reasons.hw_slowdown",),  # before row remapping (< 460)
    BASE_FIELDS,
)
QUERY_FIELDS = QUERY_VARIANTS[0]
NOT_AVAILABLE = frozenset({"[N/A]", "N/A", "[Not Supported]", "Not Supported", "[Unknown Error]", ""})
NVIDIA_SMI_TIMEOUT_S = 10.0
MIB = 1 << 20
CGROUP_ROOT = Path("/sys/fs/cgroup")

#: nvidia-smi's documented exit codes (man page, RETURN VALUE) plus 18, seen in the wild.
EXIT_MEANINGS = {
    2: "invalid argument",
    3: "operation not available on this GPU",
    4: "no permission",
    6: "query unsuccessful",
    9: "NVIDIA driver is not loaded",
    10: "kernel interrupt issue",
    12: "NVML library not found",
    13: "NVML function not implemented",
    14: "infoROM corrupted",
    15: "GPU has fallen off the bus",
    18: "driver/library version mismatch",
    255: "internal error",
}


class GpuQueryError(Exception):
    """nvidia-smi is there but did not tell us about the GPUs; the message says why, in one line."""


def query_args(fields: Sequence[str] = QUERY_FIELDS) -> Tuple[str, str]:
    return (f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits")


class UnknownFieldError(GpuQueryError):
    """This driver's nvidia-smi does not know a field of the query."""


def _number(text: str, what: str, line_no: int) -> Optional[int]:
    text = text.strip()
    if text in NOT_AVAILABLE or text.startswith("["):  # also "[GPU requires reset]", "[Unknown Error]"
        return None
    try:
        return int(float(text))
    except ValueError:
        raise GpuQueryError(f"nvidia-smi line {line_no}: {what} is {text!r}, not a number") from None


def parse_gpu_csv(text: str, fields: Sequence[str] = QUERY_FIELDS) -> List[GpuInfo]:
    """Read the query's output (csv, noheader, nounits) for ``fields``; anything else is a GpuQueryError.

    nvidia-smi's lines about a GPU it cannot reach (``Unable to determine the device handle ...``)
    are skipped here and read by :func:`gpu_health.lost_gpus`.
    """
    gpus = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or lost_gpus(line):
            continue
        values = [f.strip() for f in line.split(", ")]
        if len(values) != len(fields):
            raise GpuQueryError(
                f"nvidia-smi line {line_no} has {len(values)} fields, expected {len(fields)}: {line.strip()[:120]!r}"
            )
        gpus.append(_gpu_from(dict(zip(fields, values)), line_no))
    return gpus


def _gpu_from(row: Dict[str, str], line_no: int) -> GpuInfo:
    index = row["index"]
    if not index.isdigit():
        raise GpuQueryError(f"nvidia-smi line {line_no}: index is {index!r}, not a number")
    health, reason = judge(row)
    bus_id = row.get("pci.bus_id", "")
    return GpuInfo(
        id=index,
        uuid="" if row["uuid"] in NOT_AVAILABLE else row["uuid"],
        name="" if row["name"] in NOT_AVAILABLE else row["name"],
        memory_total_mib=_number(row["memory.total"], "memory.total", line_no),
        memory_used_mib=_number(row["memory.used"], "memory.used", line_no),
        memory_free_mib=_number(row["memory.free"], "memory.free", line_no),
        utilization_pct=_number(row["utilization.gpu"], "utilization.gpu", line_no),
        temperature_c=_number(row.get("temperature.gpu", ""), "temperature.gpu", line_no),
        pci_bus_id="" if bus_id in NOT_AVAILABLE or bus_id.startswith("[") else bus_id,
        health=health,
        health_reason=reason,
    )


@dataclass(frozen=True)
class GpuReading:
    """One nvidia-smi answer: the GPUs it listed and those it could not reach (bus key -> its words)."""

    gpus: List[GpuInfo]
    lost: Dict[str, str]


def read_gpus(
    executable: str = "nvidia-smi", timeout_s: float = NVIDIA_SMI_TIMEOUT_S, fields: Sequence[str] = QUERY_FIELDS
) -> GpuReading:
    """The host's GPUs; none when nvidia-smi is not installed, GpuQueryError when it fails.

    A non-zero exit that names GPUs it cannot reach is not a failure: the others are listed.
    """
    if os.sep not in executable and shutil.which(executable) is None:
        return GpuReading([], {})  # not installed: a look along PATH, not a process started every refresh
    try:
        done = subprocess.run(
            [executable, *query_args(fields)], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError:
        return GpuReading([], {})
    except subprocess.TimeoutExpired:
        raise GpuQueryError(f"{executable} did not answer within {timeout_s:g}s") from None
    except OSError as exc:
        raise GpuQueryError(f"{executable} could not be run: {exc}") from exc
    said = " ".join((done.stdout + " " + done.stderr).split())[:200]
    lost = lost_gpus(done.stdout + "\n" + done.stderr)
    if done.returncode != 0 and not lost:
        meaning = EXIT_MEANINGS.get(done.returncode, "unknown error")
        error = UnknownFieldError if "is not a valid field to query" in said else GpuQueryError
        raise error(f"{executable} exited {done.returncode} ({meaning}): {said or 'no output'}")
    return GpuReading(parse_gpu_csv(done.stdout, fields), lost)


def query_gpus(executable: str = "nvidia-smi", timeout_s: float = NVIDIA_SMI_TIMEOUT_S) -> List[GpuInfo]:
    """The GPUs nvidia-smi lists with the newest query (see :func:`read_gpus`)."""
    return read_gpus(executable, timeout_s).gpus


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> Optional[float]:
    """CPUs allowed by cgroup v2 ``cpu.max`` (``"200000 100000"`` is 2.0), or None when unlimited/unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def cgroup_memory_limit_mib(root: Path = CGROUP_ROOT) -> Optional[int]:
    """Memory allowed by cgroup v2 ``memory.max``, in MiB, or None when unlimited/unknown."""
    try:
        text = (root / "memory.max").read_text().strip()
    except OSError:
        return None
    return int(text) // MIB if text.isdigit() else None


def host_cpus(cgroup_root: Path = CGROUP_ROOT) -> float:
    """CPUs this process may use: its affinity set (or psutil's count), capped by the cgroup quota."""
    try:
        count = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        count = float(psutil.cpu_count(logical=True) or 1)
    limit = cgroup_cpu_limit(cgroup_root)
    return min(count, limit) if limit else count


def host_memory_mib(cgroup_root: Path = CGROUP_ROOT) -> Tuple[int, int]:
    """(total, available) memory in MiB: psutil, capped by the cgroup limit."""
    memory = psutil.virtual_memory()
    total, available = memory.total // MIB, memory.available // MIB
    limit = cgroup_memory_limit_mib(cgroup_root)
    if limit is not None and limit < total:
        return limit, min(available, limit)
    return total, available


@dataclass(frozen=True)
class HostInventory:
    """One look at the host. ``gpus`` are the GPUs this agent may use (after ``--gpus``)."""

    host: str
    cpus: float
    memory_mib: int
    memory_available_mib: int
    gpus: Tuple[GpuInfo, ...]
    gpu_problem: Optional[str] = None  # why there are no GPUs when nvidia-smi failed

    def gpu(self, gpu_id: str) -> Optional[GpuInfo]:
        return next((g for g in self.gpus if g.id == gpu_id), None)


def select_gpus(gpus: Sequence[GpuInfo], wanted: Optional[Sequence[str]]) -> Tuple[GpuInfo, ...]:
    """The GPUs named in ``wanted`` (indices or UUIDs; None = all), in index order."""
    if wanted is None:
        chosen = list(gpus)
    else:
        names = set(wanted)
        chosen = [g for g in gpus if g.id in names or (g.uuid and g.uuid in names)]
    return tuple(sorted(chosen, key=lambda g: gpu_sort_key(g.id)))


def capacity_of(settings: AgentSettings, inventory: HostInventory) -> Capacity:
    """What the agent may hand out: the host less what it keeps back, its GPUs, its labels."""
    return Capacity(
        cpus=max(0.0, inventory.cpus - settings.reserve_cpus),
        memory_mib=max(0, inventory.memory_mib - settings.reserve_memory_mib),
        slots=settings.max_jobs,
        gpus=tuple(g for g in inventory.gpus if g.usable),  # a quarantined or drained GPU is never handed out
        labels=dict(settings.labels),
    )


def capacity_json(settings: AgentSettings, inventory: HostInventory) -> Dict[str, Any]:
    """The capacity JSON of docs/architecture.md (``launchbay:agent:<id>:capacity``)."""
    capacity = capacity_of(settings, inventory)
    return {
        "agent_id": settings.agent_id,
        "host": settings.host,
        "labels": dict(settings.labels),
        "queues": list(settings.queues),
        "cpus": capacity.cpus,
        "memory_mib": capacity.memory_mib,
        "max_jobs": settings.max_jobs,
        "gpus": [g.to_capacity_dict() for g in inventory.gpus],  # every GPU, with its health
    }


class InventoryProbe:
    """Reads the host's inventory, warning once per distinct nvidia-smi failure.

    It remembers each GPU it has seen by PCI bus id, so a GPU nvidia-smi can no longer reach stays
    listed, unhealthy, instead of silently leaving the inventory.
    """

    def __init__(
        self, settings: AgentSettings, *, cgroup_root: Path = CGROUP_ROOT, timeout_s: float = NVIDIA_SMI_TIMEOUT_S
    ) -> None:
        self.settings = settings
        self.cgroup_root = cgroup_root
        self.timeout_s = timeout_s
        self.xids = XidReader(settings.kernel_log)
        self._variant = 0  # index into QUERY_VARIANTS: the first this nvidia-smi accepts
        self._known: Dict[str, GpuInfo] = {}
        self._last_problem: Optional[str] = None
        self._warned_missing: frozenset = frozenset()

    def read(self) -> HostInventory:
        gpus, problem = self._gpus()
        total, available = host_memory_mib(self.cgroup_root)
        return HostInventory(
            host=self.settings.host,
            cpus=host_cpus(self.cgroup_root),
            memory_mib=total,
            memory_available_mib=available,
            gpus=select_gpus(gpus, self.settings.gpus),
            gpu_problem=problem,
        )

    def _query(self) -> GpuReading:
        while True:
            try:
                return read_gpus(self.settings.nvidia_smi, self.timeout_s, QUERY_VARIANTS[self._variant])
            except UnknownFieldError as exc:
                if self._variant + 1 >= len(QUERY_VARIANTS):
                    raise
                self._variant += 1
                log.info("this nvidia-smi is older (%s); asking for fewer health fields", exc)

    def _gpus(self) -> Tuple[List[GpuInfo], Optional[str]]:
        try:
            reading = self._query()
        except GpuQueryError as exc:
            problem = str(exc)
            if problem != self._last_problem:
                log.warning("no GPUs for now: %s", problem, extra={"agent_id": self.settings.agent_id})
            self._last_problem = problem
            return [], problem
        if self._last_problem is not None:
            log.info("nvidia-smi answers again: %d GPU(s)", len(reading.gpus))
        self._last_problem = None
        self._known.update({bus_key(g.pci_bus_id): g for g in reading.gpus if g.pci_bus_id})
        gpus = mark_lost(reading.gpus, reading.lost, self._known)
        gpus = apply_xids(gpus, self.xids.read())
        self._warn_missing_gpus(gpus)
        return gpus, None

    def _warn_missing_gpus(self, gpus: Sequence[GpuInfo]) -> None:
        if self.settings.gpus is None:
            return
        present = {g.id for g in gpus} | {g.uuid for g in gpus}
        missing = frozenset(w for w in self.settings.gpus if w not in present)
        if missing and missing != self._warned_missing:
            log.warning("GPUs %s named in --gpus are not on this host", ", ".join(sorted(missing)))
        self._warned_missing = missing
