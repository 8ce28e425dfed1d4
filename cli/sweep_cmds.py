"""``launchbay sweep create|show|list|pause|resume|stop``: many trials of one job, ranked by a metric.

Agents make the trials (``sweeps/driver.py``); these commands only write the sweep and read
it back. docs/sweeps.md has a worked example.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

import click
from launchbay.client import sweeps
from launchbay.client.sweeps import param_text, trial_value_text, value_text
from launchbay.queue_config.keys import Keys
from launchbay.sweeps.store import ENDED_STATES

from .queue_cmds import json_option, note, print_json, print_table, table, uses_redis, when

ENDED_SWEEP_STATES = tuple(s.value for s in ENDED_STATES)
WAIT_POLL_S = 1.0


@click.group("sweep")
def sweep_group() -> None:
    """Sweeps over a job's launch inputs: run-config and config-file keys, W&B's sweep format.

    \b
      launchbay sweep create sweep.yaml -q gpu      # prints the sweep id
      launchbay sweep show SWEEP                     # best trial, every trial
      launchbay sweep pause|resume|stop SWEEP
    """


@sweep_group.command("create")
@click.argument("sweep_file", metavar="SWEEP.yaml", type=click.Path(dir_okay=False))
@click.option("-q", "--queue", required=True, help="Queue every trial is enqueued on.")
@click.option("--job", metavar="JOBSPEC|NAME", help="The job to sweep (default: the file's job:).")
@click.option("--user", envvar="LAUNCHBAY_USER", help="Submitter of its trials (as for `launchbay enqueue`).")
@click.option("--wait", is_flag=True, help="Follow the trials until the sweep ends; print each as it ends.")
@json_option
@uses_redis
def create_cmd(sweep_file: str, queue: str, job: Optional[str], user: Optional[str], wait: bool, as_json: bool,
               conn: Any, keys: Keys) -> None:  # fmt: skip
    """Check SWEEP.yaml against the job's launch inputs and start the sweep; prints its id.

    A parameter the job excludes, a range outside its schema or a value of the wrong type is
    refused here, one line per problem (exit 2), and nothing is written.
    """
    sweep_id, notes = sweeps.create(sweep_file, queue, conn=conn, keys=keys, user=user, job=job)
    for line in notes:
        note(line)
    if as_json and not wait:
        print_json({"id": sweep_id, "notes": notes})
    elif not as_json:
        click.echo(sweep_id)
    if wait:
        _wait(conn, keys, sweep_id, quiet=as_json)
        if as_json:
            print_json(sweeps.show(conn, keys, sweep_id))


@sweep_group.command("show")
@click.argument("sweep_id", metavar="SWEEP")
@click.option("--wait", is_flag=True, help="Follow the trials until the sweep ends, then show it.")
@json_option
@uses_redis
def show_cmd(sweep_id: str, wait: bool, as_json: bool, conn: Any, keys: Keys) -> None:
    """State, method, metric, the best trial, and each trial's job, values, state and metric."""
    if wait:
        _wait(conn, keys, sweep_id, quiet=as_json)
    view = sweeps.show(conn, keys, sweep_id)
    if as_json:
        print_json(view)
        return
    _print_header(view)
    grid = table("TRIAL", "JOB", "STATE", view["metric"]["name"] or "VALUE", *view["parameters"])
    for trial in view["trials"]:
        grid.add_row(str(trial["number"]), trial["job_id"], trial["label"], trial_value_text(trial),
                     *[param_text(trial["params"].get(name)) for name in view["parameters"]])  # fmt: skip
    print_table(grid)


@sweep_group.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@uses_redis
def list_cmd(limit: int, as_json: bool, conn: Any, keys: Keys) -> None:
    """Sweeps, newest first: state, method, trials ended of made, best value."""
    rows = sweeps.list_sweeps(conn, keys, limit)
    if as_json:
        print_json(rows)
        return
    grid = table("SWEEP", "NAME", "STATE", "METHOD", "QUEUE", "TRIALS", "BEST", "CREATED")
    for row in rows:
        best = row.get("best") or {}
        metric = (row.get("metric") or {}).get("name") or ""
        grid.add_row(row["id"], row.get("name") or "", row["state"], row.get("method") or "", row.get("queue") or "",
                     f"{row.get('ended', 0)}/{row.get('trials', 0)} of {row.get('trial_cap', '?')}",
                     f"{metric} {value_text(best['value'])}" if best else "-", when(row.get("created_at")))  # fmt: skip
    print_table(grid)


def _command(action: str, help_text: str) -> None:
    @sweep_group.command(action, help=help_text)
    @click.argument("sweep_id", metavar="SWEEP")
    @uses_redis
    def command(sweep_id: str, conn: Any, keys: Keys) -> None:
        state = sweeps.command(conn, keys, sweep_id, action)
        click.echo(f"sweep {sweep_id}: {state}")


_command("pause", "Make no new trials; the running ones go on and are counted.")
_command("resume", "Make trials again after `sweep pause`.")
_command("stop", "Make no new trials; the sweep ends `stopped` once its running trials end.")


def _wait(conn: Any, keys: Keys, sweep_id: str, *, quiet: bool) -> None:
    """Print each trial as it ends (to stderr with --json) until the sweep ends."""
    seen: Dict[int, Dict[str, Any]] = {}
    while True:
        view = sweeps.show(conn, keys, sweep_id)
        for trial in view["trials"]:
            if trial["ended"] and trial["number"] not in seen:
                seen[trial["number"]] = trial
                best = sweeps.best_of(list(seen.values()), view["metric"]["goal"])  # of the trials printed so far
                line = _progress_line(view, trial, len(seen), best)
                note(line) if quiet else click.echo(line)
        if view["state"] in ENDED_SWEEP_STATES:
            return
        time.sleep(WAIT_POLL_S)


def _progress_line(view: Dict[str, Any], trial: Dict[str, Any], ended: int, best: Optional[Dict[str, Any]]) -> str:
    params = ", ".join(f"{k}={param_text(v)}" for k, v in trial["params"].items())
    best_text = f"best {value_text(best['value'])} (trial {best['job_id']})" if best else "no best yet"
    return f"trial {trial['number']} {trial['label']}: {trial_value_text(trial)} [{params}]; {ended}/{view['trial_cap']} ended, {best_text}"


def _print_header(view: Dict[str, Any]) -> None:
    metric = view["metric"]
    best = view["best"]
    click.echo(f"sweep {view['id']} ({view['name']}): {view['state']}, {view['method']} on queue {view['queue']}")
    click.echo(f"metric: {metric['name']} ({metric['goal']}); trials: {len(view['trials'])} of at most "
               f"{view['trial_cap']}, {view['max_parallel']} at a time; driver: {view['driver'] or 'none now'}")  # fmt: skip
    if best:
        params = ", ".join(f"{k}={param_text(v)}" for k, v in best["params"].items())
        click.echo(f"best: {metric['name']} {value_text(best['value'])} in job {best['job_id']} [{params}]")
    else:
        click.echo("best: none yet (no trial has finished with the metric)")
    if view.get("message"):
        click.echo(f"note: {view['message']}")


def register(cli: click.Group) -> None:
    cli.add_command(sweep_group)
