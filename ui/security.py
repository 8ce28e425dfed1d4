"""Who may use the launch page: the bind rule, the token, and same-origin checks.

- Bound to a loopback address (the default) the page needs no token; bound to anything else it
  refuses to start without ``LAUNCHBAY_UI_TOKEN``.
- With a token, every page needs it once: ``?token=...`` in the URL (kept in an HttpOnly,
  SameSite=Strict cookie afterwards) or the ``X-Launchbay-Token`` header. Every state-changing
  request (launch, cancel) must carry it itself, in the form's hidden ``token`` field or the
  header; a cookie alone never changes anything. Tokens are compared in constant time.
- Every POST must come from the page's own origin (``Origin``, else ``Referer``), token or not,
  so another site open in the same browser cannot launch or cancel jobs.
- Bound to loopback, the ``Host`` header must name a loopback host too, so a web page that
  re-points its own domain at 127.0.0.1 (DNS rebinding) cannot read the pages.
- Who launches: with ``--token-file`` (``name: token`` lines, one token per user) each named
  token is accepted like the shared one and the jobs it launches record that name as their
  submitter. Opt-in, ``--user-header NAME`` trusts a reverse proxy's header for the name (only
  behind a proxy that sets it and strips it from clients). Never a form field.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from typing import Dict, Mapping, Optional
from urllib.parse import urlsplit

from launchbay.errors import UserError

TOKEN_ENV = "LAUNCHBAY_UI_TOKEN"
TOKEN_FIELD = "token"
TOKEN_HEADER = "X-Launchbay-Token"
TOKEN_COOKIE = "launchbay_ui_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
USER_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,128}$")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this machine."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: Optional[str]) -> None:
    """Raise UserError when ``host`` is reachable from other machines and no token protects it."""
    if not is_loopback(host) and not token:
        raise UserError(
            f"refusing to serve on {host}, which other machines can reach, without a token: "
            f"set {TOKEN_ENV} to a long random secret (e.g. $(openssl rand -hex 24)), or bind to 127.0.0.1"
        )


def tokens_match(given: Optional[str], expected: str) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased ("" when it has none)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(headers: Mapping[str, str], own_origin: str) -> bool:
    """Whether a POST comes from ``own_origin``: its Origin header, else its Referer, must match.

    A request with neither is refused too: browsers send Origin with every POST, and a script
    that leaves both out can set the header as easily as the token.
    """
    origin = headers.get("Origin")
    if origin is not None:
        return origin.lower() == own_origin.lower()
    referer = headers.get("Referer")
    return referer is not None and origin_of(referer) == own_origin.lower()


def host_allowed(host_header: str, bind_host: str) -> bool:
    """Bound to loopback, only loopback names may appear in ``Host`` (a guard against DNS rebinding)."""
    if not is_loopback(bind_host):
        return True
    name = urlsplit(f"//{host_header}").hostname or ""
    return name.lower() in LOOPBACK_NAMES or is_loopback(name)


# -- who is asking: named tokens, or a trusted reverse-proxy header ---------------------------------

#: Shortest named token accepted: long enough that guessing one is hopeless.
MIN_TOKEN_CHARS = 16


def load_token_file(path: str) -> Dict[str, str]:
    """``name: token`` lines (``#`` comments, blank lines allowed) as ``{token: name}``; UserError on any problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise UserError(f"--token-file {path}: {exc.strerror or exc}") from exc
    by_token: Dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, token = (part.strip() for part in text.partition(":"))
        if not sep or not USER_NAME.match(name) or not token:
            raise UserError(f"--token-file {path}, line {number}: expected 'name: token' with a plain user name")
        if len(token) < MIN_TOKEN_CHARS:
            raise UserError(f"--token-file {path}, line {number}: {name}'s token is shorter than {MIN_TOKEN_CHARS}")
        if token in by_token:
            raise UserError(f"--token-file {path}, line {number}: {name} has the same token as {by_token[token]}")
        if name in by_token.values():
            raise UserError(f"--token-file {path}, line {number}: {name} appears twice (one token per user)")
        by_token[token] = name
    if not by_token:
        raise UserError(f"--token-file {path}: no 'name: token' line")
    return by_token


def token_owner(given: Optional[str], named: Mapping[str, str]) -> Optional[str]:
    """The user whose named token ``given`` is (each compared in constant time), or None."""
    owner = None
    for token, name in named.items():
        if tokens_match(given, token):
            owner = name
    return owner


def header_user(headers: Mapping[str, str], header: Optional[str]) -> Optional[str]:
    """The user a trusted reverse proxy names in ``header`` (opt-in), if it is a plain user name."""
    if not header:
        return None
    value = (headers.get(header) or "").strip()
    return value if USER_NAME.match(value) else None
