"""Shared fixtures: a private redis-server on a random loopback port, the Docker engine that
scripts/test started, and the locally built base image.

Outside CI a missing service skips the tests that need it; with CI=true it fails them. The Debian
packages the suite needs are listed once, in scripts/test-packages.txt: with CI=true a run stops in its
first second when one of their commands is missing (``pytest_sessionstart``), not twenty minutes later.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# On a loaded 2-core CI machine an example can take seconds: a property test checks properties,
# never speed (speed lives in bench/), so no per-example deadline and no "too slow" health check.
settings.register_profile("launchbay", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("launchbay")

IN_CI = os.environ.get("CI", "").lower() == "true"
REPO_ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(sys.executable).parent


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a service the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


TEST_PACKAGES = REPO_ROOT / "scripts" / "test-packages.txt"
#: Where Debian puts administrators' commands (debootstrap, iptables), which a user's PATH may lack.
SBIN_DIRS = ("/usr/sbin", "/sbin")


def listed_test_packages() -> list[tuple[str, str]]:
    """(package, command) for each line of scripts/test-packages.txt; command "-" is checked by dpkg only."""
    rows = []
    for line in TEST_PACKAGES.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            package, command = line.split()[:2]
            rows.append((package, command))
    return rows


def missing_test_packages() -> list[str]:
    """'package (no command)' for each listed package whose command is not on PATH."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return [
        f"{package} (no {command})"
        for package, command in listed_test_packages()
        if command != "-" and shutil.which(command, path=path) is None
    ]


def git_status() -> str | None:
    """``git status --porcelain`` of the checkout, or None when it is not a git work tree."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


#: The work tree as the run found it (a developer's may already hold changes); tests/test_ci_setup.py
#: compares it with the tree after every other test has run.
STATUS_AT_START: dict = {}


def pytest_collection_modifyitems(session, config, items) -> None:
    """The work-tree check runs after every other test, whatever order collection gives."""
    last = [item for item in items if item.get_closest_marker("after_all")]
    items[:] = [item for item in items if not item.get_closest_marker("after_all")] + last


def pytest_sessionstart(session) -> None:
    STATUS_AT_START["git"] = git_status()
    missing = missing_test_packages()
    if not missing:
        return
    line = (
        f"the test suite needs Debian packages that are not installed: {', '.join(missing)}; scripts/test installs them"
    )
    if IN_CI:
        pytest.exit(f"CI=true and {line}", returncode=2)
    sys.stderr.write(f"\nwarning: {line} (the tests that need them skip)\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A throwaway redis-server bound to 127.0.0.1 on a random port."""

    def __init__(self, workdir: Path, *extra_args: str, password: str | None = None) -> None:
        self.workdir = workdir
        self.extra_args = extra_args
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            *self.extra_args,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not listen on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    require(
        shutil.which("redis-server") is not None,
        "redis-server is not installed (apt-get install redis-server)",
    )
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    """URL of the session's redis-server, emptied before each test (it is private to the tests)."""
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def redis_conn(redis_url):
    import redis

    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


class EngineWatch:
    """Notices a wedged Docker engine before a test waits on it.

    Debian's Docker 20.10 has wedged on this kind of machine under several parallel ``docker run``:
    containers shown "Up" after their process ended and every API call hanging. Without a check each
    Docker test would then wait out its own timeouts, and CI its whole time limit. Before each test
    that uses the engine, one listing call must answer within ``PROBE_TIMEOUT_S``. When it does not,
    the private engine that scripts/test started (``LAUNCHBAY_TEST_PRIVATE_DOCKERD=1``) is restarted
    once; any other engine is only named, and the rest of the Docker tests fail at once with that line.
    """

    PROBE_TIMEOUT_S = 20

    def __init__(self) -> None:
        self.wedged: str | None = None
        self.restarts = 0

    def problem(self) -> str | None:
        import docker

        try:
            probe = docker.from_env(timeout=self.PROBE_TIMEOUT_S)
            try:
                probe.api.containers(limit=1)
            finally:
                probe.close()
        except Exception:
            host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            return f"the Docker engine at {host} did not list containers within {self.PROBE_TIMEOUT_S} s: wedged"
        return None

    def check(self) -> None:
        if self.wedged:
            pytest.fail(self.wedged, pytrace=False)
        problem = self.problem()
        if problem and os.environ.get("LAUNCHBAY_TEST_PRIVATE_DOCKERD") == "1" and self.restarts == 0:
            self.restarts += 1
            sys.stderr.write(f"\n{problem}; restarting the private engine that scripts/test started\n")
            restart = subprocess.run(
                ["bash", "-c", f'source "{REPO_ROOT}/scripts/lib.sh" && lb_restart_dockerd'], timeout=180
            )
            problem = self.problem() if restart.returncode == 0 else f"{problem}; restarting it failed"
        if problem:
            self.wedged = problem
            pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def docker_client():
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # any failure here means "no engine"
        require(False, f"no Docker engine answers ({exc.__class__.__name__}); scripts/test starts one")
    yield client
    client.close()


@pytest.fixture(scope="session")
def engine_watch() -> EngineWatch:
    return EngineWatch()


@pytest.fixture(autouse=True)
def _engine_not_wedged(request):
    """Every test that uses the Docker engine first checks that it still answers (see EngineWatch)."""
    if "docker_client" in request.fixturenames:
        request.getfixturevalue("docker_client")
        request.getfixturevalue("engine_watch").check()


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """A local image with python3 and PyYAML, built by scripts/test with debootstrap + docker import."""
    import docker

    name = os.environ.get("LAUNCHBAY_TEST_BASE_IMAGE", "launchbay-base:bookworm")
    try:
        docker_client.images.get(name)
    except docker.errors.ImageNotFound:
        require(False, f"base image {name} is missing; scripts/test builds it")
    return name


def run_cli(
    *args: str,
    env: dict | None = None,
    input: str | None = None,
    timeout: float = 60,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess:
    """Run the installed ``launchbay`` console script as a user would, capturing its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(BIN_DIR / "launchbay"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
        cwd=cwd,
    )


def publish_agent_line(conn, agent_id: str, *, alive: bool = True, ttl_s: float = 60.0) -> None:
    """What an agent's heartbeat writes into the fleet summary (``agents.read_summary``), from the agent's
    capacity key, hash and ledger as a test wrote them: for tests that stand in for an agent."""
    import json as _json

    from launchbay.queue_config.agents import SUMMARY_WRITE_LUA, decode_entries, summary_line
    from launchbay.queue_config.keys import Keys

    keys = Keys()
    capacity = _json.loads(conn.get(keys.agent_capacity(agent_id)) or "{}")
    info = {k.decode(): v.decode() for k, v in conn.hgetall(keys.agent(agent_id)).items()}
    entries = decode_entries(conn.hgetall(keys.agent_ledger(agent_id))).values()
    ttl_ms = int(ttl_s * 1000) if alive else -1000
    conn.eval(SUMMARY_WRITE_LUA, 1, keys.fleet, agent_id, ttl_ms, summary_line(info, capacity, entries))
