"""Which Redis launchbay talks to, and what a user sees when it cannot."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

import psutil
import pytest
from conftest import BIN_DIR, REPO_ROOT, RedisServer, free_port, run_cli
from launchbay.redis_connection import local_server as local_redis
from launchbay.redis_connection.connect import connect, redact_url, resolve_url
from queue_helpers import cli, wait_for

from launchbay.errors import ConfigError, RedisUnavailableError


def test_the_flag_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("LAUNCHBAY_REDIS_URL", "redis://env-host:6379/0")
    assert resolve_url("redis://flag-host:6379/1") == "redis://flag-host:6379/1"


def test_the_environment_is_used_when_no_flag_is_given(monkeypatch):
    monkeypatch.setenv("LAUNCHBAY_REDIS_URL", "rediss://user:secret@env-host:6380/2")
    assert resolve_url(None) == "rediss://user:secret@env-host:6380/2"


def test_a_url_with_another_scheme_is_refused_naming_where_it_came_from(monkeypatch):
    monkeypatch.setenv("LAUNCHBAY_REDIS_URL", "http://:pw@host:6379")
    with pytest.raises(ConfigError) as caught:
        resolve_url(None)
    assert str(caught.value) == (
        "LAUNCHBAY_REDIS_URL 'http://:***@host:6379' must start with redis://, rediss://, unix:// or redis+sentinel:// "
        "(e.g. redis://:PASSWORD@host:6379/0)"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://alice:hunter2@host:6380/1", "rediss://alice:***@host:6380/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_passwords_are_never_shown(url, shown):
    assert redact_url(url) == shown


def test_a_redis_that_is_down_is_one_line_and_exit_code_3():
    url = f"redis://:topsecret@127.0.0.1:{free_port()}/0"
    result = run_cli("queue", "list", "--redis-url", url)
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"error: cannot reach Redis at redis://:***@127.0.0.1:{url.split(':')[-1].split('/')[0]}/0: "
    )
    assert "Connection refused; is redis-server running?" in result.stderr
    assert "topsecret" not in result.stderr and "Traceback" not in result.stderr


def test_connect_raises_redis_unavailable_for_a_port_with_nothing_listening():
    with pytest.raises(RedisUnavailableError):
        connect(f"redis://127.0.0.1:{free_port()}/0")


@pytest.fixture
def password_redis(redis_server, tmp_path):
    server = RedisServer(tmp_path / "auth", password="right-password").start()
    yield server
    server.stop()


def test_a_wrong_password_is_one_line_and_exit_code_2_without_the_password(password_redis):
    url = f"redis://:wrong-password@127.0.0.1:{password_redis.port}/0"
    result = cli(url, "queue", "list")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: Redis at redis://:***@127.0.0.1:{password_redis.port}/0 refused the credentials "
        "(invalid username-password pair or user is disabled); "
        "check the user and password in the URL (redis://USER:PASSWORD@host:port/db)\n"
    )


def test_a_missing_password_is_reported_as_refused_credentials(password_redis):
    result = cli(f"redis://127.0.0.1:{password_redis.port}/0", "queue", "list")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"error: Redis at redis://127.0.0.1:{password_redis.port}/0 refused the credentials"
    )


def test_the_right_password_works(password_redis):
    result = cli(password_redis.url, "queue", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- the private local server ---------------------------------------------------------------


def _servers_on(sock) -> list:
    """Pids of redis-server processes started for this socket (read from /proc, Linux only)."""
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and "redis-server" in cmdline[0] and str(sock) in " ".join(cmdline):
            pids.append(proc.pid)
    return pids


@pytest.fixture
def zero_config_env(tmp_path, redis_server):
    """An environment with no Redis URL and a fresh state folder; kills the server it starts."""
    state = tmp_path / "s"
    env = {k: v for k, v in os.environ.items() if k != "LAUNCHBAY_REDIS_URL"}
    env.update(HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(state))
    pidfile = state / "launchbay" / "redis" / local_redis.PIDFILE_NAME
    yield env, pidfile
    # Every server started for this test's socket (one, unless the start lock failed).
    for pid in _servers_on(pidfile.parent / local_redis.SOCKET_NAME):
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda pid=pid: not _alive(pid), what="the local redis-server to stop")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run(env, *args):
    return subprocess.run([str(BIN_DIR / "launchbay"), *args], capture_output=True, text=True, env=env, timeout=60)


def test_without_a_url_a_private_local_server_is_started_once_and_reused(zero_config_env, tmp_path):
    env, pidfile = zero_config_env
    spec = tmp_path / "job.yaml"
    spec.write_text("name: hello\nimage: busybox\n")

    first = _run(env, "queue", "apply", str(REPO_ROOT / "queue_config" / "examples" / "local.yaml"))
    assert first.returncode == 0, first.stderr
    assert first.stdout == "queue 'local' created\n"
    pid = int(pidfile.read_text())
    sock = pidfile.parent / local_redis.SOCKET_NAME
    assert sock.is_socket()
    assert oct(pidfile.parent.stat().st_mode & 0o777) == "0o700"

    second = _run(env, "enqueue", str(spec), "-q", "local")
    assert second.returncode == 0, second.stderr
    assert int(pidfile.read_text()) == pid and _alive(pid)  # the same server, not a new one

    listed = _run(env, "list", "--json")
    assert '"name": "hello"' in listed.stdout
    assert (pidfile.parent / "appendonlydir").is_dir() or (pidfile.parent / "appendonly.aof").exists()


def test_without_a_url_and_without_redis_server_the_error_says_how_to_install_it(zero_config_env):
    env, _ = zero_config_env
    env["PATH"] = "/nonexistent"
    result = _run(env, "queue", "list")
    assert result.returncode == 2
    assert result.stderr == (
        "error: no Redis configured and redis-server is not installed to start a local one: "
        "run `apt-get install redis-server`, or set LAUNCHBAY_REDIS_URL / --redis-url\n"
    )


def test_commands_starting_at_the_same_moment_share_one_local_server(zero_config_env, monkeypatch):
    env, pidfile = zero_config_env
    monkeypatch.setenv("XDG_STATE_HOME", env["XDG_STATE_HOME"])
    start_together = threading.Barrier(4)
    urls = []

    def start() -> None:
        start_together.wait()
        urls.append(local_redis.ensure_running())

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    sock = pidfile.parent / local_redis.SOCKET_NAME
    assert urls == [f"unix://{sock}"] * 4
    assert _servers_on(sock) == [int(pidfile.read_text())]
