"""A fake Docker engine for the sick-engine tests (no tests here): a small HTTP server on a unix
socket that answers some Docker API calls and hangs on the others, as a half-sick engine does
(issue 13, finding 5: answering ``/_ping`` and ``/containers/json`` while image inspect never returns).

``FakeDockerSocket(path, answers={"ping", "version", "list"})`` serves until :meth:`close`, which
also lets every hanging request go. ``calls`` records ``(method, path)`` of each request, API
version prefix removed.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Collection, List, Optional, Tuple
from urllib.parse import urlsplit

#: What each answered call returns: (call, method, path pattern, status, content type, body).
ROUTES: Tuple[Tuple[str, str, str, int, str, str], ...] = (
    ("ping", "GET", r"/_ping", 200, "text/plain", "OK"),
    ("ping", "HEAD", r"/_ping", 200, "text/plain", ""),
    (
        "version",
        "GET",
        r"/version",
        200,
        "application/json",
        json.dumps({"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.24", "Os": "linux"}),
    ),
    ("list", "GET", r"/containers/json", 200, "application/json", "[]"),
    ("image", "GET", r"/images/.+/json", 404, "application/json", json.dumps({"message": "No such image"})),
    ("create", "POST", r"/containers/create", 404, "application/json", json.dumps({"message": "No such image"})),
)
_VERSION_PREFIX = re.compile(r"^/v[0-9.]+(?=/)")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def _answer(self) -> None:
        path = _VERSION_PREFIX.sub("", urlsplit(self.path).path)
        self.server.calls.append((self.command, path))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        route = next((r for r in ROUTES if r[1] == self.command and re.fullmatch(r[2], path)), None)
        if route is None or route[0] not in self.server.answers:
            self.server.released.wait()  # hang, as the sick engine does, until the test is over
            self.close_connection = True
            return
        _, _, _, status, content_type, body = route
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def address_string(self) -> str:  # a unix socket has no client address
        return "fake-docker-client"

    def log_message(self, format: str, *args: object) -> None:
        return None


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    calls: List[Tuple[str, str]]
    answers: Collection[str]
    released: threading.Event


class FakeDockerSocket:
    """Serves on ``path`` the calls named in ``answers`` (ping, version, list, image, create); hangs on the rest."""

    def __init__(self, path: Path, answers: Collection[str]) -> None:
        self.path = path
        self.server = _Server(str(path), _Handler)
        self.server.calls = []
        self.server.answers = frozenset(answers)
        self.server.released = threading.Event()
        self._thread: Optional[threading.Thread] = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    @property
    def calls(self) -> List[Tuple[str, str]]:
        return list(self.server.calls)

    def close(self) -> None:
        self.server.released.set()
        self.server.shutdown()
        self.server.server_close()
