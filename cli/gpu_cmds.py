"""GPU health on the command line: ``launchbay agent --drain-gpu N`` / ``--undrain-gpu N``, and the
health column of ``launchbay inventory`` and ``launchbay agents``.

A drain is a note in Redis (``{ns}:agent:{id}:drained_gpus``) that the running agent reads at once
(it is woken by a ``gpu_drain`` event) and on every inventory refresh: the GPU gets no new job,
the job already on it runs to its end. It survives agent restarts until ``--undrain-gpu``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Optional, Sequence

import click
from launchbay.agent.gpu_health import set_drained
from launchbay.agent.settings import AgentSettings
from launchbay.cli.queue_cmds import print_json
from launchbay.queue_config.keys import Keys
from launchbay.redis_connection.connect import connect, redis_errors_translated, resolve_url

from launchbay.errors import UserError

#: A GPU as nvidia-smi names it: its index, or its UUID (GPU-..., MIG-...).
GPU_NAME = re.compile(r"^(\d{1,3}|(GPU|MIG)-[0-9A-Za-z-]{1,80})$")


def drain_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--drain-gpu`` and ``--undrain-gpu`` (repeatable) for ``launchbay agent``, and ``--json``."""
    func = click.option(
        "--json", "as_json", is_flag=True, help="With --drain-gpu/--undrain-gpu: print the result as JSON."
    )(func)
    func = click.option(
        "--undrain-gpu",
        "undrain_gpus",
        multiple=True,
        metavar="N",
        help="Put GPU N (index or UUID) of the agent named by --agent-id back in service, then exit.",
    )(func)
    return click.option(
        "--drain-gpu",
        "drain_gpus",
        multiple=True,
        metavar="N",
        help="Operator: hand out GPU N (index or UUID) of the agent named by --agent-id no more (its running "
        "job finishes), then exit. The running agent sees it at once; it lasts until --undrain-gpu.",
    )(func)


def check_gpu_names(names: Sequence[str], option: str) -> None:
    for name in names:
        if not GPU_NAME.match(name):
            raise click.BadParameter(f"{name!r} is not a GPU index (0, 1, ...) or UUID (GPU-...)", param_hint=option)


def drain_report(drained: set, agent_id: str, *, alive: bool) -> Dict[str, Any]:
    return {"agent_id": agent_id, "drained_gpus": sorted(drained), "agent_alive": alive}


def run_drain(settings: AgentSettings, drain: Sequence[str], undrain: Sequence[str], *, as_json: bool) -> None:
    """Write the drains for ``settings.agent_id`` and say what is drained now."""
    check_gpu_names(drain, "--drain-gpu")
    check_gpu_names(undrain, "--undrain-gpu")
    both = set(drain) & set(undrain)
    if both:
        raise UserError(f"GPU {', '.join(sorted(both))} is both drained and undrained; give one of the two")
    url = resolve_url(settings.redis_url)
    keys = Keys.from_env()
    conn = connect(url)
    with redis_errors_translated(url):
        drained = set_drained(conn, keys, settings.agent_id, drain=list(drain), undrain=list(undrain))
        alive = bool(conn.exists(keys.agent_alive(settings.agent_id)))
    report = drain_report(drained, settings.agent_id, alive=alive)
    if as_json:
        print_json(report)
        return
    listed = ", ".join(report["drained_gpus"]) or "none"
    click.echo(f"agent {settings.agent_id}: drained GPUs: {listed}")
    if not alive:
        click.echo(f"note: agent {settings.agent_id} is not running now; it applies this when it starts", err=True)


def health_cell(gpu: Dict[str, Any]) -> str:
    """``ok``, or the health with its reason: ``unhealthy: xid 79: GPU has fallen off the bus``."""
    health = gpu.get("health") or "ok"
    reason = gpu.get("health_reason") or ""
    return health if health == "ok" or not reason else f"{health}: {reason}"


def gpu_summary(gpu: Dict[str, Any]) -> str:
    """One GPU in ``launchbay agents``: ``0:NVIDIA H100`` or ``2:NVIDIA H100 (unhealthy: ...)``."""
    text = f"{gpu['id']}:{gpu['name']}"
    return text if (gpu.get("health") or "ok") == "ok" else f"{text} ({health_cell(gpu)})"


def optional_json(value: Optional[int], unit: str) -> str:
    return "-" if value is None else f"{value}{unit}"
