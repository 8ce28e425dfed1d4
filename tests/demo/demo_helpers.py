"""Helpers for the tests of what a newcomer runs first: scripts/demo and the agent's image.

(A plain module, not a conftest.py: a second ``conftest`` would shadow the root one.)
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from conftest import require


def engine_socket() -> Path:
    """The Docker engine's unix socket on this host, from DOCKER_HOST (default /var/run/docker.sock)."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    parts = urlsplit(host)
    require(parts.scheme == "unix", f"DOCKER_HOST {host} is not a unix socket, which the agent's container needs")
    path = Path(parts.path)
    require(path.is_socket(), f"no Docker socket at {path}")
    return path


def socket_access(sock: Path) -> dict:
    """docker-py run() options that let the image's non-root user use ``sock``, as the Dockerfile says."""
    mode = sock.stat().st_mode
    if mode & stat.S_IRGRP and mode & stat.S_IWGRP:
        return {"group_add": [str(sock.stat().st_gid)]}
    return {"user": str(sock.stat().st_uid)}


def base_with_pip(docker_client, image: str) -> str:
    """``image`` when it has pip (the Dockerfiles install wheels with it); scripts/test builds such a base."""
    output = docker_client.containers.run(
        image, ["sh", "-c", "python3 -m pip --version >/dev/null 2>&1 && echo yes || echo no"], remove=True
    )
    require(
        output.strip() == b"yes",
        f"base image {image} has no pip, which the image builds need; use the base scripts/test builds "
        "(LAUNCHBAY_TEST_BASE_IMAGE=launchbay-base:bookworm, made by lb_base_image)",
    )
    return image


def wait_for(check: Callable[[], object], what: str, timeout_s: float, explain: Optional[Callable[[], str]] = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}" + (f"\n{explain()}" if explain else ""))
