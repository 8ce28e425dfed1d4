"""``init()`` and the Run it returns: the job's config with launch overrides applied."""

from __future__ import annotations

import sys
from typing import Any, Optional

from .config import Config, as_config_dict
from .defaults import load_defaults, script_dir
from .manage import track
from .record import write_records
from .state import STATE


class Run:
    """One run of the job. ``config`` behaves like ``wandb.Run.config``; use as a context manager."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.finished = False

    def finish(self) -> None:
        """Record the final config; the Run stops receiving re-filtered overrides."""
        if not self.finished:
            write_records(STATE)
            self.finished = True

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.finish()

    def __repr__(self) -> str:
        state = "finished" if self.finished else "active"
        return f"<launchbay Run ({state}) config={self.config!r}>"


def init(config: Any = None) -> Run:
    """Start a Run whose config is ``config-defaults.yaml`` < ``--configs`` files < ``config`` < overrides.

    ``config`` may be a dict, an ``argparse.Namespace``, an absl/TF flags object or any object
    with attributes. Launch overrides are filtered by the job's ``manage_config`` declarations
    (all of them apply when there is none) and validated against its schema. A previous
    active Run is finished first.
    """
    if STATE.run is not None:
        STATE.run.finish()
    values = load_defaults(script_dir(), sys.argv[1:])
    values.update(as_config_dict(config))
    STATE.run = Run(Config(values))
    track()
    try:
        STATE.apply_run_overrides()
    finally:
        write_records(STATE)
    return STATE.run


def current_run() -> Optional[Run]:
    """The active Run, or None before ``init()`` and after ``finish()``."""
    run = STATE.run
    return run if run is not None and not run.finished else None
