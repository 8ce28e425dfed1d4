"""``launchbay inventory``: what this host has (CPUs, memory, GPUs with their health and drains), and
what the agent's ledger has claimed of it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Set, Tuple

import click
from launchbay.agent.gpu_health import apply_drain, drained_gpus
from launchbay.agent.inventory import HostInventory, InventoryProbe, capacity_json, capacity_of
from launchbay.agent.ledger import Ledger, LedgerEntry
from launchbay.agent.settings import ENV_PREFIX, AgentSettings
from launchbay.cli.agent_cmds import agent_options, configure_logging, load_settings
from launchbay.cli.gpu_cmds import health_cell
from launchbay.cli.queue_cmds import json_option, note, print_json, print_table, table
from launchbay.queue_config.agents import free_capacity
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.units import format_mib
from launchbay.redis_connection.connect import URL_ENV, connect, redis_errors_translated, resolve_url


@click.command("inventory")
@agent_options
@click.option(
    "--redis-url",
    metavar="URL",
    help="Read this host's agent ledger from this Redis, to show what is free [default: "
    f"${ENV_PREFIX}REDIS_URL or ${URL_ENV} when set, else the ledger is not read]",
)
@json_option
def inventory_cmd(config_file: Optional[Path], redis_url: Optional[str], as_json: bool, **given: Any) -> None:
    """Show what this host has (CPUs, memory, GPUs from nvidia-smi) and what is free for new jobs."""
    settings = load_settings(config_file, **given)
    configure_logging(False, fmt="%(levelname)s: %(message)s")
    inventory = InventoryProbe(settings).read()
    ledger, drained = _read_ledger(settings, redis_url)
    inventory = replace(inventory, gpus=tuple(apply_drain(inventory.gpus, drained)))
    report = inventory_report(settings, inventory, ledger)
    if as_json:
        print_json(report)
        return
    _print_inventory(report)


def _read_ledger(
    settings: AgentSettings, redis_url: Optional[str]
) -> Tuple[Optional[Dict[str, LedgerEntry]], Set[str]]:
    """The agent's ledger (None when no Redis is given or it cannot be read) and its drained GPUs."""
    url = redis_url or settings.redis_url
    if not url and not os.environ.get(URL_ENV):
        return None, set()  # do not start a private Redis just to read an empty ledger
    try:
        conn = connect(url)
        with redis_errors_translated(resolve_url(url)):
            keys = Keys.from_env()
            return Ledger(conn, keys, settings.agent_id).entries(), drained_gpus(conn, keys, settings.agent_id)
    except Exception as exc:  # the inventory is still worth showing without the ledger
        note(f"note: the agent's ledger could not be read ({exc}); claimed resources are not subtracted")
        return None, set()


def inventory_report(
    settings: AgentSettings, inventory: HostInventory, ledger: Optional[Dict[str, LedgerEntry]]
) -> Dict[str, Any]:
    """Everything ``launchbay inventory`` shows, as one JSON-ready dict."""
    capacity = capacity_of(settings, inventory)
    entries = list((ledger or {}).values())
    free = free_capacity(capacity, entries)
    claimed_by = {gpu: entry.job_id for entry in entries for gpu in entry.gpus}
    return {
        "agent_id": settings.agent_id,
        "host": inventory.host,
        "cpus_total": inventory.cpus,
        "memory_total_mib": inventory.memory_mib,
        "memory_available_mib": inventory.memory_available_mib,
        "reserve_cpus": settings.reserve_cpus,
        "reserve_memory_mib": settings.reserve_memory_mib,
        "capacity": capacity_json(settings, inventory),
        "ledger_read": ledger is not None,
        "free": {
            "cpus": round(free.cpus, 6),
            "memory_mib": free.memory_mib,
            "slots": free.slots,
            "gpus": [g.id for g in free.gpus],
        },
        "gpus": [
            {
                "id": g.id,
                "uuid": g.uuid,
                "name": g.name,
                "memory_total_mib": g.memory_total_mib,
                "memory_used_mib": g.memory_used_mib,
                "memory_free_mib": g.memory_free_mib,
                "utilization_pct": g.utilization_pct,
                "temperature_c": g.temperature_c,
                "health": g.health,
                "health_reason": g.health_reason,
                "claimed_by": claimed_by.get(g.id),
            }
            for g in inventory.gpus
        ],
        "gpu_problem": inventory.gpu_problem,
    }


def _print_inventory(report: Dict[str, Any]) -> None:
    capacity, free = report["capacity"], report["free"]
    click.echo(f"host {report['host']} (agent id {report['agent_id']})")
    click.echo(
        f"CPUs    {report['cpus_total']:g} total, {report['reserve_cpus']:g} kept back, "
        f"{capacity['cpus']:g} for jobs, {free['cpus']:g} free"
    )
    click.echo(
        f"memory  {format_mib(report['memory_total_mib'])} total "
        f"({format_mib(report['memory_available_mib'])} available now), "
        f"{format_mib(report['reserve_memory_mib'])} kept back, {format_mib(capacity['memory_mib'])} for jobs, "
        f"{format_mib(free['memory_mib'])} free"
    )
    click.echo(f"jobs    {capacity['max_jobs']} at most, {free['slots']} slots free")
    if report["gpu_problem"]:
        click.echo(f"GPUs    none usable: {report['gpu_problem']}")
    elif not report["gpus"]:
        click.echo("GPUs    none (no nvidia-smi, or it lists no GPU)")
    else:
        grid = table("GPU", "NAME", "MEMORY", "USED", "FREE", "UTIL", "TEMP", "HEALTH", "CLAIMED BY", "UUID")
        for g in report["gpus"]:
            grid.add_row(
                g["id"],
                g["name"],
                format_mib(g["memory_total_mib"]),
                format_mib(g["memory_used_mib"]),
                format_mib(g["memory_free_mib"]),
                "-" if g["utilization_pct"] is None else f"{g['utilization_pct']}%",
                "-" if g["temperature_c"] is None else f"{g['temperature_c']}C",
                health_cell(g),
                g["claimed_by"] or "-",
                g["uuid"],
            )
        print_table(grid)
    if not report["ledger_read"]:
        note("note: no Redis given (--redis-url), so resources claimed by a running agent are not subtracted")


# -- launchbay agents ---------------------------------------------------------------------------------


def register(group: click.Group) -> None:
    group.add_command(inventory_cmd)
