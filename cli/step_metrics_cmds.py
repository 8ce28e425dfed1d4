"""``launchbay metrics JOB``: the steps a job logged, as a table or JSON lines, optionally followed.

The table has a STEP column and one column per key, in the order keys first appear (the reserved
``_timestamp`` and ``_runtime`` are left to ``--json``). With ``-f`` rows are printed as they
arrive, and the header again whenever a step brings a key not seen before.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Dict, Iterable, List, Tuple

import click
from launchbay.client import get_job
from launchbay.queue_config.keys import Keys

from .queue_cmds import note, print_table, printable, table, uses_redis

#: Reserved keys the table does not show (``--json`` has them).
HIDDEN_KEYS = ("_step", "_timestamp", "_runtime")
#: Narrowest column when following (values are printed before the widest is known).
FOLLOW_WIDTH = 10


def metrics_cap_options(func: Any) -> Any:
    """``--metrics-cap`` and ``--metrics-cap-entries`` for ``launchbay agent`` (what it keeps per job in Redis)."""
    func = click.option(
        "--metrics-cap",
        metavar="SIZE",
        help="Metrics bytes (metrics.jsonl lines) kept per job in Redis "
        "[default: 8MiB; env: LAUNCHBAY_AGENT_METRICS_CAP]",
    )(func)
    return click.option(
        "--metrics-cap-entries",
        type=click.IntRange(min=1),
        help="Metrics steps (metrics.jsonl lines) kept per job in Redis "
        "[default: 20000; env: LAUNCHBAY_AGENT_METRICS_CAP_ENTRIES]",
    )(func)


def format_value(value: Any) -> str:
    """A value as the table shows it: floats to 6 significant digits, JSON for the rest."""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def shown_keys(steps: Iterable[Dict[str, Any]], known: List[str]) -> List[str]:
    """``known`` plus the table keys of ``steps`` it lacks, in order of first appearance."""
    seen = set(known)
    for step in steps:
        for key in step:
            if key not in seen and key not in HIDDEN_KEYS:
                seen.add(key)
                known.append(key)
    return known


def _row(step: Dict[str, Any], keys: List[str]) -> List[str]:
    return [str(step.get("_step", "")), *(format_value(step[k]) if k in step else "" for k in keys)]


def _print_table(steps: List[Dict[str, Any]]) -> None:
    keys = shown_keys(steps, [])
    grid = table("STEP", *keys)
    for step in steps:
        grid.add_row(*_row(step, keys))
    print_table(grid)


def _print_following(steps: Iterable[Dict[str, Any]]) -> int:
    keys: List[str] = []
    widths: Tuple[int, ...] = ()
    printed = 0
    for step in steps:
        before = len(keys)
        shown_keys([step], keys)
        if len(keys) != before or not printed:
            names = [printable(name) for name in ("STEP", *keys)]  # the job names its metrics: never raw
            widths = tuple(max(FOLLOW_WIDTH, len(name)) for name in names)
            click.echo("  ".join(name.ljust(w) for name, w in zip(names, widths)).rstrip())
        click.echo("  ".join(printable(cell).ljust(w) for cell, w in zip(_row(step, keys), widths)).rstrip())
        sys.stdout.flush()
        printed += 1
    return printed


@click.command("metrics")
@click.argument("job_id", metavar="JOB")
@click.option("-f", "--follow", is_flag=True, help="Keep printing steps until the job ends.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per step (JSON lines).")
@uses_redis
def metrics_cmd(job_id: str, follow: bool, as_json: bool, conn: Any, keys: Keys) -> None:
    """Print the metrics job JOB logged: a table of step and keys, or JSON lines.

    \b
    The agent keeps up to its metrics cap per job (20000 steps, 8 MiB by
    default); the last value of each key is in `launchbay status JOB`.
    """
    handle = get_job(job_id, conn=conn, keys=keys)
    steps = handle.metrics(follow=follow)
    printed = 0
    if as_json:
        for step in steps:
            click.echo(json.dumps(step, sort_keys=True))
            printed += 1
    elif follow:
        printed = _print_following(steps)
    else:
        collected = list(steps)
        printed = len(collected)
        if collected:
            _print_table(collected)
    if handle.metrics_truncated:
        note(f"job {job_id}: the agent kept no more steps: {handle.metrics_truncated}")
    if not printed:
        note(f"no metrics from job {job_id} (it is {handle.state()}; a job logs them with the SDK's log)")


def summary_rows(summary: Dict[str, Any]) -> Iterable[Tuple[str, str]]:
    """``launchbay status`` rows for the record's ``summary``: one per key, reserved keys left out."""
    for key in sorted(summary):
        if not key.startswith("_"):
            yield f"summary {key}", format_value(summary[key])


def register(group: click.Group) -> None:
    group.add_command(metrics_cmd)
