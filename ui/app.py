"""The Flask app: settings, the security checks every request passes, error pages and filters.

The routes are in :mod:`launchbay.ui.views`. One Redis connection pool serves all requests
(redis-py's pool is thread-safe; waitress answers from a few threads).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from typing import Any, Dict, Optional
from urllib.parse import urlencode

import redis
from flask import Flask, Response, redirect, render_template, request
from launchbay.prometheus.fleet import queue_registry
from launchbay.queue_config.job_checks import MAX_OVERRIDES_BYTES
from launchbay.queue_config.keys import Keys

from launchbay.errors import NotFoundError, RedisUnavailableError, UserError

from . import form, identity, security
from .context import EXTENSION, Settings, settings
from .views import pages

# Pages are plain HTML with our own CSS and JS: nothing is loaded from elsewhere, no inline script,
# so a job name or log line that smuggles markup past the escaping still cannot run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: How long the token cookie lasts (seconds); opening the ``?token=`` URL again renews it.
TOKEN_COOKIE_MAX_AGE_S = 12 * 3600
#: What a launch form may add to the overrides' size (queue, image, resources, token).
FORM_OVERHEAD_BYTES = 64 * 1024


def create_app(
    conn: redis.Redis,
    *,
    keys: Optional[Keys] = None,
    token: Optional[str] = None,
    bind_host: str = "127.0.0.1",
    named_tokens: Optional[Dict[str, str]] = None,
    user_header: Optional[str] = None,
) -> Flask:
    """The launch page app. ``token`` and ``named_tokens`` ({token: user}) protect it as
    :mod:`launchbay.ui.security` describes; ``user_header`` trusts a reverse proxy to name the user."""
    security.check_bind(bind_host, token or ("named" if named_tokens else None))
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.urandom(32)  # signs the flash messages; new each start
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    # The CLI's limit on overrides, plus room for the form's other fields; werkzeug refuses more (413).
    app.config["MAX_CONTENT_LENGTH"] = MAX_OVERRIDES_BYTES + FORM_OVERHEAD_BYTES
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_OVERRIDES_BYTES
    keys = keys or Keys.from_env()
    app.extensions[EXTENSION] = Settings(
        conn, keys, token or None, bind_host, queue_registry(conn, keys), dict(named_tokens or {}), user_header
    )
    app.before_request(_check_request)
    app.after_request(_protect_response)
    _register_error_pages(app)
    app.jinja_env.filters.update(when=when, pretty_json=pretty_json, number=number, dom_id=dom_id)
    app.jinja_env.globals.update(
        ui_token=identity.request_token, token_field=security.TOKEN_FIELD, no_override=form.NO_OVERRIDE
    )
    app.register_blueprint(pages)
    return app


def _check_request() -> Optional[Any]:
    """Host, token and origin checks; a response here ends the request."""
    config = settings()
    if not security.host_allowed(request.host, config.bind_host):
        return _refuse(400, "Unexpected Host header", f"This page answers only to {config.bind_host}.")
    if request.method == "POST" and not security.same_origin(request.headers, request.host_url.rstrip("/")):
        return _refuse(403, "Cross-origin request refused", "Launch and cancel only from this page itself.")
    if not config.protected or request.endpoint == "static":
        return None
    if request.method == "POST":
        given = request.headers.get(security.TOKEN_HEADER) or request.form.get(security.TOKEN_FIELD)
        if not identity.valid(given):
            return _refuse(403, "Token missing or wrong", "Reload the page and try again.")
        return None
    return _check_read_token()


def _check_read_token() -> Optional[Any]:
    from_url = request.args.get(security.TOKEN_FIELD)
    if from_url is not None and identity.valid(from_url):
        token = from_url
        # Keep it in a cookie and drop it from the address bar (and from history and Referer).
        rest = [(k, v) for k, v in request.args.items(multi=True) if k != security.TOKEN_FIELD]
        response = redirect(request.path + (f"?{urlencode(rest)}" if rest else ""), code=303)
        response.set_cookie(
            security.TOKEN_COOKIE, token, max_age=TOKEN_COOKIE_MAX_AGE_S, httponly=True, samesite="Strict"
        )
        return response
    given = request.headers.get(security.TOKEN_HEADER) or request.cookies.get(security.TOKEN_COOKIE)
    if identity.valid(given):
        return None
    return _refuse(
        401, "Token needed", f"Open this page as {request.base_url}?token=… with the value of {security.TOKEN_ENV}."
    )


def _refuse(status: int, title: str, detail: str) -> Any:
    return render_template("error.html", title=title, detail=detail), status


def _protect_response(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _register_error_pages(app: Flask) -> None:
    @app.errorhandler(NotFoundError)
    def not_found(exc: NotFoundError) -> Any:
        return _refuse(404, "Not found", str(exc))

    @app.errorhandler(UserError)
    def user_error(exc: UserError) -> Any:
        return _refuse(400, "Refused", str(exc))

    @app.errorhandler(RedisUnavailableError)
    @app.errorhandler(redis.ConnectionError)
    def redis_down(exc: Exception) -> Any:
        return _refuse(503, "Redis is unreachable", f"{exc}. The page works again as soon as Redis answers.")

    @app.errorhandler(413)
    def too_large(_exc: Exception) -> Any:
        limit = f"{MAX_OVERRIDES_BYTES >> 20} MiB"
        return _refuse(413, "Refused", f"The form is larger than launchbay accepts (overrides up to {limit}).")

    @app.errorhandler(404)
    def no_page(_exc: Exception) -> Any:
        return _refuse(404, "Not found", "There is no page at this address.")


def when(epoch_s: Optional[float]) -> str:
    """Local time to the second, ``-`` when unset."""
    if not epoch_s:
        return "-"
    return datetime.fromtimestamp(float(epoch_s)).strftime("%Y-%m-%d %H:%M:%S")


def pretty_json(value: Any) -> str:
    """Indented JSON text; the template escapes it like any other text."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def number(value: Any) -> str:
    """``4`` rather than ``4.0``, ``1.5`` stays."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def dom_id(name: str) -> str:
    """A short HTML id for a form field name (names hold dots and colons; ids stay plain)."""
    return "f-" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:12]
