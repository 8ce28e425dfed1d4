"""``launchbay agent install-service``: install the agent as a systemd service on this host.

It writes the packaged unit (``agent/launchbay-agent.service``, with this launchbay's path, the
environment file's path and a stop timeout filled in) and the environment file (mode 0600: it holds
the Redis URL and secrets), then has systemd reload and verify it. Everything is checked before
anything is written: a bad environment file is one line and exit 2, and no file changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import click
from launchbay.agent.settings import ENV_PREFIX, AgentSettings, resolve_settings
from launchbay.cli.queue_cmds import json_option, note, print_json
from launchbay.queue_config.store import QueueStore
from launchbay.queue_config.units import parse_duration_s
from launchbay.redis_connection.connect import URL_ENV, connect

from launchbay.errors import ConfigError, LaunchbayError

UNIT_NAME = "launchbay-agent.service"
UNIT_DIR = Path("/etc/systemd/system")
ENV_FILE = Path("/etc/launchbay/agent.env")
#: Shutdown after the last job ended (threads, final status) fits well within this.
STOP_MARGIN_S = 60
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_env_file(path: Path) -> Dict[str, str]:
    """The variables of a systemd ``EnvironmentFile`` (``NAME=value`` lines, ``#``/``;`` comments)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the environment file {path}: {exc.strerror or exc}") from exc
    values: Dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not ENV_NAME_RE.fullmatch(name):
            raise ConfigError(f"{path} line {number}: expected NAME=value, got {line[:60]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def check_env(path: Path, values: Dict[str, str]) -> Tuple[AgentSettings, str]:
    """The agent settings the file gives and its Redis URL; ConfigError naming what is wrong."""
    try:
        settings = resolve_settings(environ=values, config_file=None)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    url = settings.redis_url or values.get(URL_ENV, "")
    if not url:
        raise ConfigError(
            f"{path} sets no Redis URL: add {URL_ENV}=redis://... (a service must not start a private local Redis)"
        )
    if values.get(ENV_PREFIX + "CONFIG") and not Path(values[ENV_PREFIX + "CONFIG"]).is_file():
        raise ConfigError(f"{path}: {ENV_PREFIX}CONFIG names {values[ENV_PREFIX + 'CONFIG']}, which is not a file")
    return settings, url


def stop_timeout(settings: AgentSettings, url: str) -> Tuple[str, str]:
    """``(TimeoutStopSec value, why)``: as long as the agent's drain can last (see the unit's comment)."""
    try:
        conn = connect(url)
        longest = [QueueStore(conn).get(queue).limits.max_runtime_s for queue in settings.queues]
    except LaunchbayError as exc:
        return "infinity", f"the queues' max_runtime could not be read ({exc})"
    if not longest or None in longest:
        unbounded = [q for q, s in zip(settings.queues, longest) if s is None]
        return "infinity", f"queue {', '.join(unbounded)} has no limits.max_runtime, so a drain has no bound"
    seconds = max(longest) + int(settings.stop_grace_s + 0.999) + STOP_MARGIN_S
    return f"{seconds}s", f"longest max_runtime {max(longest)} s + stop_grace_s + {STOP_MARGIN_S} s"


def launchbay_path() -> str:
    """The ``launchbay`` executable of this installation (the one beside this Python, else on PATH)."""
    beside = Path(sys.executable).parent / "launchbay"
    found = str(beside) if beside.is_file() else shutil.which("launchbay")
    if not found:
        raise ConfigError("cannot find the launchbay executable (not beside this Python, not on PATH)")
    return str(Path(found).absolute())


def render_unit(*, launchbay: str, env_file: Path, timeout: str) -> str:
    template = resources.files("launchbay.agent").joinpath(UNIT_NAME).read_text()
    return (
        template.replace("@LAUNCHBAY@", launchbay)
        .replace("@ENV_FILE@", str(env_file))
        .replace("@STOP_TIMEOUT@", timeout)
    )


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    # Created with its final mode, so the secrets are never readable by others, not even for a moment.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def _systemd_steps(unit: Path, *, live: bool) -> Dict[str, str]:
    """``systemctl daemon-reload`` where systemd runs, ``systemd-analyze verify`` where it is installed."""
    steps: Dict[str, str] = {}
    if not live:
        steps["daemon_reload"] = "skipped (not the host's /etc)"
    elif shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        done = subprocess.run(["systemctl", "daemon-reload"], capture_output=True, text=True, timeout=60)
        steps["daemon_reload"] = "ok" if done.returncode == 0 else f"failed: {done.stderr.strip()}"
    else:
        steps["daemon_reload"] = "skipped (systemd is not running here)"
    if shutil.which("systemd-analyze"):
        done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
        problems = [line for line in done.stderr.splitlines() if unit.name in line or "launchbay" in line]
        steps["verify"] = "ok" if done.returncode == 0 and not problems else "failed: " + "; ".join(problems)
    else:
        steps["verify"] = "skipped (no systemd-analyze)"
    return steps


@click.command("install-service")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Environment file to install as {ENV_FILE} (mode 0600): {URL_ENV}, LAUNCHBAY_AGENT_* settings and "
    "the secrets queues read from the agent's environment [default: keep the installed one]",
)
@click.option(
    "--stop-timeout",
    metavar="DURATION|infinity",
    help="TimeoutStopSec, how long a stop may drain [default: the longest max_runtime of the agent's queues "
    "+ stop_grace_s + 60s, read from Redis; infinity when one has none]",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/"),
    show_default=True,
    help="Install under this folder instead of / (for an image or a chroot; no daemon-reload then)",
)
@click.option("--dry-run", is_flag=True, help="Check and show what would be written; write nothing.")
@json_option
def install_service_cmd(
    env_file: Optional[Path], stop_timeout: Optional[str], root: Path, dry_run: bool, as_json: bool
) -> None:
    """Install `launchbay agent` as the systemd service launchbay-agent: unit, environment file, reload."""
    installed_env = root / ENV_FILE.relative_to("/")
    unit_path = root / UNIT_DIR.relative_to("/") / UNIT_NAME
    source = env_file or installed_env
    if env_file is None and not installed_env.is_file():
        raise ConfigError(f"no {installed_env} yet: give --env-file FILE with {URL_ENV}=redis://...")
    values = read_env_file(source)
    settings, url = check_env(source, values)
    timeout, why = _chosen_timeout(stop_timeout, settings, url)
    unit_text = render_unit(launchbay=launchbay_path(), env_file=ENV_FILE, timeout=timeout)
    report: Dict[str, Any] = {
        "unit": str(unit_path),
        "env_file": str(installed_env),
        "stop_timeout": timeout,
        "stop_timeout_why": why,
        "queues": list(settings.queues),
        "written": not dry_run,
    }
    if dry_run:
        report["unit_text"] = unit_text
    else:
        if env_file is not None:
            _write(installed_env, source.read_text(), 0o600)
        _write(unit_path, unit_text, 0o644)
        report.update(_systemd_steps(unit_path, live=root.resolve() == Path("/")))
    _show(report, as_json=as_json)
    if any(str(report.get(step, "")).startswith("failed") for step in ("daemon_reload", "verify")):
        sys.exit(1)


def _chosen_timeout(given: Optional[str], settings: AgentSettings, url: str) -> Tuple[str, str]:
    if given is None:
        return stop_timeout(settings, url)
    if given.strip().lower() == "infinity":
        return "infinity", "--stop-timeout"
    try:
        return f"{parse_duration_s(given, what='--stop-timeout')}s", "--stop-timeout"
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _show(report: Dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    if not report["written"]:
        click.echo(report["unit_text"], nl=False)
        note(f"dry run: would write {report['unit']} and {report['env_file']} (0600); nothing written")
    else:
        click.echo(f"wrote {report['unit']} and {report['env_file']} (0600)")
        for step in ("daemon_reload", "verify"):
            click.echo(f"{step.replace('_', '-')}: {report[step]}")
    click.echo(f"TimeoutStopSec={report['stop_timeout']} ({report['stop_timeout_why']})")
    if report.get("daemon_reload") == "ok":
        click.echo("next: sudo systemctl enable --now launchbay-agent; journalctl -u launchbay-agent -f")
