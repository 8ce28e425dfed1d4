"""Serving the app with waitress, the way ``launchbay ui`` does."""

from __future__ import annotations

from typing import Callable, Optional

from flask import Flask
from waitress import create_server

#: Worker threads: page loads and log polls are short Redis reads, so a few suffice.
THREADS = 8


def url_for_bind(host: str, port: int) -> str:
    """The address people open: ``http://127.0.0.1:8080/`` (IPv6 hosts in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(app: Flask, *, host: str, port: int, on_ready: Optional[Callable[[str], None]] = None) -> None:
    """Serve ``app`` until interrupted; ``on_ready`` gets the URL once the port is bound (port 0 picks one)."""
    server = create_server(app, host=host, port=port, threads=THREADS, ident="launchbay-ui")
    url = url_for_bind(host, server.effective_port)
    if on_ready is not None:
        on_ready(url)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
