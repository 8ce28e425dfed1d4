"""``launchbay enqueue|status|list|logs|cancel|requeue`` and ``launchbay job show|list``.

A thin layer over ``launchbay.client``: parse the options, call the API, print the result. In
plain mode ``enqueue`` prints only the job id on stdout (``JOB=$(launchbay enqueue ...)``); notes
and warnings go to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, Optional, Tuple

import click
from launchbay.client import JobHandle, adhoc_spec, enqueue, get_job, load_spec, with_changes
from launchbay.client.fit import describe_request
from launchbay.client.jobs import list_records, with_pending
from launchbay.client.overrides import parse_file_options, parse_set_options
from launchbay.queue_config.inputs_check import section_rows
from launchbay.queue_config.job import JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import PRIORITIES, JobSpec
from launchbay.queue_config.store import QueueStore
from launchbay.queue_config.units import format_duration

from launchbay.errors import NotFoundError, UserError

from .queue_cmds import json_option, note, print_json, print_table, table, uses_redis, when
from .step_metrics_cmds import summary_rows

#: ``--wait`` exit code for a canceled job: 128 + SIGINT, what a shell reports for an interrupted command.
EXIT_CANCELED = 130
EXIT_FAILED_WITHOUT_CODE = 1


def exit_code_for(record: JobRecord) -> int:
    """The ``--wait`` exit code: the job's own exit code, 1 if it failed without one, 130 if canceled."""
    if record.state is State.CANCELED:
        return EXIT_CANCELED
    code = record.exit_code
    if record.state is State.FAILED:
        return code if code else EXIT_FAILED_WITHOUT_CODE
    return code or 0


def _pairs(items: Tuple[str, ...], option: str) -> Dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{option} {item!r} must look like NAME=VALUE")
        pairs[key] = value
    return pairs


def _spec_from_args(args: Tuple[str, ...], options: Dict[str, Any]) -> JobSpec:
    """The spec file (``args[0]``, with ``args[1:]`` as a new command), or an ad-hoc spec for ``--image``."""
    env, constraints = _pairs(options["env"], "--env"), _pairs(options["constraint"], "--constraint")
    if options["image"]:
        spec = adhoc_spec(options["image"], args, name=options["name"], env=env)
        return with_changes(spec, constraints=constraints)
    if not args:
        raise UserError("give a JOBSPEC file, or --image IMAGE for an ad-hoc job (launchbay enqueue --help)")
    if options["name"]:
        raise UserError("--name is for ad-hoc jobs (--image); a job spec names itself")
    return with_changes(load_spec(args[0]), command=args[1:], env=env, constraints=constraints)


@click.command("enqueue", context_settings={"allow_interspersed_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[JOBSPEC] [-- CMD ARGS...]")
@click.option("-q", "--queue", required=True, help="Queue to enqueue into.")
@click.option("--image", help="Ad-hoc job: run this image (the command goes after --).")
@click.option("--name", help="Ad-hoc job name (default: made from the image).")
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Run-config override; VALUE is typed like YAML."
)
@click.option("--config", "config_file", metavar="FILE", help="YAML/JSON file of run-config overrides (--set wins).")
@click.option(
    "--file-set", "file_sets", multiple=True, metavar="PATH:KEY=VALUE", help="Override a key of config file PATH."
)
@click.option(
    "--file-config", "file_configs", multiple=True, metavar="PATH=FILE", help="Overrides for config file PATH."
)
@click.option(
    "--nodes",
    type=click.IntRange(min=1),
    help="Run on this many agents at once (one member per host; resources are per node). Default: the spec's, else 1.",
)
@click.option("--gpus", metavar="N|MODEL:N", help="GPU count, or model and count as SkyPilot writes it (A100:2).")
@click.option("--cpus", type=float, help="CPUs (may be fractional).")
@click.option("--memory", metavar="SIZE", help="Memory, e.g. 16GiB or 8g.")
@click.option("--gpu-memory", metavar="SIZE", help="Minimum memory per GPU, e.g. 40GiB.")
@click.option("--env", multiple=True, metavar="NAME=VALUE", help="Extra environment variable for the container.")
@click.option("--constraint", multiple=True, metavar="LABEL=VALUE", help="Agent label that must match.")
@click.option("--priority", type=click.Choice(PRIORITIES), default="normal", show_default=True)
@click.option("--max-runtime", metavar="DURATION", help="Stop the job after this long, e.g. 2h or 1h30m.")
@click.option(
    "--user",
    envvar="LAUNCHBAY_USER",
    help="Submitter to record (default: the Redis ACL user, else $LAUNCHBAY_USER, else your OS user name).",
)
@click.option("--wait", is_flag=True, help="Wait for the job to end; exit with its exit code.")
@click.option("--follow", is_flag=True, help="Stream the job's logs, then exit like --wait.")
@json_option
@uses_redis
def enqueue_cmd(
    args: Tuple[str, ...], queue: str, nodes: Optional[int], as_json: bool, conn: Any, keys: Keys, **options: Any
) -> None:
    """Enqueue JOBSPEC (a YAML file) on a queue, or an ad-hoc --image job; prints the job id.

    \b
    With --wait or --follow the exit code is the job's: its exit code when it
    finished or failed with one, 1 when it failed without one (e.g. the image
    could not be pulled), 130 when it was canceled (or you pressed Ctrl-C).
    """
    spec = _spec_from_args(args, options)
    resources = {key: options[key] for key in ("cpus", "memory", "gpus", "gpu_memory")}
    handle = enqueue(
        spec,
        queue,
        overrides=parse_set_options(options["sets"], options["config_file"]),
        file_overrides=parse_file_options(options["file_sets"], options["file_configs"]),
        resources=resources,
        max_runtime=options["max_runtime"],
        priority=options["priority"],
        conn=conn,
        keys=keys,
        user=options["user"],
        nodes=nodes,
    )
    for line in handle.notes:
        note(line)
    if not as_json:
        click.echo(handle.id)
    if options["wait"] or options["follow"]:
        _wait_and_exit(handle, follow=options["follow"], as_json=as_json)
    if as_json:
        print_json({"id": handle.id, "notes": handle.notes, "status": handle.status()})


def _wait_and_exit(handle: JobHandle, *, follow: bool, as_json: bool) -> None:
    try:
        if follow:
            for line in handle.logs(follow=True):
                click.echo(line)
        record = JobRecord.from_fields(handle.id, handle.wait())
    except KeyboardInterrupt:
        note(f"stopped waiting; job {handle.id} keeps going (launchbay cancel {handle.id} stops it)")
        sys.exit(EXIT_CANCELED)
    if as_json:
        print_json({"id": handle.id, "notes": handle.notes, "status": record.as_json()})
    reason = f", {record.reason}" if record.reason else ""
    code = record.exit_code
    note(f"job {handle.id} {record.state}{reason} (exit code {'-' if code is None else code})")
    sys.exit(exit_code_for(record))


#: (JobRecord attribute, label) of the status table's plain rows, in order; empty values are left out.
STATUS_FIELDS = (
    ("state", "state"),
    ("pending_reason", "waiting"),
    ("pending_detail", "why"),
    ("submitter", "submitter"),
    ("reason", "reason"),
    ("message", "message"),
    ("exit_code", "exit code"),
    ("name", "job"),
    ("queue", "queue"),
    ("priority", "priority"),
    ("agent", "agent"),
    ("host", "host"),
    ("container", "container"),
    ("attempts", "attempts"),
    ("cancel_requested", "cancel requested"),
    ("sweep", "sweep"),
    ("trial", "trial"),
)
#: The ``<state>_at`` rows, in the order a job passes them.
TIMESTAMPS = (State.QUEUED, State.STARTING, State.RUNNING, State.FINISHED, State.FAILED, State.CANCELED)


def _shown(record: JobRecord, attribute: str) -> Optional[str]:
    """A plain row's value as the table prints it (the stored text), or None when the job has none."""
    if attribute not in record.fields:  # not stored: the typed default ("normal", 0, False) is not shown
        return None
    value = getattr(record, attribute)
    if attribute == "cancel_requested":
        return "1" if value else None
    return None if value in (None, "") else str(value)


def _status_rows(record: JobRecord):
    yield "id", record.id
    for attribute, label in STATUS_FIELDS:
        value = _shown(record, attribute)
        if value is not None:
            yield label, value
    yield "image", record.spec.get("image", "-")
    yield "command", " ".join(record.spec.get("command") or []) or "(image default)"
    yield "gpus", ",".join(record.gpus) or "-"
    yield "request", describe_request(record.request)
    yield "max runtime", format_duration(record.max_runtime_s)
    if record.pending_reason:
        start = record.estimated_start
        yield "estimated start", when(start) if start else "unknown (a job in the way has no max runtime)"
    for state in TIMESTAMPS:
        if record.times.get(state.value):
            yield state.value, when(record.times[state.value])
    for label, value in (
        ("constraints", record.constraints),
        ("run config", record.run_config),
        ("file overrides", record.file_overrides),
        ("effective config", record.effective_config),
    ):
        if value:
            yield label, json.dumps(value, sort_keys=True)
    if record.summary is not None:
        yield from summary_rows(record.summary)


@click.command("status")
@click.argument("job_id", metavar="JOB")
@json_option
@uses_redis
def status_cmd(job_id: str, as_json: bool, conn: Any, keys: Keys) -> None:
    """Show a job's state, why it waits, reason, exit code, placement, timestamps, overrides and metrics summary."""
    handle = get_job(job_id, conn=conn, keys=keys)
    record = with_pending(conn, keys, [handle.record()])[0]
    nodes = handle.members() if record.nodes > 1 else []
    if as_json:
        print_json({**record.as_json(), "nodes": [n.as_json() for n in nodes]} if nodes else record.as_json())
        return
    grid = table("FIELD", "VALUE")
    for label, value in _status_rows(record):
        grid.add_row(label, value)
    for node in nodes:
        code = node.exit_code
        where = f"{node.agent} on {node.host}" if node.agent else "not placed"
        grid.add_row(f"rank {node.rank}", f"{node.state}{'' if code is None else f', exit {code}'}: {where}")
    print_table(grid)


@click.command("list")
@click.option("-q", "--queue", help="Only this queue.")
@click.option("--state", type=click.Choice([s.value for s in State]), help="Only jobs in this state.")
@click.option("--user", help="Only jobs this submitter enqueued.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many, newest first."
)
@json_option
@uses_redis
def list_cmd(
    queue: Optional[str], state: Optional[str], user: Optional[str], limit: int, as_json: bool, conn: Any, keys: Keys
) -> None:
    """List the newest jobs (REASON: why an ended job ended, or why a queued one waits)."""
    records = list_records(conn, keys, queue=queue, state=state, limit=limit, user=user)
    if as_json:
        print_json([r.as_json() for r in records])
        return
    grid = table("ID", "NAME", "QUEUE", "USER", "STATE", "REASON", "EXIT", "AGENT", "QUEUED")
    for r in records:
        grid.add_row(
            r.id,
            r.name,
            r.queue,
            r.submitter,
            str(r.state),
            r.reason or r.pending_reason,
            "" if r.exit_code is None else str(r.exit_code),
            r.agent or "",
            when(r.times.get(State.QUEUED.value)),
        )
    print_table(grid)


@click.command("logs")
@click.argument("job_id", metavar="JOB")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@click.option(
    "--rank", type=click.IntRange(min=0), default=0, show_default=True, help="A multi-node job's member to show."
)
@json_option
@uses_redis
def logs_cmd(job_id: str, follow: bool, rank: int, as_json: bool, conn: Any, keys: Keys) -> None:
    """Print a job's output (capped by the agent; the full log stays on the agent's host).

    A multi-node job's log is its rank 0's; --rank K shows member K's."""
    handle = get_job(job_id, conn=conn, keys=keys)
    nodes = handle.record().nodes
    if rank >= nodes:
        raise UserError(f"job {job_id} has {nodes} member(s), ranks 0 to {nodes - 1}; there is no rank {rank}")
    if as_json:
        print_json(list(handle.logs(follow=follow, rank=rank)))
        return
    printed = 0
    for line in handle.logs(follow=follow, rank=rank):
        click.echo(line)
        printed += 1
    if not printed:
        note(f"no output from job {job_id} (it is {handle.state()})")


@click.command("cancel")
@click.argument("job_id", metavar="JOB")
@uses_redis
def cancel_cmd(job_id: str, conn: Any, keys: Keys) -> None:
    """Cancel a job: at once if still queued, else ask its agent to stop it."""
    result = get_job(job_id, conn=conn, keys=keys).cancel()
    if result == State.CANCELED:
        click.echo(f"job {job_id} canceled")
    else:
        click.echo(f"job {job_id}: cancel requested; the agent stops it")


@click.command("requeue")
@click.argument("job_id", metavar="JOB")
@uses_redis
def requeue_cmd(job_id: str, conn: Any, keys: Keys) -> None:
    """Put a finished, failed or canceled job back in its queue (same id, same overrides)."""
    record = JobRecord.from_fields(job_id, get_job(job_id, conn=conn, keys=keys).requeue())
    click.echo(f"job {job_id} queued again on {record.queue!r}")


@click.group("job")
def job_group() -> None:
    """Job definitions: the inputs each job's last run recorded."""


@job_group.command("show")
@click.argument("name")
@json_option
@uses_redis
def job_show_cmd(name: str, as_json: bool, conn: Any, keys: Keys) -> None:
    """Show the input keys, types and schema job NAME's last run recorded."""
    store = QueueStore(conn, keys)
    jobdef = store.get_jobdef(name)
    if jobdef is None:
        known = [entry["name"] for entry in store.list_jobdefs()]
        if name in known:
            raise NotFoundError(f"job {name!r} has not recorded its inputs yet; an agent records them when it runs")
        raise NotFoundError(f"unknown job {name!r}; known jobs: {', '.join(known) or 'none'}")
    inputs = jobdef["inputs"]
    if as_json:
        print_json({"name": name, "job_id": jobdef["job_id"], "recorded_at": jobdef["recorded_at"], **inputs})
        return
    click.echo(f"job {name}: inputs recorded by job {jobdef['job_id']} at {when(jobdef['recorded_at'])}")
    sections = {"run config": inputs.get("run_config")}
    sections.update({f"file {path}": section for path, section in (inputs.get("files") or {}).items()})
    grid = table("SECTION", "KEY", "TYPE", "OVERRIDABLE")
    for title, section in sections.items():
        for key, kind, verdict in section_rows(section):
            grid.add_row(title, key, kind, verdict)
    print_table(grid)
    for title, section in sections.items():
        if section and section.get("schema"):
            click.echo(f"{title} schema: {json.dumps(section['schema'], sort_keys=True)}")


@job_group.command("list")
@json_option
@uses_redis
def job_list_cmd(as_json: bool, conn: Any, keys: Keys) -> None:
    """List job names, and whether and when each recorded its inputs."""
    entries = QueueStore(conn, keys).list_jobdefs()
    if as_json:
        print_json(entries)
        return
    grid = table("NAME", "INPUTS RECORDED", "BY JOB", "AT")
    for entry in entries:
        recorded = "yes" if entry["recorded"] else "not yet"
        grid.add_row(entry["name"], recorded, entry["job_id"] or "-", when(entry["recorded_at"]))
    print_table(grid)


def register(group: click.Group) -> None:
    for command in (enqueue_cmd, status_cmd, list_cmd, logs_cmd, cancel_cmd, requeue_cmd, job_group):
        group.add_command(command)
