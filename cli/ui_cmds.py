"""``launchbay ui``: the launch page, served by waitress.

Bound to 127.0.0.1 by default. Binding to any other address requires ``LAUNCHBAY_UI_TOKEN``
(see ``launchbay.ui.security``); without it the command refuses to start (exit 2).
"""

from __future__ import annotations

import os
from typing import Optional

import click
from launchbay.queue_config.keys import Keys
from launchbay.redis_connection.connect import connect, redact_url, resolve_url
from launchbay.ui.security import TOKEN_ENV, check_bind, load_token_file

from .queue_cmds import REDIS_URL_HELP

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@click.command("ui")
@click.option(
    "--host", default=DEFAULT_HOST, show_default=True, help=f"Address to bind; not loopback needs {TOKEN_ENV}."
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="Port (0: any free one)."
)
@click.option("--redis-url", metavar="URL", default=None, help=REDIS_URL_HELP)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help="'name: token' lines, one token per user: a launch records that user as the submitter.",
)
@click.option(
    "--user-header",
    metavar="HEADER",
    help="Trust this reverse-proxy header (e.g. X-Forwarded-User) to name the submitter; only behind such a proxy.",
)
def ui_cmd(
    host: str, port: int, redis_url: Optional[str], token_file: Optional[str], user_header: Optional[str]
) -> None:
    """Serve the launch page: job definitions, a launch form per job, job pages with live logs, queues.

    \b
    Anyone who can open the page can launch and cancel jobs. Set LAUNCHBAY_UI_TOKEN
    to require a token (needed to bind anything but 127.0.0.1); open the page once
    as http://HOST:PORT/?token=TOKEN.
    """
    token = os.environ.get(TOKEN_ENV) or None
    named = load_token_file(token_file) if token_file else {}
    check_bind(host, token or ("named" if named else None))  # before Redis: a refused start is exit 2
    url = resolve_url(redis_url)
    # Flask and waitress load here, not at import: every other `launchbay` command stays as quick to start.
    from launchbay.ui.app import create_app
    from launchbay.ui.server import serve

    app = create_app(
        connect(url), keys=Keys.from_env(), token=token, bind_host=host, named_tokens=named, user_header=user_header
    )

    def announce(address: str) -> None:
        hint = f" (open {address}?token=... once, with the value of {TOKEN_ENV} or your own)" if token or named else ""
        click.echo(f"launchbay ui: serving {address} for Redis {redact_url(url)}{hint}; Ctrl-C stops", err=True)

    serve(app, host=host, port=port, on_ready=announce)


def register(group: click.Group) -> None:
    group.add_command(ui_cmd)
