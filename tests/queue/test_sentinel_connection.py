"""``redis+sentinel://`` URLs: launchbay finds the master through Redis Sentinel and follows a failover."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis
from conftest import RedisServer, free_port
from launchbay.redis_connection.connect import connect, redact_url
from queue_helpers import CPU_QUEUE, apply_queues, cli, redis_snapshot

from launchbay.errors import ConfigError, RedisUnavailableError

pytestmark = pytest.mark.integration


class Sentinel:
    """A redis-server in sentinel mode watching one master, named ``main``."""

    def __init__(self, workdir: Path, master_port: int) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor main 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds main 500\n"
            "sentinel failover-timeout main 5000\n"
        )
        self.proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_until(lambda: redis.Redis(port=self.port, socket_connect_timeout=0.2).ping(), "the sentinel to answer")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def wait_until(check, what: str, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except redis.RedisError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


@pytest.fixture
def servers(tmp_path, redis_server):  # redis_server: skips (or fails in CI) without redis-server
    started = []

    def start(kind, *args):
        server = kind(*args)
        started.append(server)
        return server.start() if isinstance(server, RedisServer) else server

    yield start
    for server in reversed(started):
        server.stop()


def test_a_sentinel_url_reaches_the_master_it_names(tmp_path, servers):
    master = servers(RedisServer, tmp_path / "master")
    sentinel = servers(Sentinel, tmp_path / "sentinel", master.port)
    conn = connect(f"redis+sentinel://127.0.0.1:{sentinel.port}/main/3")
    conn.set("greeting", "hi")
    assert redis.Redis(port=master.port, db=3).get("greeting") == b"hi"


def test_after_a_failover_the_same_connection_writes_to_the_new_master(tmp_path, servers):
    master = servers(RedisServer, tmp_path / "master")
    replica = servers(RedisServer, tmp_path / "replica", "--replicaof", "127.0.0.1", str(master.port))
    sentinel = servers(Sentinel, tmp_path / "sentinel", master.port)
    wait_until(lambda: redis.Redis(port=sentinel.port).sentinel_slaves("main"), "the sentinel to see the replica")
    conn = connect(f"redis+sentinel://127.0.0.1:{sentinel.port},127.0.0.1:{free_port()}/main")
    conn.set("before", "1")
    wait_until(lambda: redis.Redis(port=replica.port).get("before") == b"1", "the replica to catch up")

    master.stop()

    wait_until(lambda: conn.set("after", "2"), "a write through the same connection after the failover", 30)
    new_master = redis.Redis(port=replica.port)
    assert new_master.info("replication")["role"] == "master"
    assert new_master.get("after") == b"2" and new_master.get("before") == b"1"


def test_while_the_sentinels_still_name_a_dead_master_the_cli_says_so_in_one_line_and_exit_3(tmp_path, servers):
    master = servers(RedisServer, tmp_path / "master")
    sentinel = servers(Sentinel, tmp_path / "sentinel", master.port)
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/main"
    master.stop()  # no replica to promote: the sentinel names the dead master, then no master at all

    result = cli(url, "enqueue", "--image", "img", "-q", "cpu", "--", "true")

    assert result.returncode == 3 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: cannot reach Redis at {url}: ")
    assert "the sentinels promote a replica after their down-after-milliseconds" in result.stderr


def test_an_enqueue_sent_to_a_replica_is_refused_in_one_line_exit_3_and_writes_nothing(tmp_path, servers):
    master = servers(RedisServer, tmp_path / "master")
    replica = servers(RedisServer, tmp_path / "replica", "--replicaof", "127.0.0.1", str(master.port))
    apply_queues(redis.Redis(port=master.port), CPU_QUEUE)
    wait_until(lambda: redis.Redis(port=replica.port).dbsize() == redis.Redis(port=master.port).dbsize(), "the sync")
    before = redis_snapshot(redis.Redis(port=replica.port))

    result = cli(replica.url, "enqueue", "--image", "img", "-q", "cpu", "--", "true")

    assert result.returncode == 3 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: Redis at {replica.url} is a read-only replica now: a failover may")
    assert result.stderr.rstrip().endswith("nothing was written")
    assert redis_snapshot(redis.Redis(port=replica.port)) == before


def test_a_master_short_of_in_sync_replicas_refuses_an_enqueue_in_one_line_exit_3(tmp_path, servers):
    master = servers(RedisServer, tmp_path / "master")
    conn = redis.Redis(port=master.port)
    apply_queues(conn, CPU_QUEUE)
    conn.config_set("min-replicas-to-write", 1)  # and no replica: every write is refused
    before = redis_snapshot(conn)

    result = cli(master.url, "enqueue", "--image", "img", "-q", "cpu", "--", "true")

    assert result.returncode == 3 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: Redis at {master.url} refuses writes: fewer replicas are in sync than")
    assert "NOREPLICAS" in result.stderr and "Traceback" not in result.stderr
    assert redis_snapshot(conn) == before


def test_a_sentinel_that_knows_no_such_master_is_an_unreachable_redis(tmp_path, servers):
    master = servers(RedisServer, tmp_path / "master")
    sentinel = servers(Sentinel, tmp_path / "sentinel", master.port)
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis at redis\\+sentinel://"):
        connect(f"redis+sentinel://127.0.0.1:{sentinel.port}/other")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://127.0.0.1:26379", "ends with /SERVICE or /SERVICE/DB"),
        ("redis+sentinel://127.0.0.1:26379/main/x", "ends with /SERVICE or /SERVICE/DB"),
        ("redis+sentinel://127.0.0.1:port/main", "must be HOST or HOST:PORT"),
        ("redis+sentinel://127.0.0.1/main?ssl=1", "unknown query parameter(s) ssl"),
        ("redis+sentinel://127.0.0.1/main?wait_replicas=two", "wait_replicas='two' must be a number of replicas"),
    ],
)
def test_a_malformed_sentinel_url_is_a_config_error_saying_what_is_wrong(url, problem):
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        connect(url)


def test_sentinel_urls_never_show_either_password():
    url = "redis+sentinel://app:secret@h1:26379,h2/main/0?sentinel_password=other"
    assert redact_url(url) == "redis+sentinel://app:***@h1:26379,h2/main/0?sentinel_password=***"
