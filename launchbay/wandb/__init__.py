"""A module shaped like ``wandb``, so that a W&B Launch job moves over by changing one import::

    import launchbay.wandb as wandb                  # was: import wandb
    from launchbay.wandb.sdk import launch           # was: from wandb.sdk import launch

It is a thin layer over :mod:`launchbay.sdk` (which does the filtering, the schema checks and
the records): ``init`` takes every keyword ``wandb.init`` takes, ``log`` writes metrics.jsonl,
and ``run``, ``config``, ``summary``, ``finish``, ``require``, ``Settings``, ``login`` and
``termlog``/``termwarn``/``termerror`` exist. When the real ``wandb`` package is importable,
``init``, ``log``, the summary and ``finish`` are also forwarded to it (see ``_forward``).
Standard library and PyYAML only, like the SDK.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from launchbay import sdk as _sdk
from launchbay.sdk.config import Config, as_config_dict
from launchbay.sdk.defaults import file_values
from launchbay.sdk.errors import SdkError
from launchbay.sdk.runs import Run

from . import _forward
from . import sdk as sdk

__all__ = [
    "Config",
    "Error",
    "Run",
    "Settings",
    "finish",
    "init",
    "log",
    "login",
    "require",
    "sdk",
    "termerror",
    "termlog",
    "termwarn",
]

Error = SdkError

#: ``init`` keywords that describe the run to W&B; launchbay keeps them on the Run and forwards them.
#: The rest of ``wandb.init``'s keywords (wandb 0.31): accepted and forwarded, nothing to do here.
_OTHER_KEYWORDS = frozenset(
    {"force", "resume_from", "fork_from", "save_code", "tensorboard", "sync_tensorboard", "monitor_gym", "anonymous"}
)
_RUN_FIELDS = ("entity", "project", "name", "group", "job_type", "tags", "notes", "dir", "mode", "resume")


class Settings:
    """Accepts any W&B setting as a keyword; they are forwarded to the real ``wandb`` when present."""

    def __init__(self, **settings: Any) -> None:
        self.__dict__.update(settings)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"Settings({self.__dict__!r})"


def init(
    entity: Optional[str] = None,
    project: Optional[str] = None,
    dir: Any = None,
    id: Optional[str] = None,
    name: Optional[str] = None,
    notes: Optional[str] = None,
    tags: Optional[Sequence[str]] = None,
    config: Any = None,
    config_exclude_keys: Optional[list[str]] = None,
    config_include_keys: Optional[list[str]] = None,
    allow_val_change: Optional[bool] = None,
    group: Optional[str] = None,
    job_type: Optional[str] = None,
    mode: Optional[str] = None,
    reinit: Any = None,
    resume: Any = None,
    settings: Any = None,
    **more: Any,
) -> Run:
    """Start a Run as ``wandb.init`` does; the config gets launchbay's launch overrides.

    ``config`` may also be the name of a YAML or JSON file. ``config_include_keys`` /
    ``config_exclude_keys`` pick top-level keys of it, as in W&B. Other keywords of
    ``wandb.init`` (``force``, ``save_code``, ``resume_from``, ``fork_from``, ``tensorboard``...)
    are accepted and forwarded to the real ``wandb`` when it is installed.
    """
    # First, while locals() holds only the parameters.
    given = {key: value for key, value in locals().items() if key not in ("more", "config") and value is not None}
    unknown = sorted(set(more) - _OTHER_KEYWORDS)  # a typo is an error, as in wandb.init
    if unknown:
        raise TypeError(f"init() got an unexpected keyword argument {unknown[0]!r}")
    given.update(more)
    current = _sdk.current_run()
    if current is not None and reinit == "return_previous":
        return current
    values = _init_config(config, config_include_keys, config_exclude_keys)
    run = _sdk.init(config=values)
    for field in _RUN_FIELDS:
        setattr(run, field, given.get(field))
    run.tags = tuple(tags or ())
    if id is not None:
        run.id = id
    run.settings = settings
    _start_forwarding(run, given)
    return run


def _init_config(config: Any, include: Optional[list[str]], exclude: Optional[list[str]]) -> dict[str, Any]:
    if include is not None and exclude is not None:
        raise SdkError("init() takes config_include_keys or config_exclude_keys, not both")
    values = file_values(Path(config)) if isinstance(config, (str, Path)) else as_config_dict(config)
    if include is not None:
        values = {key: value for key, value in values.items() if key in include}
    if exclude is not None:
        values = {key: value for key, value in values.items() if key not in exclude}
    return values


def _start_forwarding(run: Run, given: dict[str, Any]) -> None:
    module = _forward.real_wandb()
    if module is None:
        return
    kwargs = {key: value for key, value in given.items() if key not in ("config_include_keys", "config_exclude_keys")}
    if isinstance(kwargs.get("settings"), Settings):
        kwargs["settings"] = kwargs["settings"].to_dict()
    run.tracker = _forward.start_tracker(module, kwargs, run.config.as_dict())


def log(data: dict[str, Any], step: Optional[int] = None, commit: Optional[bool] = None, sync: Any = None) -> None:
    """Log metrics to the active run (``wandb.log``); ``sync`` is accepted and ignored, as in W&B."""
    _sdk.log(data, step=step, commit=commit)


def finish(exit_code: Optional[int] = None, quiet: Optional[bool] = None) -> None:
    """Finish the active run, if any."""
    _sdk.finish(exit_code)


def require(requirement: Any = None, experiment: Any = None) -> None:
    """Accepted for W&B's ``wandb.require("core")``; launchbay has nothing to switch on."""


def login(*args: Any, **kwargs: Any) -> bool:
    """Nothing to log in to: launchbay needs no account. Returns True, like a successful login."""
    return True


def termlog(string: str = "", newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    """Print a line on stderr as ``wandb.termlog`` does."""
    _term("", string, newline, prefix)


def termwarn(string: str, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    _term("WARNING ", string, newline, prefix)


def termerror(string: str, newline: bool = True, repeat: bool = True, prefix: bool = True) -> None:
    _term("ERROR ", string, newline, prefix)


def _term(level: str, string: str, newline: bool, prefix: bool) -> None:
    lead = f"wandb: {level}" if prefix else ""
    text = "\n".join(lead + line for line in str(string).split("\n"))
    print(text, file=sys.stderr, end="\n" if newline else "", flush=True)


class _PreInit:
    """``wandb.config`` / ``wandb.summary`` before ``init``: any use says to call ``init`` first."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise SdkError(f"call launchbay.wandb.init() before using wandb.{self._name}")

    __getattr__ = __getitem__ = __setitem__ = __setattr__ = __contains__ = _fail

    def __repr__(self) -> str:
        return f"<wandb.{self._name} before init()>"


def __getattr__(name: str) -> Any:
    # Like wandb.run / wandb.config / wandb.summary: they follow the active run.
    if name in ("run", "config", "summary"):
        run = _sdk.current_run()
        if name == "run":
            return run
        return getattr(run, name) if run is not None else _PreInit(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
