"""``Run.config``: a dict of the run's settings that behaves like ``wandb.Run.config``.

Launch overrides sit on top of what the job sets: when the job writes a key that an override
covers (``run.config.update(args)`` after ``init`` is common), the override stays and one
warning names the keys, as W&B does for keys it locks for launch.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Iterator, Optional

from .console import warn
from .errors import InputValidationError
from .filtering import copy_dicts
from .overlay import MISSING, AppliedOverrides
from .paths import KeyPath, join_path
from .record import write_records
from .state import STATE


def as_config_dict(values: Any) -> dict[str, Any]:
    """Read config values from a mapping, an absl/TF flags object, an ``argparse.Namespace`` or any object."""
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return dict(values)
    flag_values_dict = getattr(values, "flag_values_dict", None)
    if callable(flag_values_dict):
        return dict(flag_values_dict())
    if hasattr(values, "__dict__"):
        return {key: value for key, value in vars(values).items() if not key.startswith("_")}
    raise TypeError(
        f"cannot read config values from {type(values).__name__}: pass a dict, an argparse.Namespace or a flags object"
    )


def plain(value: Any) -> Any:
    """Copy nested dicts and turn tuples and sets into lists, as W&B stores them.

    A set becomes a sorted list when its items sort, so the recorded config is stable.
    """
    if isinstance(value, Mapping):
        return {key: plain(child) for key, child in value.items()}
    if isinstance(value, (set, frozenset)):
        items = [plain(item) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


class Config(MutableMapping):
    """A run's config: item access, attribute access for top-level keys, ``update``, ``as_dict``.

    Nested dicts stay nested: ``config["trainer"]`` is a plain dict, read it with
    ``config["trainer"]["lr"]``.
    """

    def __init__(self, values: Any = None) -> None:
        # Copies, so that launch overrides never change the dicts the job passed in.
        object.__setattr__(self, "_data", plain(as_config_dict(values)))
        # Launch override leaves grouped by top-level key, so a write finds the ones it touches.
        object.__setattr__(self, "_overrides", {})
        object.__setattr__(self, "_applied", AppliedOverrides())

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._set({key: value})

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._applied.forget_under(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            # Private and dunder lookups (copy, pickle, a half-built instance) must not recurse.
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(
                f"'Config' object has no attribute {name!r}: the run config has no key {name!r}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"the run config has no key {name!r}") from None

    def __repr__(self) -> str:
        return f"Config({self._data!r})"

    def update(self, values: Any = None, allow_val_change: Optional[bool] = None, **kwargs: Any) -> None:
        """Set many top-level keys from a dict, an ``argparse.Namespace``, a flags object or keywords.

        ``allow_val_change`` is accepted for W&B's signature and changes nothing: a job may
        always change its own values, and launch overrides always stay.
        """
        items = as_config_dict(values)
        items.update(kwargs)
        self._set(items)

    def setdefaults(self, values: Any) -> None:
        """Set only the top-level keys that the config does not have yet."""
        self._set({key: value for key, value in as_config_dict(values).items() if key not in self._data})

    def persist(self) -> None:
        """Record the config now (it is also recorded at ``finish`` and at exit)."""
        write_records(STATE)

    @property
    def config_static(self) -> ConfigStatic:
        """A read-only snapshot with attribute and item access to the top-level keys, like W&B's."""
        return ConfigStatic(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """A copy of the config as a plain nested dict (for ``json.dumps`` and the like)."""
        return copy_dicts(self._data)

    def _set(self, items: dict[str, Any]) -> None:
        kept: list[str] = []
        problems: list[str] = []
        for key, value in items.items():
            self._applied.forget_under(key)
            self._data[key] = plain(value)
            covered = self._overrides.get(key, {})
            kept += [join_path(parts) for parts, leaf in covered.items() if _differs(self._data, parts, leaf)]
            problems += self._applied.apply(self._data, covered)
        if problems:
            raise InputValidationError("the run config", problems)
        if kept:
            warn(f"launch overrides kept over values the job set: {', '.join(kept)}")

    def _set_overrides(self, flat: dict[KeyPath, Any]) -> None:
        """Replace the launch overrides applied on top of the job's own values."""
        self._applied.revert(self._data)
        grouped: dict[str, dict[KeyPath, Any]] = {}
        for parts, leaf in flat.items():
            grouped.setdefault(parts[0], {})[parts] = leaf
        object.__setattr__(self, "_overrides", grouped)
        problems = self._applied.apply(self._data, flat)
        if problems:
            raise InputValidationError("the run config", problems)


def _differs(tree: dict, parts: KeyPath, leaf: Any) -> bool:
    """Whether the job set a value at ``parts`` that the override ``leaf`` will replace."""
    node: Any = tree
    for key in parts:
        if not isinstance(node, dict):
            return False
        node = node.get(key, MISSING)
        if node is MISSING:
            return False
    return node != leaf


class ConfigStatic:
    """W&B's ``config_static``: the config's top-level keys as attributes and items; writing to it is an error."""

    def __init__(self, values: dict[str, Any]) -> None:
        object.__setattr__(self, "__dict__", dict(values))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("config_static is read-only: change run.config instead")

    __setitem__ = __setattr__

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def keys(self) -> Any:
        return self.__dict__.keys()

    def __repr__(self) -> str:
        return f"ConfigStatic({self.__dict__!r})"
