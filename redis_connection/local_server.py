"""A private redis-server for one user, started on demand, so one machine works with zero config.

When neither ``--redis-url`` nor ``LAUNCHBAY_REDIS_URL`` names a Redis, launchbay uses a server
that listens only on a unix socket in the user's state folder
(``$XDG_STATE_HOME/launchbay/redis/``, else ``~/.local/state/launchbay/redis/``). It runs
daemonized with ``--port 0`` (no TCP, so nothing else on the network sees it) and ``appendonly``
on (queued jobs survive a reboot). The first command that needs it starts it; later commands find
the socket answering and reuse it. A lock file keeps two commands started at the same moment from
starting two servers. It keeps running after the command exits; stop it with
``kill $(cat <folder>/redis.pid)``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from launchbay.errors import ConfigError, RedisUnavailableError

SOCKET_NAME = "redis.sock"
PIDFILE_NAME = "redis.pid"
LOCK_NAME = "start.lock"
LOG_NAME = "redis.log"
#: How long a fresh server may take to answer PING before we give up (seconds).
START_TIMEOUT_S = 10.0
#: sun_path holds 108 bytes on Linux (104 on macOS); leave room for the terminating NUL.
MAX_SOCKET_PATH = 103


def state_dir() -> Path:
    """The folder that holds the socket, pid file, lock file, log and append-only file."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "launchbay" / "redis"


def socket_path() -> Path:
    return state_dir() / SOCKET_NAME


def local_url() -> str:
    return f"unix://{socket_path()}"


def ensure_running() -> str:
    """Start the private server unless it already answers; return its ``unix://`` URL."""
    sock = socket_path()
    if len(str(sock)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"the local Redis socket path {sock} is too long for a unix socket; "
            "set XDG_STATE_HOME to a shorter folder or LAUNCHBAY_REDIS_URL to a Redis"
        )
    if _answers(sock):
        return local_url()
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / LOCK_NAME, "w") as lock:
        # Whoever holds the lock starts the server; the others wait, then find it answering.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _answers(sock):
            _start(folder)
    return local_url()


def _answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    conn = redis.Redis(unix_socket_path=str(sock), socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(conn.ping())
    except redis.RedisError:
        return False
    finally:
        conn.close()


def _start(folder: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigError(
            "no Redis configured and redis-server is not installed to start a local one: "
            "run `apt-get install redis-server`, or set LAUNCHBAY_REDIS_URL / --redis-url"
        )
    args = [
        binary,
        "--port", "0",
        "--unixsocket", str(folder / SOCKET_NAME),
        "--unixsocketperm", "700",
        "--daemonize", "yes",
        "--pidfile", str(folder / PIDFILE_NAME),
        "--logfile", str(folder / LOG_NAME),
        "--dir", str(folder),
        "--appendonly", "yes",
        "--save", "",  # the append-only file is the persistence; RDB snapshots would only duplicate it
    ]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise RedisUnavailableError(
            f"could not start the local redis-server: {detail[-1] if detail else 'exit ' + str(result.returncode)}"
        )
    _wait_until_answering(folder / SOCKET_NAME)


def _wait_until_answering(sock: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _answers(sock):
            return
        time.sleep(0.05)
    raise RedisUnavailableError(
        f"the local redis-server did not answer on {sock} within {START_TIMEOUT_S:.0f}s; see {sock.parent / LOG_NAME}"
    )
