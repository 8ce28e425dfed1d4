"""Who is asking, inside a request: which token it carries, whose it is, and what that user may change.

``security`` has the token rules. A named user (a named token's, or the trusted proxy header's)
may cancel a job or pause, resume or stop a sweep only where that user's own Redis role would let
the CLI do it: the UI asks Redis (``ACL DRYRUN``, which the ``ui`` role of ``acl.py`` may send);
where Redis knows no such user, the job or sweep must be the user's own (the owner its id's key
names). The shared token, or an open page, acts with the UI's own Redis rights.
"""

from __future__ import annotations

from typing import Optional

import redis
from flask import request
from launchbay.queue_config.acl import submitter_of

from launchbay.text import as_text

from . import security
from .context import settings


def valid(given: Optional[str]) -> bool:
    """The shared token or one of the named ones."""
    config = settings()
    shared = config.token is not None and security.tokens_match(given, config.token)
    return shared or security.token_owner(given, config.named_tokens) is not None


def request_token() -> Optional[str]:
    """The token this request came with (the form carries it back on a POST); None on an open page."""
    if not settings().protected:
        return None
    given = request.headers.get(security.TOKEN_HEADER) or request.cookies.get(security.TOKEN_COOKIE)
    return given if valid(given) else None


def submitter() -> Optional[str]:
    """Who launches, for the job record: a named token's user, else the trusted header's; else None
    (the UI process's own name is used). A form field never decides it."""
    config = settings()
    given = request.headers.get(security.TOKEN_HEADER) or request.form.get(security.TOKEN_FIELD)
    return security.token_owner(given, config.named_tokens) or security.header_user(request.headers, config.user_header)


def change_refusal(key: str, record_id: str, recorded_submitter: Optional[str]) -> Optional[str]:
    """Why this request's user may not change the job or sweep hash ``key`` (id ``record_id``); None if it may."""
    user = submitter()
    if user is None:
        return None
    owner = submitter_of(record_id, recorded_submitter)
    try:
        answer = settings().conn.execute_command("ACL", "DRYRUN", user, "HSET", key, "cancel_requested", "1")
    except redis.ResponseError:  # no Redis user of that name, or no DRYRUN right: ownership decides
        allowed = owner == user
    else:
        allowed = as_text(answer) == "OK"
    return (
        None if allowed else f"{user} may not change {record_id}: it is {owner}'s, and {user}'s role does not allow it"
    )
