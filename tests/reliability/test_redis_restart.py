"""Redis (``appendonly yes``) killed and started again while agents run jobs and a client enqueues.

What a user must see: every enqueue that was acknowledged survives and runs; while Redis is down
the CLI says so in one line (exit 3) and the agent health check fails; the agents keep their
containers running through the outage, reconnect by themselves, and go on; a ``logs -f`` that
was following a job rides out the outage and ends normally.
"""

from __future__ import annotations

import subprocess
import textwrap
import threading
import time

import pytest
import redis
from conftest import BIN_DIR, RedisServer
from launchbay.client import enqueue
from reliability_helpers import (
    TERMINAL,
    AgentFleet,
    agents_json,
    cli,
    cli_popen,
    ledger_sizes,
    log_lines,
    make_queue,
    record,
    records_of,
    state_of,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

#: How long Redis stays down: longer than the agents' beat interval and Redis client back-off.
OUTAGE_S = 6.0
TICKS = 120  # a 30 s job: it must outlive the outage plus several CLI start-ups on a busy machine
TICK_S = 0.25
#: TTL + grace must outlast the outage, or the reaper of the first agent back frees the others' jobs.
BEATS = {"LAUNCHBAY_AGENT_HEARTBEAT_TTL_S": "10", "LAUNCHBAY_AGENT_LOST_GRACE_S": "15"}


@pytest.fixture
def durable_redis(tmp_path, redis_server):
    server = RedisServer(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "everysec").start()
    yield server
    server.stop()


@pytest.fixture
def fleet(durable_redis, tmp_path, docker_client):
    fleet = AgentFleet(durable_redis.url, tmp_path, docker_client, env=BEATS)
    yield fleet
    fleet.close()


class Submitter(threading.Thread):
    """Enqueues short jobs as fast as it can; remembers which enqueues Redis acknowledged."""

    def __init__(self, redis_url: str, image: str) -> None:
        super().__init__(name="submitter", daemon=True)
        self.redis_url = redis_url
        self.spec = {"name": "short", "image": image, "command": ["echo", "short job done"]}
        self.acknowledged: list = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.acknowledged.append(enqueue(self.spec, "rr", redis_url=self.redis_url).id)
            except Exception:  # RedisUnavailableError while it is down: the caller knows, nothing was queued
                self.refused += 1
                time.sleep(0.2)
            time.sleep(0.1)


class Follower:
    """Reads a ``launchbay logs -f`` process's stdout line by line on a thread, as a terminal would."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def finish(self, timeout_s: float) -> tuple:
        """Wait for the process to exit; returns (exit code, stderr)."""
        code = self.proc.wait(timeout_s)
        self._reader.join(10)
        return code, self.proc.stderr.read()


def ticking_job() -> list:
    source = f"""
        import time
        for i in range(1, {TICKS + 1}):
            print(f"tick {{i}}", flush=True)
            time.sleep({TICK_S})
    """
    return ["python3", "-c", textwrap.dedent(source)]


def test_redis_killed_and_restarted_under_load_loses_no_queued_job_and_everyone_reconnects(
    durable_redis, fleet, base_image, docker_client, capsys
):
    url = durable_redis.url
    conn = redis.Redis.from_url(url)
    make_queue(conn, "rr")
    long_job = enqueue({"name": "ticker", "image": base_image, "command": ticking_job()}, "rr", redis_url=url).id
    for agent_id in ("rr-a", "rr-b"):
        fleet.start(agent_id, "--max-jobs", "3", queues=("rr",))
    wait_for(lambda: len(log_lines(conn, long_job)) >= 4, timeout_s=60, what=f"the long job\n{fleet.output()}")
    container = docker_client.containers.get(record(conn, long_job)["container"])
    follower = Follower(cli_popen(url, "logs", "-f", long_job))
    wait_for(lambda: follower.lines, timeout_s=60, what="`logs -f` to print")  # it follows before Redis goes
    submitter = Submitter(url, base_image)
    submitter.start()
    time.sleep(2)

    durable_redis.proc.kill()  # SIGKILL: no shutdown save; the append-only file is all there is
    durable_redis.proc.wait(10)
    down_at = time.monotonic()
    listing = cli(url, "list")
    check = subprocess.run(
        [str(BIN_DIR / "launchbay"), "agent", "--check", "--redis-url", url], capture_output=True, text=True, timeout=60
    )
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    container.reload()
    running_during_outage = container.status
    agents_alive_during_outage = all(agent.running for agent in fleet.agents.values())
    durable_redis.start()
    time.sleep(2)
    submitter.stop.set()
    submitter.join(30)

    acknowledged = submitter.acknowledged
    wait_for(
        lambda: all(state_of(conn, j) in TERMINAL for j in [long_job, *acknowledged]),
        timeout_s=120,
        what=f"every acknowledged job to end\n{fleet.output()}",
    )
    follower_code, follower_err = follower.finish(timeout_s=60)
    with capsys.disabled():
        print(
            f"\nredis restart: down {OUTAGE_S:g} s (SIGKILL, appendonly everysec), {len(acknowledged)} enqueues "
            f"acknowledged, {submitter.refused} refused while down, "
            f"{sum(state_of(conn, j) == 'finished' for j in acknowledged)} of them finished, long job "
            f"{state_of(conn, long_job)} with {len(log_lines(conn, long_job))} of {TICKS} lines in Redis"
        )

    assert listing.returncode == 3
    assert listing.stderr.startswith(f"error: cannot reach Redis at {url}: ") and listing.stderr.count("\n") == 1
    assert check.returncode == 1 and "redis: unreachable" in check.stdout
    assert running_during_outage == "running", "the agent keeps its containers running while Redis is down"
    assert agents_alive_during_outage and all(agent.running for agent in fleet.agents.values())
    assert submitter.refused > 0 and len(acknowledged) > 10
    assert [r["state"] for r in records_of(conn, acknowledged)] == ["finished"] * len(acknowledged), "none lost"
    assert conn.llen("rq:queue:rr") == 0
    assert record(conn, long_job)["state"] == "finished" and record(conn, long_job)["attempts"] == 1
    ticks = [f"tick {i}" for i in range(1, TICKS + 1)]
    assert log_lines(conn, long_job) == ticks, "lines printed while Redis was down reach the stream afterwards"
    log_file = fleet.state_dir(record(conn, long_job)["agent"]) / "logs" / f"{long_job}.log"
    assert log_file.read_text().splitlines() == ticks
    assert follower_code == 0, follower_err
    assert follower.lines == ticks
    assert "Redis does not answer" in follower_err
    wait_for(
        lambda: {(a["agent_id"], a["status"]) for a in agents_json(url)} == {("rr-a", "healthy"), ("rr-b", "healthy")},
        timeout_s=15,
        what="both agents to beat again",
    )
    # Ledger entries are freed after each end is recorded and its container removed.
    wait_for(lambda: not any(ledger_sizes(conn, ("rr-a", "rr-b")).values()), timeout_s=10, what="ledgers to empty")
