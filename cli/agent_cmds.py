"""``launchbay agent`` (the per-host daemon), ``launchbay inventory`` and ``launchbay agents``.

Agent settings are settled by ``launchbay.agent.settings.resolve_settings``: a flag here beats a
``LAUNCHBAY_AGENT_*`` variable, which beats the ``--config`` file, which beats the default.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import click
from launchbay.agent.settings import CONFIG_ENV, ENV_PREFIX, AgentSettings, parse_labels, resolve_settings
from launchbay.cli.gpu_cmds import drain_options, gpu_summary, run_drain
from launchbay.cli.metrics_cmds import metrics_options
from launchbay.cli.queue_cmds import json_option, note, print_json, print_table, table, uses_redis, when
from launchbay.cli.service_cmds import install_service_cmd
from launchbay.cli.step_metrics_cmds import metrics_cap_options
from launchbay.queue_config.agents import read_agents
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.units import format_mib
from launchbay.redis_connection.connect import URL_ENV, connect, redact_url, redis_errors_translated, resolve_url

from launchbay.errors import DockerUnavailableError

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _help(text: str, field: str, default: str) -> str:
    return f"{text} [default: {default}; env: {_env(field)}]"


def agent_options(func: Any) -> Any:
    """The options that describe this agent; shared by ``agent`` and ``inventory``."""
    options = [
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help=f"YAML or JSON file of agent settings (any setting name below, e.g. reserve_memory: 4GiB); "
            f"flags and env win over it [default: none; env: {CONFIG_ENV}]",
        ),
        click.option(
            "--gpus",
            metavar="IDS|all",
            help=_help("Host GPU indices (or UUIDs) this agent may hand out, e.g. 0,1,3", "gpus", "all"),
        ),
        click.option(
            "--reserve-cpus", type=float, metavar="N", help=_help("CPUs kept back for the host", "reserve_cpus", "0")
        ),
        click.option(
            "--reserve-memory",
            metavar="SIZE",
            help=_help("Memory kept back for the host, e.g. 4GiB", "reserve_memory", "0"),
        ),
        click.option(
            "--label",
            "labels",
            multiple=True,
            metavar="KEY=VALUE",
            help=_help("Label that job constraints match; repeat for more (env: zone=eu,rack=7)", "labels", "none"),
        ),
        click.option(
            "--advertise-addr",
            metavar="ADDRESS",
            help=_help(
                "Address other hosts reach this one at (multi-node jobs' MASTER_ADDR and peer list)",
                "advertise_addr",
                "the host's primary address",
            ),
        ),
        click.option("--max-jobs", type=int, metavar="N", help=_help("Most jobs running at once", "max_jobs", "8")),
        click.option(
            "--agent-id",
            metavar="ID",
            help=_help(
                "This agent's id in Redis; keep it across restarts to adopt running jobs", "agent_id", "hostname"
            ),
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _flags(**given: Any) -> Dict[str, Any]:
    """The options given on the command line, as settings (None = not given)."""
    flags = {k: v for k, v in given.items() if v is not None and v != ()}
    if "labels" in flags:
        try:
            flags["labels"] = parse_labels(flags["labels"])
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--label") from exc
    if "queues" in flags:
        flags["queues"] = list(flags["queues"])
    if "state_dir" in flags:
        flags["state_dir"] = Path(flags["state_dir"])
    return flags


def load_settings(config_file: Optional[Path], **given: Any) -> AgentSettings:
    return resolve_settings(_flags(**given), config_file=config_file)


# -- launchbay agent --------------------------------------------------------------------------------


@click.group("agent", invoke_without_command=True)
@click.option(
    "--redis-url",
    metavar="URL",
    help=f"Redis URL (redis://, rediss://, unix://) [default: ${URL_ENV}, else a private local server; "
    f"env: {_env('redis_url')}]",
)
@click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    metavar="QUEUE",
    help=_help("Queue to take jobs from; repeat for more, in priority order (env: gpu,cpu)", "queues", "default"),
)
@agent_options
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help=_help("Folder for job payloads, outputs and logs", "state_dir", "$XDG_STATE_HOME/launchbay/agent"),
)
@click.option(
    "--log-cap",
    metavar="SIZE",
    help=_help("Log bytes kept per job in Redis (the full log stays in the state dir)", "log_cap", "8MiB"),
)
@metrics_cap_options
@click.option(
    "--drain/--no-drain",
    default=None,
    help=_help("On SIGTERM/SIGINT wait for running jobs instead of leaving them for the next agent", "drain", "no"),
)
@click.option(
    "--json-logs/--text-logs",
    default=None,
    help=_help("Log one JSON object per line", "json_logs", "text"),
)
@metrics_options
@click.option(
    "--check",
    is_flag=True,
    help="Health check: exit 0 when Redis and the Docker engine answer, 1 otherwise (for a Docker HEALTHCHECK).",
)
@click.option(
    "--once",
    is_flag=True,
    help="Claim jobs until nothing fits, wait for them to end, then exit (for tests and batch hosts).",
)
@drain_options
@click.pass_context
def agent_cmd(
    ctx: click.Context,
    config_file: Optional[Path],
    check: bool,
    once: bool,
    drain_gpus: Tuple[str, ...],
    undrain_gpus: Tuple[str, ...],
    as_json: bool,
    **given: Any,
) -> None:
    """Run the agent on this host: take the queued jobs that fit its free CPUs, memory and GPUs and run
    each in a Docker container.

    Settings not shown as flags (heartbeat_interval_s 3, heartbeat_ttl_s 10, lost_grace_s 15,
    poll_interval_s 5, lookahead 64, reserve_after_s 300, inventory_refresh_s 10,
    reaper_interval_s 5, stop_grace_s 10, docker_host, nvidia_smi) come from LAUNCHBAY_AGENT_<NAME>
    or the --config file. SIGTERM/SIGINT stop claiming and leave running containers to be adopted by
    the next start with the same --agent-id (unless --drain). `launchbay agent install-service` installs
    it as a systemd service.
    """
    if ctx.invoked_subcommand:
        return
    # A stop asked for while the agent is still starting (imports, first Redis and Docker calls take
    # seconds on a busy host) is kept and honoured once the agent exists, instead of Python's default
    # action killing the process half-way through its start.
    early_stop: List[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda sig, _frame: early_stop.append(sig))
    # Imported here, not at the top: the daemon and the Docker SDK take about half a second to load,
    # and every other launchbay command would pay for them.
    from launchbay.agent.daemon import Agent
    from launchbay.agent.runtime import DockerRuntime

    settings = load_settings(config_file, **given)
    configure_logging(settings.json_logs)
    if drain_gpus or undrain_gpus:
        run_drain(settings, drain_gpus, undrain_gpus, as_json=as_json)
        return
    if check:
        sys.exit(_health_check(settings))
    runtime = DockerRuntime(docker_host=settings.docker_host)
    if once and not runtime.ping():
        raise DockerUnavailableError("the Docker engine does not answer; --once has nothing to run jobs with")
    url = resolve_url(settings.redis_url)
    conn = connect(url)
    with redis_errors_translated(url):
        agent = Agent(settings, conn=conn, runtime=runtime)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda sig, _frame: _stop_on_signal(agent, sig))
        if early_stop:
            logging.getLogger("launchbay.agent").info(
                "agent %s stopped before serving (%s during start-up)",
                settings.agent_id,
                signal.Signals(early_stop[0]).name,
            )
            sys.exit(0)
        code = agent.run(once=once)
    sys.exit(code)


def _stop_on_signal(agent: Any, signum: int) -> None:
    """Stop the agent, saying in its log what happens to its running jobs (``journalctl`` shows it)."""
    name = signal.Signals(signum).name
    again = agent.status.state in ("draining", "stopping")
    agent.request_stop()
    running = len(agent.supervisor.running_job_ids())
    left = f"{running} running job(s) keep running for the next start of agent {agent.settings.agent_id} to adopt"
    if again:
        message = f"{name} again: not waiting any more; {left}"
    elif agent.status.state == "draining":
        message = (
            f"{name}: draining: no new jobs; waiting for {running} running job(s) to end (another {name} stops waiting)"
        )
    else:
        message = f"{name}: stopping: no new jobs; {left}"
    logging.getLogger("launchbay.agent").info(message)


def _health_check(settings: AgentSettings) -> int:
    from launchbay.agent.runtime import DockerRuntime  # see agent_cmd

    healthy = True
    try:
        url = resolve_url(settings.redis_url)
        connect(url).ping()
        click.echo(f"redis: ok ({redact_url(url)})")
    except Exception as exc:
        click.echo(f"redis: unreachable ({exc})")
        healthy = False
    if DockerRuntime(docker_host=settings.docker_host, timeout_s=10).ping():
        click.echo("docker: ok")
    else:
        click.echo("docker: unreachable")
        healthy = False
    return EXIT_HEALTHY if healthy else EXIT_UNHEALTHY


class _JsonFormatter(logging.Formatter):
    FIELDS = ("job_id", "queue", "agent_id")

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({f: getattr(record, f) for f in self.FIELDS if hasattr(record, f)})
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, sort_keys=True)


def configure_logging(json_logs: bool, *, fmt: str = "%(asctime)s %(levelname)s %(message)s") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_logs else logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


# -- launchbay inventory ------------------------------------------------------------------------------


@click.command("agents")
@click.option("--all", "include_gone", is_flag=True, help="Also list agents whose heartbeat has stopped.")
@json_option
@uses_redis
def agents_cmd(include_gone: bool, as_json: bool, conn: Any, keys: Keys) -> None:
    """List live agents: what each can hand out, its status, and the jobs it runs."""
    agents = read_agents(conn, keys, include_gone=include_gone)
    if as_json:
        print_json(agents)
        return
    if not agents:
        note("no live agents: start one with `launchbay agent -q QUEUE` on a machine with Docker")
        return
    grid = table("AGENT", "STATUS", "QUEUES", "CPUS", "MEMORY", "GPUS", "JOBS", "LAST BEAT")
    for agent in agents:
        capacity = agent["capacity"] or {}
        gpus = capacity.get("gpus") or []
        jobs = agent["jobs"]
        grid.add_row(
            agent["agent_id"],
            agent["status"]
            + ("" if agent["docker"] != "down" else f" ({agent.get('docker_problem') or 'docker down'})")
            + (f" ({agent['ledger_problem']})" if agent["ledger_problem"] else ""),
            ",".join(capacity.get("queues") or []),
            f"{capacity.get('cpus', 0):g}",
            format_mib(capacity.get("memory_mib")),
            ",".join(gpu_summary(g) for g in gpus) or "-",
            " ".join(f"{j['job_id']}[{','.join(j['gpus'])}]" if j["gpus"] else j["job_id"] for j in jobs)
            or f"none of {capacity.get('max_jobs', '?')}",
            when(agent["beat_at"]),
        )
    print_table(grid)


def register(group: click.Group) -> None:
    agent_cmd.add_command(install_service_cmd)
    group.add_command(agent_cmd)
    group.add_command(agents_cmd)
