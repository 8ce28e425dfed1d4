"""``launchbay exporter`` (the queue-level ``/metrics``) and the agent's ``--metrics-*`` options.

The exporter holds no state: every scrape reads Redis (``launchbay.prometheus.fleet``),
so it may run anywhere that reaches Redis, as often as you like. ``launchbay ui`` serves the same
metrics on its own ``/metrics``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional

import click
from launchbay.queue_config.keys import Keys
from launchbay.redis_connection.connect import connect, redact_url, resolve_url

from .queue_cmds import REDIS_URL_HELP

DEFAULT_HOST = "127.0.0.1"
DEFAULT_EXPORTER_PORT = 9480
METRICS_PATH = "/metrics"


def metrics_options(func: Any) -> Any:
    """``--metrics-port`` and ``--metrics-host`` for ``launchbay agent`` (settings metrics_port, metrics_host)."""
    func = click.option(
        "--metrics-host",
        metavar="ADDRESS",
        help="Address /metrics binds to; anything but loopback lets every host that reaches it read job ids "
        "and GPU state [default: 127.0.0.1; env: LAUNCHBAY_AGENT_METRICS_HOST]",
    )(func)
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        metavar="PORT",
        help="Serve Prometheus metrics on http://ADDRESS:PORT/metrics (0: any free port, logged) "
        "[default: off; env: LAUNCHBAY_AGENT_METRICS_PORT]",
    )(func)


def metrics_wsgi_app(registry: Any) -> Callable[[Dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """prometheus_client's WSGI app on ``/metrics`` only; any other path is a 404."""
    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app(registry)

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"launchbay exporter: metrics are at {METRICS_PATH}\n".encode()]
        return metrics(environ, start_response)

    return app


@click.command("exporter")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_EXPORTER_PORT,
    show_default=True,
    help="Port (0: any free one, printed).",
)
@click.option("--redis-url", metavar="URL", default=None, help=REDIS_URL_HELP)
def exporter_cmd(host: str, port: int, redis_url: Optional[str]) -> None:
    """Serve the queue-level Prometheus metrics on http://HOST:PORT/metrics: queue depth by priority
    and pending reason, jobs by state and user, the oldest queued job's age, agents live and lost.

    Each agent serves its own metrics with `launchbay agent --metrics-port N`; docs/metrics.md lists
    every metric, a Grafana dashboard and alert rules.
    """
    from launchbay.prometheus.fleet import queue_registry
    from waitress import create_server

    url = resolve_url(redis_url)
    registry = queue_registry(connect(url), Keys.from_env())
    try:
        server = create_server(metrics_wsgi_app(registry), host=host, port=port, threads=4, ident="launchbay-exporter")
    except OSError as exc:
        raise click.BadParameter(f"cannot listen on {host}:{port} ({exc})", param_hint="--port") from exc
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"launchbay exporter: serving http://{shown}:{server.effective_port}{METRICS_PATH} "
        f"for Redis {redact_url(url)}; Ctrl-C stops",
        err=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def register(group: click.Group) -> None:
    group.add_command(exporter_cmd)
