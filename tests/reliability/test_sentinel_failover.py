"""Redis Sentinel failover under load: the master is killed while agents run jobs and people enqueue.

A master and a replica (``appendonly yes``) and three sentinels (quorum 2) on loopback; two
``launchbay agent`` processes and two streams of ``launchbay enqueue`` CLI calls, all over a
``redis+sentinel://`` URL. The master gets SIGKILL. What a user must see: the sentinels promote
the replica; the agents and the CLI follow it with no one restarting them; every enqueue that
printed a job id (exit 0) runs exactly once, in one container, as attempt 1; every enqueue that
did not got exit 3 and one line, ``error: cannot reach Redis at ...``, and left no job behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import subprocess
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest
import redis
from launchbay.agent.daemon import Agent
from launchbay.agent.runtime_fake import FakeRuntime
from launchbay.client import enqueue, get_job
from launchbay.queue_config.keys import Keys
from launchbay.redis_connection.connect import REPLICA_WAIT_MS, connect
from reliability_helpers import TERMINAL, AgentFleet, ContainerLifetimes, agent_settings, cli, make_queue, records_of
from sentinel_cluster import SentinelCluster, wait_until

from launchbay.errors import NotFoundError, RedisUnavailableError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUEUE = "sf"
#: Enqueues made before the kill, and those that must be acknowledged by the new master after it.
BEFORE_KILL = 8
AFTER_FAILOVER = 6
#: A bound, so that a CLI that never recovers ends the test; refusals take about 0.4 s each, and
#: the failover window (about 6 s) holds some 30 of them with two streams.
MAX_CALLS = 80
#: The agents' lost-agent window (TTL + grace) must outlast the failover, as it must in production.
BEATS = {"LAUNCHBAY_AGENT_HEARTBEAT_TTL_S": "10", "LAUNCHBAY_AGENT_LOST_GRACE_S": "15"}


@dataclasses.dataclass
class Call:
    started: float
    ended: float
    code: int
    stdout: str
    stderr: str

    @property
    def job_id(self) -> Optional[str]:
        return self.stdout.strip() if self.code == 0 else None


class EnqueueStreams:
    """Threads that run ``launchbay enqueue`` one after another, as a script submitting jobs would."""

    def __init__(self, url: str, image: str, streams: int = 2) -> None:
        self.url = url
        self.image = image
        self.calls: List[Call] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(streams)]

    def __enter__(self) -> EnqueueStreams:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(120)

    def _run(self) -> None:
        while not self.stop.is_set() and len(self.calls) < MAX_CALLS:
            started = time.monotonic()
            try:
                done = cli(self.url, "enqueue", "--image", self.image, "-q", QUEUE, "--", "python3", "-c", "print(1)")
                call = Call(started, time.monotonic(), done.returncode, done.stdout, done.stderr)
            except subprocess.TimeoutExpired as exc:  # a CLI that hangs is a finding, not a dead thread
                call = Call(started, time.monotonic(), -1, "", f"(no answer in {exc.timeout:g} s)")
            with self._lock:
                self.calls.append(call)

    def acknowledged(self, since: float = 0.0) -> List[str]:
        return [c.job_id for c in list(self.calls) if c.job_id and c.started >= since]


@pytest.fixture
def cluster(tmp_path, redis_server):  # redis_server: skips (or fails in CI) without redis-server
    cluster = SentinelCluster(tmp_path / "redis")
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def fleet(cluster, tmp_path, docker_client):
    fleet = AgentFleet(cluster.url, tmp_path, docker_client, env=BEATS)
    yield fleet
    fleet.close()


@pytest.mark.docker
def test_a_sentinel_failover_loses_no_acknowledged_enqueue_and_runs_none_twice(
    cluster, fleet, base_image, docker_client, capsys
):
    url = cluster.url
    make_queue(connect(url), QUEUE)
    for agent_id in ("sf-a", "sf-b"):
        fleet.start(agent_id, "--max-jobs", "3", queues=(QUEUE,))
    for agent in fleet.agents.values():
        agent.wait_serving()

    with ContainerLifetimes(docker_client) as lifetimes:
        with EnqueueStreams(url, base_image) as streams:
            wait_until(lambda: len(streams.acknowledged()) >= BEFORE_KILL, "the first enqueues", 120)
            old_master = cluster.master.port
            cluster.kill_master()
            killed = time.monotonic()
            new_master = wait_until(cluster.promoted, "the sentinels to promote a replica", 60)
            promoted = time.monotonic()
            wait_until(
                lambda: len(streams.acknowledged(since=killed)) >= AFTER_FAILOVER or len(streams.calls) >= MAX_CALLS,
                "enqueues after the failover",
                180,
            )
        conn = redis.Redis(port=new_master)
        acknowledged = streams.acknowledged()
        wait_until(
            lambda: all(r["state"] in TERMINAL for r in records_of(conn, acknowledged)),
            f"every acknowledged job to end\n{fleet.output()}",
            180,
        )
        listing = cli(url, "list", "-q", QUEUE, "--limit", "500", "--json")
    report = _report(streams.calls, acknowledged, lifetimes, records_of(conn, acknowledged), listing, killed)
    with capsys.disabled():
        print(f"\nsentinel failover: master :{old_master} killed; promoted after {promoted - killed:.1f} s; {report}")

    assert len(streams.acknowledged(since=killed)) >= AFTER_FAILOVER, _calls_after(streams.calls, killed)
    refused = [c for c in streams.calls if c.code != 0]
    assert {c.code for c in refused} <= {3}, [(c.code, c.stderr) for c in refused]
    unconfirmed = set()  # on a master, but no replica confirmed them: the caller was told they may run
    for call in refused:
        assert call.stderr.count("\n") == 1, call.stderr
        if not call.stderr.startswith(f"error: cannot reach Redis at {url}: "):
            assert call.stderr.startswith("error: job ") and " reached the Redis master, but " in call.stderr
            unconfirmed.add(call.stderr.split()[2])
    assert listing.returncode == 0, listing.stderr  # the CLI reads from the new master
    listed = {job["id"] for job in json.loads(listing.stdout)}
    assert set(acknowledged) <= listed <= set(acknowledged) | unconfirmed, "every acknowledged job is there, no other"
    records = records_of(conn, listed)
    assert [r["state"] for r in records] == ["finished"] * len(listed), "none lost"
    started = lifetimes.intervals()
    assert {job_id: len(started.get(job_id, [])) for job_id in listed} == dict.fromkeys(listed, 1), "each ran once"
    assert all(agent.running for agent in fleet.agents.values()), fleet.output()
    assert {r["agent"] for r in records_of(conn, streams.acknowledged(since=killed))} <= {"sf-a", "sf-b"}
    assert conn.llen(f"rq:queue:{QUEUE}") == 0


def test_an_enqueue_no_replica_has_yet_is_refused_not_acknowledged_and_lost(cluster):
    """The master acknowledges writes its replicas never get (their links are down), then dies.

    Redis replicates asynchronously: without a replica's confirmation the enqueue returns a job id
    that the promoted replica has never heard of. With it, the caller is told (exit 3 in the CLI),
    and what the promoted master says agrees with what the caller was told.
    """
    url = cluster.url
    make_queue(connect(url), QUEUE)
    spec = {"name": "unreplicated", "image": "img", "command": ["true"]}
    first = enqueue(spec, QUEUE, redis_url=url).id  # confirmed by the replicas: it survives
    wait_until(cluster.replicas_in_sync, "the replicas to have the first job", 30)
    for replica in cluster.replicas:  # stopped, they cannot reconnect to the master and catch up
        replica.proc.send_signal(signal.SIGSTOP)
    try:
        redis.Redis(port=cluster.master.port).client_kill_filter(_type="replica")
        wait_until(
            lambda: redis.Redis(port=cluster.master.port).info("replication")["connected_slaves"] == 0,
            "the links to drop",
        )
        started = time.monotonic()
        try:
            outcome = enqueue(spec, QUEUE, redis_url=url).id
        except RedisUnavailableError as exc:
            outcome = exc
        waited = time.monotonic() - started
        cluster.kill_master()
    finally:
        for replica in cluster.replicas:
            replica.proc.send_signal(signal.SIGCONT)
    wait_until(cluster.promoted, "the sentinels to promote a replica", 60)

    assert get_job(first, redis_url=url).state() == "queued"
    assert isinstance(outcome, RedisUnavailableError), f"enqueue acknowledged {outcome}; the new master has " + (
        "it" if redis.Redis(port=cluster.promoted()).exists(Keys().job(str(outcome))) else "never heard of it: lost"
    )
    assert "confirmed it within" in str(outcome) and waited >= REPLICA_WAIT_MS / 1000
    lost_id = str(outcome).split()[1]
    with pytest.raises(NotFoundError):
        get_job(lost_id, redis_url=url)


class CountingRuntime(FakeRuntime):
    """The fake runtime, counting the containers it created per job."""

    def __init__(self) -> None:
        super().__init__()
        self.created: Dict[str, int] = {}

    def create_and_start(self, spec: Dict[str, Any]) -> str:
        container_id = super().create_and_start(spec)
        job_id = self.containers[container_id].job_id
        self.created[job_id] = self.created.get(job_id, 0) + 1
        return container_id


@contextlib.contextmanager
def agent_thread(url: str, settings: Any) -> Iterator[CountingRuntime]:
    """An agent with the fake runtime in a thread of the test, over its own connection to ``url``."""
    runtime = CountingRuntime()
    agent = Agent(settings, conn=connect(url), runtime=runtime)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        yield runtime
    finally:
        agent.request_stop(drain=False)
        thread.join(30)
        agent.supervisor.detach_all()


def test_a_claim_no_replica_has_yet_is_not_launched_so_the_failover_runs_the_job_once(cluster, tmp_path, caplog):
    """An agent claims a job on a master whose replicas do not get it; the master dies; the job is
    queued again on the promoted replica. Launching that claim would run the job twice."""
    url = cluster.url
    make_queue(connect(url), QUEUE)
    spec = {"name": "once", "image": "img", "command": ["true"], "env": {"LAUNCHBAY_FAKE_RUN_S": "3"}}
    job_id = enqueue(spec, QUEUE, redis_url=url).id
    wait_until(cluster.replicas_in_sync, "the replicas to have the job", 30)
    old_master = redis.Redis(port=cluster.master.port)
    for replica in cluster.replicas:
        replica.proc.send_signal(signal.SIGSTOP)
    try:
        old_master.client_kill_filter(_type="replica")
        wait_until(lambda: old_master.info("replication")["connected_slaves"] == 0, "the links to drop")
        settings = dict(queues=[QUEUE], heartbeat_ttl_s=10.0, lost_grace_s=15.0, poll_interval_s=1.0)
        with agent_thread(url, agent_settings(tmp_path / "a", agent_id="sf-a", **settings)) as first:
            wait_until(lambda: old_master.hget(Keys().job(job_id), "agent") == b"sf-a", "sf-a to claim the job")
            wait_until(
                lambda: first.created.get(job_id) or "not started" in caplog.text, "sf-a to launch it or not", 30
            )
            cluster.kill_master()
            for replica in cluster.replicas:
                replica.proc.send_signal(signal.SIGCONT)
            new_master = redis.Redis(port=wait_until(cluster.promoted, "the sentinels to promote a replica", 60))
            with agent_thread(url, agent_settings(tmp_path / "b", agent_id="sf-b", **settings)) as second:
                wait_until(lambda: new_master.hget(Keys().job(job_id), "state") == b"finished", "the job to end", 90)
    finally:
        for replica in cluster.replicas:
            replica.proc.send_signal(signal.SIGCONT)

    created = first.created.get(job_id, 0) + second.created.get(job_id, 0)
    assert created == 1, f"the job ran {created} times (sf-a {first.created}, sf-b {second.created})"


def test_a_claim_held_back_while_no_replica_is_in_sync_runs_once_they_are_back(cluster, tmp_path, caplog):
    """The master stays up but its replicas are away: the claim is not launched, goes back to its
    queue at the next sweep, and runs (once) when a replica confirms a claim again."""
    url = cluster.url
    conn = connect(url)
    make_queue(conn, QUEUE)
    spec = {"name": "later", "image": "img", "command": ["true"], "env": {"LAUNCHBAY_FAKE_RUN_S": "0.2"}}
    job_id = enqueue(spec, QUEUE, redis_url=url).id
    master = redis.Redis(port=cluster.master.port)
    for replica in cluster.replicas:
        replica.proc.send_signal(signal.SIGSTOP)
    try:
        master.client_kill_filter(_type="replica")
        wait_until(lambda: master.info("replication")["connected_slaves"] == 0, "the links to drop")
        settings = agent_settings(tmp_path, agent_id="sf-a", queues=[QUEUE], poll_interval_s=1.0)
        with agent_thread(url, settings) as runtime:
            wait_until(lambda: "not started" in caplog.text, "the agent to hold the claim back", 30)
            held_back = dict(runtime.created)
            for replica in cluster.replicas:
                replica.proc.send_signal(signal.SIGCONT)
            wait_until(cluster.replicas_in_sync, "the replicas to come back", 30)
            wait_until(lambda: master.hget(Keys().job(job_id), "state") == b"finished", "the job to run", 60)
    finally:
        for replica in cluster.replicas:
            replica.proc.send_signal(signal.SIGCONT)

    assert held_back == {} and runtime.created == {job_id: 1}
    assert "(its launch was cut short): requeued" in caplog.text


def _report(calls, acknowledged, lifetimes, records, listing, killed) -> str:
    started = lifetimes.intervals()
    refused = [c for c in calls if c.code != 0]
    recovered = min((c.ended - killed for c in calls if c.code == 0 and c.started >= killed), default=float("nan"))
    return (
        f"{len(calls)} enqueues, {len(acknowledged)} acknowledged, {len(refused)} refused "
        f"(exit codes {sorted({c.code for c in refused})}, {sum('reached the Redis master' in c.stderr for c in refused)}"
        f" of them unconfirmed by a replica); attempts {sorted(r.get('attempts') for r in records)}; "
        f"{sum(r['state'] == 'finished' for r in records)} finished, "
        f"{sum(1 for j in acknowledged if len(started.get(j, [])) == 1)} ran once, "
        f"{sum(1 for j in acknowledged if len(started.get(j, [])) > 1)} ran twice, "
        f"{sum(1 for j in acknowledged if not started.get(j))} never ran, "
        f"{len(set(started) - set(acknowledged))} ran without being acknowledged; "
        f"first enqueue started after the kill acknowledged {recovered:.1f} s after it; "
        f"list exit {listing.returncode}; a refusal: {refused[0].stderr.strip() if refused else '-'}"
    )


def _calls_after(calls: List[Call], killed: float) -> str:
    """What each enqueue from the kill on returned, for a failure message."""
    return "enqueues after the kill:\n" + "\n".join(
        f"  +{c.started - killed:.1f} s .. +{c.ended - killed:.1f} s exit {c.code} {c.stdout.strip()} {c.stderr.strip()}"
        for c in sorted(calls, key=lambda c: c.started)
        if c.ended >= killed
    )
