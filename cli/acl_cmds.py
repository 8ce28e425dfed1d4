"""``launchbay acl``: the Redis ACL users of the admin, agent and submitter roles, for a namespace.

Prints ``ACL SETUSER`` lines to paste into ``redis-cli`` (replace ``PASSWORD``); nothing is sent
to Redis. The rules come from ``launchbay.queue_config.acl``, the same ones the tests run.
"""

from __future__ import annotations

from typing import Optional, Tuple

import click
from launchbay.queue_config.acl import setuser_lines
from launchbay.queue_config.keys import NAMESPACE_ENV, Keys

from .queue_cmds import json_option, print_json


@click.command("acl")
@click.option(
    "--namespace", metavar="NS", default=None, help=f"Key namespace [default: ${NAMESPACE_ENV} or launchbay]."
)
@click.option("--submitter", "submitters", metavar="NAME", multiple=True, help="A submitter user (repeatable).")
@click.option("--admin-user", default="launchbay-admin", show_default=True, help="The admin's Redis user name.")
@click.option("--agent-user", default="launchbay-agent", show_default=True, help="The agents' Redis user name.")
@click.option(
    "--ui-user", default=None, metavar="NAME", help="Also the role of `launchbay ui`'s Redis user (named tokens)."
)
@json_option
def acl_cmd(
    namespace: Optional[str],
    submitters: Tuple[str, ...],
    admin_user: str,
    agent_user: str,
    ui_user: Optional[str],
    as_json: bool,
) -> None:
    """Print the Redis ACL lines of the roles (admin, agent, one per submitter) for a namespace.

    \b
    A submitter may enqueue, cancel and requeue its own jobs (ids NAME_...) and read the rest;
    an agent may not change queue configs; only the admin may. The UI's user (--ui-user) acts
    for its named tokens' users, each within what its own role allows. Example:
      launchbay acl --submitter alice --submitter bob | redis-cli -x ...
    """
    keys = Keys(namespace) if namespace else Keys.from_env()
    lines = setuser_lines(keys, list(submitters) or ["submitter"], admin=admin_user, agent=agent_user, ui=ui_user)
    if as_json:
        print_json([{"user": user, "role": role, "acl": line} for user, role, line in lines])
        return
    for _user, _role, line in lines:
        click.echo(line)
    click.echo("ACL SETUSER default off")


def register(group: click.Group) -> None:
    group.add_command(acl_cmd)
