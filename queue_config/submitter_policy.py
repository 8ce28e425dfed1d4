"""Which docker options a queue lets submitters set, and with which values.

A queue's ``submitter_may_set`` is a mapping from option name to the values allowed for it::

    submitter_may_set:
      network: [none, bridge]      # exactly these values
      cap_add: [SYS_PTRACE]        # each item of a list option must be listed
      mounts: [/data/datasets]     # each mount's source must be one of these folders or under it
      env: [WANDB_MODE, SEED]      # the variable names a submitter may set
      shm_size: any                # any value (``any`` or null)

The older list form (``submitter_may_set: [network, shm_size]``) still works and means "any
value", except the values that reach the host: ``host`` and ``container:<name>`` for ``network``,
``pid_mode`` and ``ipc_mode`` are allowed only when the admin lists them by value. The client
checks this at enqueue and the agent again when it builds the container.
"""

from __future__ import annotations

import posixpath
from typing import Any, Dict, Iterable, List, Mapping, Optional

#: Options whose ``host`` or ``container:<name>`` value gives a job the host's (or another job's) namespace.
HOST_REACHING = ("network", "pid_mode", "ipc_mode")
ANY = "any"

AllowList = Dict[str, Optional[List[Any]]]


def normalize_path(path: str) -> str:
    """``path`` with ``.``, ``..``, repeated and leading double slashes resolved (``//a/./b/`` -> ``/a/b``)."""
    return posixpath.normpath("/" + path.lstrip("/"))


def normalize_allow_list(value: Any, known: Iterable[str], aliases: Mapping[str, str]) -> AllowList:
    """``submitter_may_set`` in either form as ``{option: allowed values or None (any)}``; ValueError if malformed.

    ``aliases`` maps a name people may also write to the option it means (``models.DOCKER_OPTION_ALIASES``).
    """
    known = tuple(known)
    if isinstance(value, (list, tuple)):
        value = {name: None for name in value}
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of option to allowed values (network: [none, bridge]) or a list of options")
    allowed: AllowList = {}
    for raw_name, values in value.items():
        name = aliases.get(str(raw_name), str(raw_name))
        if name not in known:
            raise ValueError(f"unknown docker option {raw_name!r}; known: {', '.join(known)}")
        allowed[name] = _allowed_values(name, values)
    return allowed


def _allowed_values(name: str, values: Any) -> Optional[List[Any]]:
    if values is None or values == ANY:
        return None
    if not isinstance(values, list) or any(isinstance(v, (dict, list)) or v is None for v in values):
        raise ValueError(f"{name}: allowed values must be a list of values (e.g. [none, bridge]) or 'any'")
    if name == "mounts":
        if any(not isinstance(v, str) or not v.startswith("/") for v in values):
            raise ValueError("mounts: allowed values are absolute host folders a mount's source may be under")
        return [normalize_path(v) for v in values]
    return list(values)


def option_problems(queue_name: str, allowed: AllowList, options: Mapping[str, Any]) -> List[str]:
    """One line per docker option (or value) in ``options`` that ``allowed`` does not let a submitter set."""
    problems = []
    shown = ", ".join(allowed) or "nothing"
    for name in sorted(options):
        if name not in allowed:
            problems.append(
                f"docker option {name!r} may not be set by submitters on queue {queue_name!r} "
                f"(submitter_may_set: {shown})"
            )
            continue
        problems += [f"queue {queue_name!r}: {p}" for p in value_problems(name, options[name], allowed[name])]
    return problems


def value_problems(name: str, value: Any, allowed: Optional[List[Any]]) -> List[str]:
    """Why ``value`` of option ``name`` is not allowed by ``allowed`` (None: any value but the host's)."""
    if name == "env":
        return [_refusal(name, key, allowed) for key in (value or {}) if allowed is not None and key not in allowed]
    if name == "mounts":
        return [_refusal(name, m.get("source"), allowed) for m in value or [] if not _mount_allowed(m, allowed)]
    if name in ("cap_add", "devices"):
        return [_refusal(name, item, allowed) for item in value or [] if not _item_allowed(name, item, allowed)]
    if allowed is None:
        if name in HOST_REACHING and _reaches_host(value):
            return [
                f"docker option {name!r} = {value!r} is not allowed for submitters: it shares the host's "
                f"or another container's namespace; an admin must list it by value ({name}: [{value}])"
            ]
        return []
    return [] if value in allowed or str(value) in map(str, allowed) else [_refusal(name, value, allowed)]


def _refusal(name: str, value: Any, allowed: Optional[List[Any]]) -> str:
    return f"docker option {name!r} value {value!r} is not allowed for submitters (allowed: {_show(allowed)})"


def _show(allowed: Optional[List[Any]]) -> str:
    return ", ".join(str(v) for v in allowed) if allowed else "none"


def _reaches_host(value: Any) -> bool:
    text = str(value).strip().lower()
    return text == "host" or text.startswith("container:")


def _mount_allowed(mount: Mapping[str, Any], allowed: Optional[List[Any]]) -> bool:
    if allowed is None:
        return True
    source = normalize_path(str(mount.get("source") or ""))
    return any(source == folder or source.startswith(folder.rstrip("/") + "/") for folder in allowed)


def _item_allowed(name: str, item: Any, allowed: Optional[List[Any]]) -> bool:
    if allowed is None:
        return True
    if name == "cap_add":  # docker takes SYS_PTRACE, sys_ptrace and CAP_SYS_PTRACE alike
        return _capability(item) in {_capability(a) for a in allowed}
    return normalize_path(str(item).split(":")[0]) in {normalize_path(str(a).split(":")[0]) for a in allowed}


def _capability(name: Any) -> str:
    text = str(name).strip().upper()
    return text[4:] if text.startswith("CAP_") else text
