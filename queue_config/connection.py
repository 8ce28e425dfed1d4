"""Which Redis to use, and a connection to it whose failures read as one line.

The precedence is decided here and nowhere else: ``--redis-url`` (passed in as ``url``), then
``LAUNCHBAY_REDIS_URL``, then the user's private local server (``launchbay.queue_config.local_redis``).
The CLI and the agent both call :func:`connect`. Passwords never appear in messages: URLs are shown
through :func:`redact_url`.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional
from urllib.parse import urlsplit, urlunsplit

import redis
from launchbay.queue_config import local_redis

from launchbay.errors import ConfigError, RedisUnavailableError

URL_ENV = "LAUNCHBAY_REDIS_URL"
SCHEMES = ("redis", "rediss", "unix")
#: A Redis that does not accept the TCP connection within this many seconds counts as down.
CONNECT_TIMEOUT_S = 5.0


def resolve_url(url: Optional[str]) -> str:
    """The Redis URL to use: ``url`` (the flag), else ``$LAUNCHBAY_REDIS_URL``, else the local server.

    Choosing the local server starts it when it is not running yet. Raises ConfigError for a
    URL whose scheme is not redis://, rediss:// or unix://.
    """
    chosen = url or os.environ.get(URL_ENV) or ""
    if not chosen:
        return local_redis.ensure_running()
    scheme = urlsplit(chosen).scheme
    if scheme not in SCHEMES:
        source = "--redis-url" if url else URL_ENV
        raise ConfigError(
            f"{source} {redact_url(chosen)!r} must start with redis://, rediss:// or unix:// "
            "(e.g. redis://:PASSWORD@host:6379/0)"
        )
    return chosen


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (the user name, if any, is kept)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connect(url: Optional[str] = None) -> redis.Redis:
    """A connection to the resolved Redis, checked with PING.

    Raises RedisUnavailableError (retry later) when nothing answers and ConfigError (fix the URL)
    when Redis refuses the credentials. Responses stay bytes, as rq requires.
    """
    resolved = resolve_url(url)
    try:
        conn = redis.Redis.from_url(resolved, socket_connect_timeout=CONNECT_TIMEOUT_S)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(resolved)!r}: {exc}") from exc
    with redis_errors_translated(resolved):
        conn.ping()
    return conn


@contextmanager
def redis_errors_translated(url: str) -> Iterator[None]:
    """Turn redis-py's connection and credential errors inside the block into launchbay errors."""
    shown = redact_url(url)
    try:
        yield
    except redis.AuthenticationError as exc:  # a subclass of ConnectionError, so it comes first
        raise ConfigError(
            f"Redis at {shown} refused the credentials ({str(exc).rstrip('.')}); "
            "check the user and password in the URL (redis://USER:PASSWORD@host:port/db)"
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailableError(
            f"cannot reach Redis at {shown}: {str(exc).rstrip('.')}; is redis-server running? "
            f"Check --redis-url or {URL_ENV}, or unset both to use a private local server"
        ) from exc
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise ConfigError(f"Redis at {shown} refused the credentials ({exc}); check the URL") from exc
        raise
