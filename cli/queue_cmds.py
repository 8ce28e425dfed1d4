"""``launchbay queue apply|list|show|delete|pause|resume``, and the options every Redis command shares.

Read commands print rich tables, or JSON with ``--json``. Notes go to stderr so stdout stays
parseable.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from typing import Any, Callable, Dict, Optional

import click
import yaml
from launchbay.queue_config.job import ACTIVE_STATES, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig, load_queue_config
from launchbay.queue_config.store import QueueStore
from launchbay.queue_config.units import describe_limits
from launchbay.redis_connection.connect import connect, redis_errors_translated, resolve_url
from rich.console import Console
from rich.table import Table
from rich.text import Text

REDIS_URL_HELP = "Redis URL (redis://, rediss://, unix://). Default: $LAUNCHBAY_REDIS_URL, else a private local server."

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def uses_redis(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--redis-url``; call ``func`` with ``conn`` and ``keys``, Redis failures translated."""

    @click.option("--redis-url", metavar="URL", default=None, help=REDIS_URL_HELP)
    @functools.wraps(func)
    def wrapper(*args: Any, redis_url: Optional[str], **kwargs: Any) -> Any:
        url = resolve_url(redis_url)
        conn = connect(url)
        try:
            with redis_errors_translated(url):
                return func(*args, conn=conn, keys=Keys.from_env(), **kwargs)
        finally:
            conn.close()

    return wrapper


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def note(message: str) -> None:
    click.echo(message, err=True)


def console() -> Console:
    # Wide and plain when piped, so ids and paths are never cut or wrapped mid-word.
    return Console(width=None if click.get_text_stream("stdout").isatty() else 200, highlight=False)


def print_table(grid: Table) -> None:
    """Print a table without the padding rich adds after the last column."""
    out = console()
    with out.capture() as captured:
        out.print(grid)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())


#: C0 and C1 control characters but newline and tab: what a terminal would act on instead of show.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with terminal control characters shown as ``\\x1b`` instead of acted on.

    A record's fields come from submitters and jobs (a message is a job's own output), and an
    escape sequence printed raw can rewrite the terminal, retitle it or hide what came before.
    """
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class _PlainTable(Table):
    """A rich table whose cells are plain text: no markup, no terminal control characters."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        cells = [Text(printable(cell)) if isinstance(cell, str) else cell for cell in renderables]
        super().add_row(*cells, **kwargs)


def table(*columns: str) -> Table:
    grid = _PlainTable(box=None, header_style="bold", pad_edge=False)
    for column in columns:  # a column may be named by a job (a metric's name): plain text, like a cell
        grid.add_column(Text(printable(column)), overflow="fold")
    return grid


def when(epoch_s: Optional[float]) -> str:
    """Local time, to the second; ``-`` when unset."""
    if not epoch_s:
        return "-"
    return datetime.fromtimestamp(epoch_s).astimezone().isoformat(timespec="seconds")


def limits_text(config: QueueConfig) -> str:
    """``cpus<=32 memory<=256GiB ...`` for the queue table ("none" when the queue sets no limit)."""
    return describe_limits(config.limits, terse=True)


def queue_summary(store: QueueStore, config: QueueConfig) -> Dict[str, Any]:
    counts = store.job_counts(config.name)
    return {
        "name": config.name,
        "paused": store.is_paused(config.name),
        "updated_at": store.updated_at(config.name),
        "jobs": counts,
        "config": config.model_dump(mode="json"),
    }


@click.group("queue")
def queue_group() -> None:
    """Create, inspect and remove queues (configs in YAML, see queue_config/examples/)."""


@queue_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@uses_redis
def apply_cmd(file: str, conn: Any, keys: Keys) -> None:
    """Create or update the queue described by FILE (its paused flag is kept)."""
    config = load_queue_config(file)
    result = QueueStore(conn, keys).apply(config)
    click.echo(f"queue {config.name!r} {result}")


@queue_group.command("list")
@json_option
@uses_redis
def list_cmd(as_json: bool, conn: Any, keys: Keys) -> None:
    """List queues with their job counts and limits."""
    store = QueueStore(conn, keys)
    summaries = [queue_summary(store, config) for config in store.list()]
    if as_json:
        print_json(summaries)
        return
    if not summaries:
        note("no queues yet: create one with `launchbay queue apply FILE`")
        return
    grid = table("NAME", "PAUSED", "QUEUED", "RUNNING", "LIMITS", "DESCRIPTION")
    for summary in summaries:
        jobs = summary["jobs"]
        config = QueueConfig.model_validate(summary["config"])
        running = sum(jobs.get(state.value, 0) for state in ACTIVE_STATES)
        grid.add_row(
            config.name,
            "yes" if summary["paused"] else "no",
            str(jobs.get(State.QUEUED.value, 0)),
            str(running),
            limits_text(config),
            config.description,
        )
    print_table(grid)


@queue_group.command("show")
@click.argument("name")
@json_option
@uses_redis
def show_cmd(name: str, as_json: bool, conn: Any, keys: Keys) -> None:
    """Show one queue's config, state and job counts."""
    store = QueueStore(conn, keys)
    summary = queue_summary(store, store.get(name))
    if as_json:
        print_json(summary)
        return
    counts = ", ".join(f"{state} {count}" for state, count in sorted(summary["jobs"].items())) or "none"
    click.echo(f"queue:    {name}")
    click.echo(f"paused:   {'yes' if summary['paused'] else 'no'}")
    click.echo(f"updated:  {when(summary['updated_at'])}")
    click.echo(f"jobs:     {counts}")
    click.echo("config:")
    click.echo(yaml.safe_dump(summary["config"], sort_keys=False).rstrip())


@queue_group.command("delete")
@click.argument("name")
@click.option(
    "--force", is_flag=True, help="Also cancel the queue's queued jobs and ask agents to stop its running ones."
)
@uses_redis
def delete_cmd(name: str, force: bool, conn: Any, keys: Keys) -> None:
    """Delete a queue; refused while it has queued or running jobs unless --force."""
    counts = QueueStore(conn, keys).delete(name, force=force)
    queued = counts.get(State.QUEUED.value, 0)
    active = sum(counts.get(state.value, 0) for state in ACTIVE_STATES)
    extra = f" (canceled {queued} queued jobs, asked agents to stop {active})" if queued or active else ""
    click.echo(f"queue {name!r} deleted{extra}")


@queue_group.command("pause")
@click.argument("name")
@uses_redis
def pause_cmd(name: str, conn: Any, keys: Keys) -> None:
    """Stop agents from starting the queue's jobs (enqueue still accepts them)."""
    QueueStore(conn, keys).pause(name)
    click.echo(f"queue {name!r} paused")


@queue_group.command("resume")
@click.argument("name")
@uses_redis
def resume_cmd(name: str, conn: Any, keys: Keys) -> None:
    """Let agents start the queue's jobs again."""
    QueueStore(conn, keys).resume(name)
    click.echo(f"queue {name!r} resumed")


def register(group: click.Group) -> None:
    group.add_command(queue_group)
