"""The SDK's exception tree.

Every error the SDK raises on purpose is a :class:`SdkError`, which is a ``ValueError`` so that
code written for W&B Launch (which raises plain ``ValueError``-like errors) keeps catching them.
"""

from __future__ import annotations


class SdkError(ValueError):
    """Base class of every error the launchbay SDK raises on purpose."""


class ConfigPathError(SdkError):
    """An include/exclude key path is malformed (empty segment, stray backslash, not a string)."""


class ConfigFileError(SdkError):
    """A path given to ``manage_config_file`` or ``--configs`` is invalid, missing or unreadable."""


class SchemaError(SdkError):
    """A job's input schema uses something the SDK does not support."""


class InputValidationError(SdkError):
    """The launch overrides break the job's input schema or the shape of its config.

    ``violations`` holds one line per problem; ``str()`` lists them all in one message.
    """

    def __init__(self, where: str, violations: list[str]) -> None:
        self.where = where
        self.violations = list(violations)
        super().__init__(f"invalid launch inputs for {where}: " + "; ".join(self.violations))
