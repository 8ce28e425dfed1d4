"""One exception tree for everything outside the SDK.

Catch :class:`LaunchbayError` to catch them all. A :class:`UserError` is a mistake in what a
person typed or sent; the CLI prints its message as one line and exits with code 2. Redis and
Docker errors are translated at the boundary, keeping the cause (``raise ... from exc``).
"""

from __future__ import annotations


class LaunchbayError(Exception):
    """Base class of every error launchbay raises on purpose."""


class UserError(LaunchbayError):
    """Bad input from a person or a submitter: printed as one line, exit code 2."""


class ConfigError(UserError):
    """A YAML/JSON file or a setting does not describe a valid queue, job spec or agent option."""


class ValidationError(UserError):
    """An enqueue request breaks a queue limit, the job's recorded inputs or its schema."""


class NotFoundError(UserError):
    """A queue, job or job definition named by the user does not exist."""


class PermissionDeniedError(UserError):
    """Redis refused a command or key to the connection's ACL user (its role does not allow it)."""


class RedisUnavailableError(LaunchbayError):
    """Redis cannot be reached or refuses the credentials; retry later."""


class DockerUnavailableError(LaunchbayError):
    """The Docker engine cannot be reached; retry later."""


class JobRunError(LaunchbayError):
    """A job could not be started or ended badly; carries the terminal reason."""

    def __init__(self, message: str, *, reason: str, job_id: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.job_id = job_id
