"""The ``launchbay`` command line.

Each command family lives in its own module and is added to the group here. Errors are turned into
one line on stderr and a named exit code; no traceback reaches the user unless ``LAUNCHBAY_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys

import click

from launchbay import __version__
from launchbay.errors import DockerUnavailableError, LaunchbayError, RedisUnavailableError, UserError

EXIT_OK = 0
EXIT_FAILED = 1  # a job or check failed
EXIT_USAGE = 2  # bad input: fix the command, file or value and run again
EXIT_UNAVAILABLE = 3  # Redis or Docker cannot be reached: retry later


class LaunchbayGroup(click.Group):
    """A click group that turns launchbay errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise  # `launchbay queue` alone: click prints the help
        except click.UsageError as exc:  # a bad option or value: one line too, not click's three
            _fail(_usage_message(exc), EXIT_USAGE)
        except (RedisUnavailableError, DockerUnavailableError) as exc:
            _fail(str(exc), EXIT_UNAVAILABLE)
        except UserError as exc:
            _fail(str(exc), EXIT_USAGE)
        except LaunchbayError as exc:
            _fail(str(exc), EXIT_FAILED)


def _usage_message(exc: click.UsageError) -> str:
    where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
    return exc.format_message().rstrip(".") + where


def _fail(message: str, code: int) -> None:
    if os.environ.get("LAUNCHBAY_DEBUG") == "1":
        raise
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(cls=LaunchbayGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="launchbay")
def cli() -> None:
    """Run ML jobs with launch-time overrides on machines that have the resources they ask for.

    \b
    Typical flow:
      launchbay queue apply queue_config/examples/gpu.yaml
      launchbay agent -q gpu                  # on each machine
      launchbay enqueue job.yaml -q gpu --set trainer.learning_rate=0.1 --gpus A100:2
      launchbay logs JOB_ID -f
      launchbay metrics JOB_ID -f
    """


# Imported after the group exists: each command module registers its commands on it.
from launchbay.cli import (  # noqa: E402
    acl_cmds,
    agent_cmds,
    inventory_cmds,
    job_cmds,
    metrics_cmds,
    queue_cmds,
    step_metrics_cmds,
    sweep_cmds,
    ui_cmds,
)

for _module in (
    queue_cmds,
    job_cmds,
    step_metrics_cmds,
    sweep_cmds,
    agent_cmds,
    inventory_cmds,
    ui_cmds,
    metrics_cmds,
    acl_cmds,
):
    _module.register(cli)


def main() -> None:
    cli(prog_name="launchbay")


if __name__ == "__main__":
    main()
