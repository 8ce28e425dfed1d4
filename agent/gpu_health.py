"""Is each GPU fit to be handed out? nvidia-smi's health fields, the kernel's XID reports, operator drains.

Where each fault is read (nvidia-smi's query fields are documented by ``nvidia-smi --help-query-gpu``):

====================================  =================================================  ==========================
condition                             source                                             health_reason
====================================  =================================================  ==========================
uncorrectable (double-bit) ECC        ``ecc.errors.uncorrected.volatile.total`` > 0      uncorrectable ECC errors: N
page retirement pending (<= Volta)    ``retired_pages.pending`` = Yes                    retired pages pending
row remapping pending (>= Ampere)     ``remapped_rows.pending`` = Yes                    row remapping pending
row remapping failed                  ``remapped_rows.failure`` = Yes                    row remapping failed
HW slowdown                           ``clocks_event_reasons.hw_slowdown`` = Active      hw slowdown
                                      (``clocks_throttle_reasons.*`` before driver 535)
GPU needs a reset                     any field reads ``[GPU requires reset]``           GPU requires reset
GPU fallen off the bus / lost         nvidia-smi prints ``Unable to determine the        GPU is lost: ...
                                      device handle for GPU <bus id>: ...``
critical XID                          kernel log: ``NVRM: Xid (PCI:<bus id>): N, ...``   xid N: <what it means>
====================================  =================================================  ==========================

XIDs are not in nvidia-smi's query fields (NVML reports them only as events to a process that
subscribed before they happened), so the agent reads the kernel's ring buffer, ``/dev/kmsg`` by
default (setting ``kernel_log``; it needs CAP_SYSLOG or ``kernel.dmesg_restrict=0``; the agent
logs once when it cannot read it and goes on without XIDs). Only XIDs that mean broken hardware
quarantine a GPU (:data:`CRITICAL_XIDS`); XID 13, 31, 43 and 45 are a program's own faults.
The kernel keeps an XID until the host reboots, which is what these faults need anyway.

Drains: ``launchbay agent --drain-gpu N`` adds N to the agent's set ``{ns}:agent:{id}:drained_gpus``
and publishes ``{"type": "gpu_drain", "agent": id}``; the agent re-reads its inventory at once. A
drained GPU gets no new job; the job already on it runs to its end.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from dataclasses import replace
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import redis
from launchbay.agent.reaper import retry_policy
from launchbay.queue_config import events
from launchbay.queue_config.job import JobRecord, Outcome, Reason, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.matching import GPU_DRAINED, GPU_OK, GPU_UNHEALTHY, GpuInfo
from launchbay.queue_config.models import QueueConfig

from launchbay.text import as_text

log = logging.getLogger(__name__)

DRAINED_REASON = "drained by operator"
REQUIRES_RESET = "[GPU requires reset]"
#: XIDs that mean the GPU itself is faulty (NVIDIA's "XID Errors" table, DCGM's health watches).
CRITICAL_XIDS: Dict[int, str] = {
    48: "double-bit ECC error",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping event",
    64: "ECC page retirement or row remapping failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    140: "unrecovered ECC error",
}
_XID_LINE = re.compile(r"NVRM: Xid \(PCI:([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+)(?:\.[0-9A-Fa-f])?\): (\d+),\s*(.*)")
_LOST_LINE = re.compile(
    r"Unable to determine the device handle for GPU\s*([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+)[^:]*:\s*(.*)"
)
#: Bytes of kernel log read at most per look (the ring buffer is a few MiB at most).
KERNEL_LOG_MAX_BYTES = 16 << 20
#: Critical XIDs kept per GPU bus from a kernel log read as it grows (the latest names the reason).
XIDS_KEPT = 100


def bus_key(bus_id: str) -> str:
    """One spelling for a PCI address: nvidia-smi's ``00000000:3B:00.0`` and the kernel's
    ``0000:3b:00`` both become ``0000:3b:00``."""
    parts = bus_id.strip().lower().split(".")[0].split(":")
    if len(parts) != 3:
        return bus_id.strip().lower()
    domain, bus, device = parts
    return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}"


# -- nvidia-smi's health fields ------------------------------------------------------------------------


def _yes(value: str) -> bool:
    return value.strip().lower() in {"yes", "active"}


def judge(fields: Mapping[str, str]) -> Tuple[str, str]:
    """(health, reason) from one GPU's query fields, named as in the query."""
    if any(value.strip() == REQUIRES_RESET for value in fields.values()):
        return GPU_UNHEALTHY, "GPU requires reset"
    ecc = fields.get("ecc.errors.uncorrected.volatile.total", "").strip()
    if ecc.isdigit() and int(ecc) > 0:
        return GPU_UNHEALTHY, f"uncorrectable ECC errors: {int(ecc)}"
    if _yes(fields.get("remapped_rows.failure", "")):
        return GPU_UNHEALTHY, "row remapping failed"
    if _yes(fields.get("remapped_rows.pending", "")):
        return GPU_UNHEALTHY, "row remapping pending"
    if _yes(fields.get("retired_pages.pending", "")):
        return GPU_UNHEALTHY, "retired pages pending"
    for name in ("clocks_event_reasons.hw_slowdown", "clocks_throttle_reasons.hw_slowdown"):
        if _yes(fields.get(name, "")):
            return GPU_UNHEALTHY, "hw slowdown"
    return GPU_OK, ""


def lost_gpus(text: str) -> Dict[str, str]:
    """``{bus key: nvidia-smi's words}`` for each GPU it could not reach (fallen off the bus, lost)."""
    lost = {}
    for line in text.splitlines():
        match = _LOST_LINE.search(line)
        if match:
            lost[bus_key(match.group(1))] = " ".join(match.group(2).split()).rstrip(".")
    return lost


def mark_lost(gpus: Sequence[GpuInfo], lost: Mapping[str, str], known: Mapping[str, GpuInfo]) -> List[GpuInfo]:
    """``gpus`` plus the GPUs nvidia-smi lost, as last seen (``known`` by bus key), marked unhealthy."""
    out = list(gpus)
    listed = {bus_key(g.pci_bus_id) for g in gpus if g.pci_bus_id}
    for key, words in lost.items():
        seen = known.get(key)
        if seen is None or key in listed:
            continue
        out.append(
            replace(
                seen,
                memory_used_mib=None,
                memory_free_mib=None,
                utilization_pct=None,
                temperature_c=None,
                health=GPU_UNHEALTHY,
                health_reason=f"GPU is lost: {words}" if "lost" not in words.lower() else words,
            )
        )
    return out


# -- XIDs from the kernel log ----------------------------------------------------------------------------


def parse_xids(text: str) -> Dict[str, List[int]]:
    """``{bus key: [xid, ...]}`` of the critical XIDs in kernel log text, oldest first."""
    found: Dict[str, List[int]] = {}
    for line in text.splitlines():
        match = _XID_LINE.search(line)
        if match and int(match.group(2)) in CRITICAL_XIDS:
            found.setdefault(bus_key(match.group(1)), []).append(int(match.group(2)))
    return found


def read_kernel_log(path: str) -> str:
    """The kernel log's text: ``/dev/kmsg`` record by record without blocking, or a plain file."""
    if stat.S_ISCHR(os.stat(path).st_mode):
        tail = KmsgTail(path)
        try:
            return tail.read_new()
        finally:
            tail.close()
    with open(path, "rb") as handle:
        return handle.read(KERNEL_LOG_MAX_BYTES).decode(errors="replace")


class KmsgTail:
    """``/dev/kmsg`` kept open: each :meth:`read_new` returns the records logged since the last one.

    Each open descriptor of ``/dev/kmsg`` has its own position, so a reader that stays open reads a
    record once; reading the whole buffer again at every inventory refresh (~100 KiB, a thousand
    reads) was most of an idle agent's CPU."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: Optional[int] = None

    def read_new(self) -> str:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        records: List[str] = []
        size = 0
        try:
            while size < KERNEL_LOG_MAX_BYTES:
                try:
                    chunk = os.read(self._fd, 8192)  # one record per read; "prio,seq,usec,flags;message"
                except OSError as exc:
                    if exc.errno == errno.EPIPE:  # overwritten before we read it: skip ahead
                        continue
                    if exc.errno == errno.EAGAIN:
                        break
                    raise
                if not chunk:
                    break
                size += len(chunk)
                records.append(chunk.decode(errors="replace").partition(";")[2])
        except OSError:
            self.close()
            raise
        return "".join(records)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class XidReader:
    """Reads the critical XIDs of the kernel log; says once when it cannot.

    ``/dev/kmsg`` (a character device) is read as it grows (:class:`KmsgTail`), the XIDs found kept; a
    plain file is read whole each time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._problem: Optional[str] = None
        self._tail: Optional[KmsgTail] = None
        self._found: Dict[str, List[int]] = {}

    def read(self) -> Dict[str, List[int]]:
        if not self.path:
            return {}
        try:
            text = self._read_text()
        except OSError as exc:
            problem = f"cannot read the kernel log {self.path} for GPU XID errors ({exc.strerror or exc})"
            if problem != self._problem:
                log.info("%s; set kernel_log to a readable file or '' to stop trying", problem)
            self._problem = problem
            return {}
        self._problem = None
        if self._tail is None:
            return parse_xids(text)
        for bus, xids in parse_xids(text).items():
            self._found[bus] = (self._found.get(bus, []) + xids)[-XIDS_KEPT:]  # the latest name the reason
        return {bus: list(xids) for bus, xids in self._found.items()}

    def _read_text(self) -> str:
        if self._tail is None and stat.S_ISCHR(os.stat(self.path).st_mode):
            self._tail = KmsgTail(self.path)
        return self._tail.read_new() if self._tail is not None else read_kernel_log(self.path)


def apply_xids(gpus: Sequence[GpuInfo], xids: Mapping[str, List[int]]) -> List[GpuInfo]:
    """Quarantine each GPU whose bus id has a critical XID (the latest one names the reason)."""
    out = []
    for gpu in gpus:
        found = xids.get(bus_key(gpu.pci_bus_id)) if gpu.pci_bus_id else None
        if found and gpu.health == GPU_OK:
            xid = found[-1]
            gpu = replace(gpu, health=GPU_UNHEALTHY, health_reason=f"xid {xid}: {CRITICAL_XIDS[xid]}")
        out.append(gpu)
    return out


def apply_drain(gpus: Sequence[GpuInfo], drained: Iterable[str]) -> List[GpuInfo]:
    """Mark the GPUs an operator drained (by index or UUID); a fault already found is kept as the reason."""
    names = set(drained)
    out = []
    for gpu in gpus:
        if (gpu.id in names or (gpu.uuid and gpu.uuid in names)) and gpu.health == GPU_OK:
            gpu = replace(gpu, health=GPU_DRAINED, health_reason=DRAINED_REASON)
        out.append(gpu)
    return out


# -- operator drains (Redis) -----------------------------------------------------------------------------


def drained_gpus(conn: redis.Redis, keys: Keys, agent_id: str) -> Set[str]:
    return {as_text(m) for m in conn.smembers(keys.agent_drained_gpus(agent_id))}


def set_drained(
    conn: redis.Redis, keys: Keys, agent_id: str, *, drain: Sequence[str], undrain: Sequence[str]
) -> Set[str]:
    """Drain and undrain GPUs of ``agent_id``, wake the agent; returns the drained set as it now is."""
    key = keys.agent_drained_gpus(agent_id)
    with conn.pipeline(transaction=True) as pipe:
        if drain:
            pipe.sadd(key, *drain)
        if undrain:
            pipe.srem(key, *undrain)
        pipe.smembers(key)
        events.publish(pipe, keys, events.GpuDrain(agent_id))
        replies = pipe.execute()
    return {as_text(m) for m in replies[-2]}


# -- jobs on a GPU that failed ---------------------------------------------------------------------------


def failed_gpus(gpus: Sequence[GpuInfo]) -> Dict[str, str]:
    """``{gpu id: reason}`` of the unhealthy GPUs (a drained GPU keeps its job)."""
    return {g.id: g.health_reason for g in gpus if g.health == GPU_UNHEALTHY}


def gpu_failure_outcome(
    record: JobRecord, queue_config_for: Callable[[str], QueueConfig], why: str
) -> Tuple[State, str]:
    """(state, message) for a job whose GPU failed: ``queued`` when the queue's retry policy says
    ``on_gpu_failed: requeue`` and the job was claimed at most ``max_requeues`` times, else ``failed``."""
    policy = retry_policy(queue_config_for, record.queue)
    attempts = record.attempts or 1
    if policy.on_gpu_failed == "requeue" and attempts <= policy.max_requeues:
        return State.QUEUED, f"{why}; put back in the queue (requeue {attempts} of {policy.max_requeues})"
    if policy.on_gpu_failed == "requeue":
        why += f"; not requeued again: claimed {attempts} times, max_requeues is {policy.max_requeues}"
    return State.FAILED, why


def jobs_on_failed_gpus(gpus: Sequence[GpuInfo], allocations: Iterable[Tuple[str, Sequence[str]]]) -> Dict[str, str]:
    """``{job id: why}`` for each running job that holds an unhealthy GPU."""
    failed = failed_gpus(gpus)
    hit = {}
    for job_id, job_gpus in allocations:
        bad = [g for g in job_gpus if g in failed]
        if bad:
            hit[job_id] = "; ".join(f"GPU {g} became unhealthy ({failed[g]})" for g in bad)
    return hit


class GpuWatch:
    """The daemon's part in GPU health: applies operator drains to each fresh inventory, logs each
    change of a GPU's health, and says which running jobs must end because their GPU failed."""

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        agent_id: str,
        *,
        records: Records,
        queue_config_for: Callable[[str], QueueConfig],
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.agent_id = agent_id
        self.records = records
        self.queue_config_for = queue_config_for
        self._health: Dict[str, Tuple[str, str]] = {}
        self._ended: Set[str] = set()  # jobs already told to end, so they are told once
        self._drained: Set[str] = set()

    def review(self, gpus: Sequence[GpuInfo]) -> Tuple[GpuInfo, ...]:
        """``gpus`` with the operator's drains applied (the last known drains when Redis does not answer)."""
        try:
            self._drained = drained_gpus(self.conn, self.keys, self.agent_id)
        except redis.RedisError as exc:
            log.debug("drained GPUs not read (%s); keeping the last known", exc)
        gpus = apply_drain(gpus, self._drained)
        for gpu in gpus:
            now = (gpu.health, gpu.health_reason)
            if self._health.get(gpu.id, (GPU_OK, "")) != now:
                level = logging.WARNING if gpu.health == GPU_UNHEALTHY else logging.INFO
                log.log(
                    level, "GPU %s is %s%s", gpu.id, gpu.health, f": {gpu.health_reason}" if gpu.health_reason else ""
                )
            self._health[gpu.id] = now
        return tuple(gpus)

    def jobs_to_end(self, gpus: Sequence[GpuInfo], running: Iterable[Tuple[str, Sequence[str]]]) -> Dict[str, Outcome]:
        """``{job id: how it ends}`` for the running jobs on a GPU that became unhealthy (each job once)."""
        running = list(running)
        self._ended &= {job_id for job_id, _ in running}
        ends = {}
        for job_id, why in jobs_on_failed_gpus(gpus, running).items():
            if job_id in self._ended:
                continue
            record = self.records.load(job_id) or JobRecord(job_id, state=None)
            state, message = gpu_failure_outcome(record, self.queue_config_for, why)
            ends[job_id] = Outcome(state, Reason.GPU_FAILED, message=message)
            self._ended.add(job_id)
        return ends

    def end_jobs(
        self,
        gpus: Sequence[GpuInfo],
        running: Iterable[Tuple[str, Sequence[str]]],
        end_with: Callable[[str, Outcome], None],
    ) -> None:
        """Tell ``end_with`` (the supervisor) to end each job of :meth:`jobs_to_end`."""
        for job_id, outcome in self.jobs_to_end(gpus, running).items():
            log.warning("job %s: %s", job_id, outcome.message, extra={"job_id": job_id})
            end_with(job_id, outcome)
