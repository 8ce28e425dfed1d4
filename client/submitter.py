"""Who asked: the submitter a job records, and what a user's quota says of a new job.

The submitter is, in order: the Redis ACL user of the connection (when the URL names one other
than ``default``: Redis itself vouches for it), else the ``--user`` given / ``LAUNCHBAY_USER``,
else the OS user name. The UI passes the name its token (or trusted proxy header) maps to.
"""

from __future__ import annotations

import getpass
import os
import re
from typing import Any, Dict, List, Mapping, Optional

import redis
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.quotas import ask_of, over_quota, parse_usage

from launchbay.errors import ValidationError

USER_ENV = "LAUNCHBAY_USER"
_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")


def check_user_name(name: str, *, what: str = "user name") -> str:
    if not _NAME.match(name):
        raise ValidationError(f"{what} {name!r} must be 1-128 letters, digits or _.@+-")
    return name


def acl_user(conn: redis.Redis) -> Optional[str]:
    """The Redis ACL user the connection logs in as, unless it is ``default`` or none."""
    kwargs: Mapping[str, Any] = (
        getattr(conn, "connection_pool", None) and conn.connection_pool.connection_kwargs
    ) or {}
    name = kwargs.get("username")
    return str(name) if name and name != "default" else None


def resolve(conn: redis.Redis, user: Optional[str] = None) -> str:
    """The submitter of a job enqueued on ``conn``, as the module docstring orders them."""
    name = acl_user(conn) or user or os.environ.get(USER_ENV) or _os_user()
    return check_user_name(name, what="submitter")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container with an arbitrary uid)
        return f"uid{os.getuid()}"


def quota_notes(conn: redis.Redis, keys: Keys, queue: QueueConfig, user: str, request: Dict[str, Any]) -> List[str]:
    """A note when the job, with what ``user`` already runs in the queue, is over the user's quota."""
    limits = queue.quotas.for_user(user)
    if not limits:
        return []
    ask = ask_of(request)
    alone = over_quota(limits, {}, ask)
    if alone:
        return [
            f"note: over {user}'s quota in queue {queue.name!r} by itself ({alone}); it waits until the quota is raised"
        ]
    now = over_quota(limits, parse_usage(conn.hgetall(keys.user_usage(queue.name, user))), ask)
    if now:
        return [f"note: {user} is at their quota in queue {queue.name!r} ({now}); the job waits until their jobs end"]
    return []
