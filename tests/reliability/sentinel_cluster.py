"""A master, a replica and three sentinels on loopback, for the failover test (no tests here).

Debian's ``redis-server`` and ``redis-sentinel``, random ports, one folder each under the test's
temporary directory; :meth:`SentinelCluster.close` stops every process it started, pass or fail.
Every wait is on a condition the servers report (``INFO replication``, ``SENTINEL ...``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import redis
from conftest import RedisServer, free_port, require

SERVICE = "lbmain"
QUORUM = 2
#: How long a master must be silent before the sentinels call it down. Longer than redis-py's own
#: retries (10, backing off from 10 ms to 1 s: about 4 s at most), so that the calls made in the
#: failover window are refused (exit 3) instead of riding it out; the production default is 30 s.
DOWN_AFTER_MS = 5000
FAILOVER_TIMEOUT_MS = 20000


def wait_until(check: Callable[[], object], what: str, timeout_s: float = 60.0) -> object:
    """Poll ``check`` until it returns something true; Redis errors meanwhile count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    last: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} (last error: {last})")


class SentinelProcess:
    """One ``redis-sentinel`` monitoring SERVICE; its config file is its own (sentinels rewrite it)."""

    def __init__(self, workdir: Path, master_port: int) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.master_port = master_port
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> SentinelProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\nlogfile {self.workdir / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.proc = subprocess.Popen(["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(self.client().ping, f"the sentinel on port {self.port} to answer", 20)
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def master_addr(self) -> Optional[Tuple[str, int]]:
        addr = self.client().sentinel_get_master_addr_by_name(SERVICE)
        return (addr[0], int(addr[1])) if addr else None

    def master_state(self) -> dict:
        return self.client().sentinel_master(SERVICE)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class SentinelCluster:
    """A master and ``replicas`` replicas (all ``appendonly yes``) and three sentinels with quorum 2.

    Two replicas by default: after the master fails one is promoted and the other replicates it,
    so a write a replica must confirm (``wait_replicas=1``) can be confirmed after the failover too.
    """

    def __init__(self, workdir: Path, replicas: int = 2) -> None:
        require(
            shutil.which("redis-sentinel") is not None,
            "redis-sentinel is not installed (apt-get install redis-sentinel)",
        )
        self.server_args = ("--appendonly", "yes", "--appendfsync", "everysec")
        self.master = RedisServer(workdir / "master", *self.server_args)
        self.replicas: List[RedisServer] = []
        self.replica_count = replicas
        self.workdir = workdir
        self.sentinels: List[SentinelProcess] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> SentinelCluster:
        self.master.start()
        for index in range(self.replica_count):
            args = (*self.server_args, "--replicaof", "127.0.0.1", str(self.master.port))
            self.replicas.append(RedisServer(self.workdir / f"replica-{index}", *args).start())
        wait_until(self.replicas_in_sync, "the replicas to sync with the master", 30)
        for index in range(3):
            self.sentinels.append(SentinelProcess(self.workdir / f"sentinel-{index}", self.master.port).start())
        wait_until(self._sentinels_agree, "each sentinel to see the replicas and the two other sentinels", 60)
        return self

    def replicas_in_sync(self) -> bool:
        """Every replica's link is up and it has applied all that the master has written."""
        offset = redis.Redis(port=self.master.port).info("replication")["master_repl_offset"]
        for replica in self.replicas:
            info = redis.Redis(port=replica.port, socket_connect_timeout=1).info("replication")
            if info.get("master_link_status") != "up" or info.get("slave_repl_offset", -1) < offset:
                return False
        return True

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            state = sentinel.master_state()
            if int(state.get("num-slaves", 0)) < len(self.replicas) or int(state.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    def named_master_port(self) -> Optional[int]:
        """The master's port as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                addr = sentinel.master_addr()
                return addr[1] if addr else None
        return None

    def kill_master(self) -> None:
        """SIGKILL, as a crashed host: no shutdown, nothing flushed that was not already."""
        self.master.proc.kill()
        self.master.proc.wait(10)

    def promoted(self) -> Optional[int]:
        """The port of the replica every sentinel now names as a master in good health, once it says it
        is one (what redis-py's discovery accepts); else None."""
        ports = set()
        for sentinel in self.sentinels:
            state = sentinel.master_state()
            if not state.get("is_master") or state.get("is_sdown") or state.get("is_odown"):
                return None
            ports.add(int(state["port"]))
        port = ports.pop() if len(ports) == 1 else None
        if port not in {replica.port for replica in self.replicas}:
            return None
        role = redis.Redis(port=port, socket_connect_timeout=1).info("replication")["role"]
        return port if role == "master" else None

    def close(self) -> None:
        for process in [*self.sentinels, *self.replicas, self.master]:
            with contextlib.suppress(Exception):
                process.stop()
