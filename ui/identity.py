"""Who is asking, inside a request: which token it carries and whose it is (``security`` has the rules)."""

from __future__ import annotations

from typing import Optional

from flask import request

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
