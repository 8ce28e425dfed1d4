"""Which Redis to use, and a connection to it whose failures read as one line.

The precedence is decided here and nowhere else: ``--redis-url`` (passed in as ``url``), then
``LAUNCHBAY_REDIS_URL``, then the user's private local server (``launchbay.redis_connection.local_server``).
The CLI and the agent both call :func:`connect`. Passwords never appear in messages: URLs are shown
through :func:`redact_url`.

Besides redis-py's own schemes, ``redis+sentinel://`` finds the master through Redis Sentinel
(:func:`sentinel_master`), for a highly available Redis shared by many hosts.
"""

from __future__ import annotations

import os
import re
import ssl
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis
import redis.sentinel
from launchbay.redis_connection import local_server as local_redis

from launchbay.errors import ConfigError, PermissionDeniedError, RedisUnavailableError

URL_ENV = "LAUNCHBAY_REDIS_URL"
SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)
SENTINEL_DEFAULT_PORT = 26379
#: redis-py's TLS settings, given as query options of a rediss:// URL (docs/security.md).
TLS_URL_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
TLS_URL_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
#: A Redis that does not accept the TCP connection within this many seconds counts as down.
CONNECT_TIMEOUT_S = 5.0
#: Replicas that must confirm an enqueue or a claim over a redis+sentinel:// URL (``?wait_replicas=N``),
#: and how long they have: an acknowledged enqueue or a started claim then survives a failover
#: (docs/multi-host.md).
SENTINEL_WAIT_REPLICAS = 1
REPLICA_WAIT_MS = 2000
_WAIT_REPLICAS_ATTR = "launchbay_wait_replicas"


def resolve_url(url: Optional[str]) -> str:
    """The Redis URL to use: ``url`` (the flag), else ``$LAUNCHBAY_REDIS_URL``, else the local server.

    Choosing the local server starts it when it is not running yet. Raises ConfigError for a
    URL whose scheme is not redis://, rediss://, unix:// or redis+sentinel://.
    """
    chosen = url or os.environ.get(URL_ENV) or ""
    if not chosen:
        return local_redis.ensure_running()
    scheme = urlsplit(chosen).scheme
    if scheme not in SCHEMES:
        source = "--redis-url" if url else URL_ENV
        raise ConfigError(
            f"{source} {redact_url(chosen)!r} must start with redis://, rediss://, unix:// or redis+sentinel:// "
            "(e.g. redis://:PASSWORD@host:6379/0)"
        )
    return chosen


def redact_url(url: str) -> str:
    """``url`` with any password (also a ``sentinel_password=``) replaced by ``***``; the user name is kept."""
    parts = urlsplit(url)
    if "sentinel_password=" in parts.query:
        parts = parts._replace(query=re.sub(r"(^|&)sentinel_password=[^&]*", r"\1sentinel_password=***", parts.query))
    if parts.password is None:
        return urlunsplit(parts) if parts.query != urlsplit(url).query else url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def connect(url: Optional[str] = None) -> redis.Redis:
    """A connection to the resolved Redis, checked with PING.

    Raises RedisUnavailableError (retry later) when nothing answers and ConfigError (fix the URL)
    when Redis refuses the credentials. Responses stay bytes, as rq requires.
    """
    resolved = resolve_url(url)
    _check_tls_files(resolved)
    try:
        if urlsplit(resolved).scheme == SENTINEL_SCHEME:
            conn = sentinel_master(resolved)
        else:
            conn = redis.Redis.from_url(resolved, socket_connect_timeout=CONNECT_TIMEOUT_S)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(resolved)!r}: {exc}") from exc
    with redis_errors_translated(resolved):
        try:
            conn.ping()
        except TypeError as exc:  # an unknown ?option= reaches redis-py's connection class only now
            option = str(exc).rpartition(" ")[2]
            raise ConfigError(
                f"invalid Redis URL {redact_url(resolved)!r}: unknown option {option}; TLS options are "
                f"{', '.join(TLS_URL_OPTIONS)}"
            ) from exc
    return conn


def sentinel_master(url: str) -> redis.Redis:
    """A connection to the current master named in a ``redis+sentinel://`` URL.

    ``redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB][?sentinel_password=P&wait_replicas=N]``:
    the sentinels (port 26379 unless given) are asked which server is SERVICE's master; USER and
    PASSWORD are those of the Redis servers, ``sentinel_password`` that of the sentinels, if they
    ask for one; ``wait_replicas`` how many replicas must confirm an enqueue or a claim
    (:func:`confirm_replicated`). After a failover the connection pool asks the sentinels again on
    its next reconnect, so the same object follows the new master. Raises ValueError for a
    malformed URL.
    """
    parts = urlsplit(url)
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, sep, port = item.rpartition(":")
        if not sep or host.endswith(":"):  # no port, or a bare IPv6 address
            host, port = item, str(SENTINEL_DEFAULT_PORT)
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel address {item!r} must be HOST or HOST:PORT")
        hosts.append((host, int(port)))
    path = [unquote(segment) for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("a redis+sentinel:// URL ends with /SERVICE or /SERVICE/DB, e.g. /mymaster/0")
    query = parse_qs(parts.query)
    unknown = set(query) - {"sentinel_password", "wait_replicas"}
    if unknown:
        raise ValueError(
            f"unknown query parameter(s) {', '.join(sorted(unknown))}; known: sentinel_password, wait_replicas"
        )
    wait_replicas = query.get("wait_replicas", [str(SENTINEL_WAIT_REPLICAS)])[-1]
    if not wait_replicas.isdigit():
        raise ValueError(f"wait_replicas={wait_replicas!r} must be a number of replicas (0 turns the wait off)")
    timeouts = {"socket_connect_timeout": CONNECT_TIMEOUT_S}
    sentinel_kwargs = {**timeouts, "socket_timeout": CONNECT_TIMEOUT_S}
    if "sentinel_password" in query:
        sentinel_kwargs["password"] = query["sentinel_password"][-1]
    sentinel = redis.sentinel.Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **timeouts)
    conn = sentinel.master_for(
        path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **timeouts,
    )
    setattr(conn, _WAIT_REPLICAS_ATTR, int(wait_replicas))
    return conn


def wait_replicas(conn: redis.Redis) -> int:
    """How many replicas must confirm a write that has to survive a failover: ``wait_replicas`` of a
    ``redis+sentinel://`` URL (default 1), 0 for any other URL."""
    return getattr(conn, _WAIT_REPLICAS_ATTR, 0)


def confirm_replicated(
    conn: redis.Redis, write: Callable[[redis.Redis], object], check: Callable[[redis.Redis], object], what: str
) -> None:
    """Make ``write`` (a write command) and wait until :func:`wait_replicas` replicas have it.

    Redis replicates in order, so a replica that has ``write`` also has what this process wrote
    before it. ``write``, ``WAIT`` and ``check`` (a read whose reply must be true, e.g. that the
    job exists) go on one connection, since WAIT counts that connection's writes, and a failover
    in between cannot confirm a write the new master never got. Without replicas to wait for this
    is just ``write``. Raises RedisUnavailableError when too few replicas confirm within
    REPLICA_WAIT_MS: a failover now could lose ``what``.
    """
    wanted = wait_replicas(conn)
    with conn.pipeline(transaction=False) as pipe:
        write(pipe)
        if wanted:
            pipe.execute_command("WAIT", wanted, REPLICA_WAIT_MS)
            check(pipe)
        results = pipe.execute()
    confirmed = results[-2] if wanted and results[-1] else 0
    if wanted and confirmed < wanted:
        raise RedisUnavailableError(
            f"{what} reached the Redis master, but {confirmed} of the {wanted} replica(s) it must reach "
            f"(wait_replicas) confirmed it within {REPLICA_WAIT_MS / 1000:g} s, so a failover now would lose it; "
            "Redis may be failing over or short of replicas (docs/multi-host.md)"
        )


def _check_tls_files(url: str) -> None:
    """A CA, certificate or key file named in the URL must exist (else redis-py says only "Error 2 connecting")."""
    for option, values in parse_qs(urlsplit(url).query).items():
        if option in TLS_URL_FILE_OPTIONS and not os.path.isfile(values[-1]):
            raise ConfigError(f"Redis URL {redact_url(url)!r}: {option} file {values[-1]!r} does not exist")


def _tls_refused(exc: BaseException) -> bool:
    """Whether a connection error is TLS refusing the server's certificate."""
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or isinstance(exc.__cause__, ssl.SSLCertVerificationError)


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
    except redis.ConnectionError as exc:
        if _tls_refused(exc):  # a certificate problem is not cured by retrying
            raise ConfigError(
                f"Redis at {shown}: TLS refused the server's certificate ({str(exc).rstrip('.')}); "
                "name the CA that signed it with ?ssl_ca_certs=/path/to/ca.pem in the rediss:// URL, "
                "and connect by a host name or IP address the certificate lists"
            ) from exc
        raise RedisUnavailableError(
            f"cannot reach Redis at {shown}: {str(exc).rstrip('.')}; {_retry_hint(url)}"
        ) from exc
    except redis.TimeoutError as exc:
        raise RedisUnavailableError(
            f"cannot reach Redis at {shown}: {str(exc).rstrip('.')}; {_retry_hint(url)}"
        ) from exc
    except redis.ResponseError as exc:
        if "NOPERM" in str(exc) or isinstance(exc, redis.exceptions.NoPermissionError):
            raise PermissionDeniedError(
                f"Redis at {shown} refused this to its user: {_noperm_detail(exc)}; the user's role does not "
                "allow it (roles and their rights: `launchbay acl`, docs/security.md)"
            ) from exc
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise ConfigError(f"Redis at {shown} refused the credentials ({exc}); check the URL") from exc
        refusal = write_refusal(exc)
        if refusal:
            raise RedisUnavailableError(
                f"Redis at {shown} {refusal} ({str(exc).rstrip('.')}); nothing was written"
            ) from exc
        raise


#: Replies of a server that is up but may not take writes now, and what each means: a failover is
#: under way or Redis protects acknowledged writes (docs/multi-host.md). Waiting cures them all.
WRITE_REFUSALS = {
    "READONLY": "is a read-only replica now: a failover may have demoted it; retry in a few seconds, or give the "
    "sentinels (redis+sentinel://) so that launchbay follows the master",
    "NOREPLICAS": "refuses writes: fewer replicas are in sync than its min-replicas-to-write; retry once they are",
    "MASTERDOWN": "is a replica that lost its master; retry once the failover is done",
}


def write_refusal(exc: BaseException) -> Optional[str]:
    """What a refusal by an up but not writable Redis means (see WRITE_REFUSALS), or None for any other error."""
    if isinstance(exc, redis.exceptions.ReadOnlyError):  # redis-py drops the READONLY code from the message
        return WRITE_REFUSALS["READONLY"]
    if isinstance(exc, redis.exceptions.MasterDownError):
        return WRITE_REFUSALS["MASTERDOWN"]
    if not isinstance(exc, redis.ResponseError):
        return None
    # "NOREPLICAS Not enough ...", or in a pipeline "Command # 1 (SET ...) of pipeline caused error: NOREPLICAS ..."
    code = re.search(r"(?:^|: )(NOREPLICAS|MASTERDOWN)\b", str(exc))
    return WRITE_REFUSALS[code.group(1)] if code else None


def is_transient(exc: BaseException) -> bool:
    """Whether waiting may cure ``exc``: Redis does not answer, or answers that it cannot take writes now."""
    if isinstance(exc, redis.AuthenticationError):
        return False
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) or write_refusal(exc) is not None


T = TypeVar("T")


def retry_transient(
    call: Callable[[], T],
    *,
    within_s: float,
    stop: Callable[[], bool] = lambda: False,
    on_retry: Optional[Callable[[BaseException], None]] = None,
) -> T:
    """``call()``, tried again while it fails with an error that waiting may cure (:func:`is_transient`:
    Redis does not answer, or takes no writes during a failover), with a back-off from 0.2 s to 5 s,
    until ``within_s`` have passed or ``stop()`` says so; then the last error is raised."""
    deadline = time.monotonic() + within_s
    delay = 0.2
    while True:
        try:
            return call()
        except redis.RedisError as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline or stop():
                raise
            if on_retry is not None:
                on_retry(exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _retry_hint(url: str) -> str:
    if urlsplit(url).scheme == SENTINEL_SCHEME:
        return (
            "if its master just failed, the sentinels promote a replica after their down-after-milliseconds "
            "plus a few seconds: retry then (docs/multi-host.md)"
        )
    return f"is redis-server running? Check --redis-url or {URL_ENV}, or unset both to use a private local server"


def _noperm_detail(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.removeprefix("NOPERM ").rstrip(".")
