"""Issue 23, the sweep findings: what a submitter writes in her own sweep is input, never authority.

Each attack is made as the documented submitter role (``launchbay acl``) with direct Redis access,
every write tried whether or not Redis allows it; the test then checks that the harm did not follow:
no trial or job added to another user's sweep, no other user's sweep stopped, stalled or hidden,
no other user's ``sweep list``/``show`` or UI page broken. An agent (the agent role) drives the
sweeps with the real driver (sweeps/driver.py); ``sweep_helpers.Runner`` plays the agents'
part for the trials' jobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Tuple

import pytest
import redis
import test_redis_roles
import yaml
from conftest import BIN_DIR
from launchbay.client import sweeps
from launchbay.queue_config import lifecycle
from launchbay.queue_config.job import Outcome, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.sweeps.driver import LOOK_INTERVAL_S, SweepDriver
from security_helpers import AgentFleet, cli, make_queue, wait_for
from test_log_limits import PeakRss
from test_redis_roles import ROOT_PASSWORD, _apply, conn_of, url_of

pytestmark = [pytest.mark.integration]

K = Keys()
roles_redis = test_redis_roles.roles_redis  # the fixture: a Redis 7 with the users `launchbay acl` prints
HOSTILE_GRID = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"lr": {"min": 0, "max": 20_000_000}}}


def attempt(conn: redis.Redis, *command) -> bool:
    """Send one command as that connection's user; True when Redis allowed it."""
    try:
        conn.execute_command(*command)
        return True
    except redis.exceptions.NoPermissionError:
        return False


def make_sweep(server, tmp_path, user: str, values, max_parallel: int = 1) -> str:
    body = {"job": "job.yaml", "method": "grid", "metric": {"name": "loss"}, "max_parallel": max_parallel,
            "parameters": {"lr": {"values": values}}}  # fmt: skip
    path = tmp_path / f"{user}-sweep.yaml"
    path.write_text(yaml.safe_dump(body))
    made = cli(url_of(server, user), "sweep", "create", str(path), "-q", "sec")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture
def two_sweeps(roles_redis, tmp_path):
    """bob's sweep (lr 1, 2: one trial at a time) and alice's (lr 5, 6, 7), both made and not yet driven."""
    assert _apply(roles_redis, "launchbay-admin", tmp_path).returncode == 0
    spec = {"name": "swept", "image": "x:1", "inputs": {"run_config": {"include": ["lr"]}}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    bob_id = make_sweep(roles_redis, tmp_path, "bob", [1, 2])
    alice_id = make_sweep(roles_redis, tmp_path, "alice", [5, 6, 7], max_parallel=3)
    return alice_id, bob_id


def agent_driver(server) -> SweepDriver:
    return SweepDriver(conn_of(server, "launchbay-agent"), K, "agent-1", ["sec"], threading.Event())


def root_of(server) -> redis.Redis:
    return redis.Redis(port=server.port, username="root", password=ROOT_PASSWORD)


def jobs_of(root: redis.Redis, sweep_id: str):
    """``{job id: (submitter, lr)}`` of every job under ``sweep_id``'s prefix."""
    records = Records(root, K)
    ids = sorted(j.decode() for j in root.zrange(K.queue_jobs("sec"), 0, -1) if j.decode().startswith(f"{sweep_id}-"))
    return {j: (records.as_json(j)["submitter"], records.as_json(j)["run_config"].get("lr")) for j in ids}


#: Runs argv[2:] and writes its peak RSS (KiB, its own rusage) to argv[1]. The command is started from
#: this small process, not from pytest: a child's ru_maxrss counts what it held before its exec, and a
#: child forked from a pytest that has run the whole suite starts out at hundreds of MiB.
PEAK_RSS_WRAPPER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_pid, status, usage = os.wait4(proc.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measured_cli(url: str, *args: str, tmp_path) -> Tuple[int, str, str, float, float]:
    """``launchbay ARGS`` as ``cli`` runs it: (exit code, stdout, stderr, seconds, that process's peak RSS
    in MiB, from its own rusage)."""
    out, err, peak = tmp_path / "cli.out", tmp_path / "cli.err", tmp_path / "cli.peak"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        env = {**os.environ, "LAUNCHBAY_REDIS_URL": url}
        command = [sys.executable, "-c", PEAK_RSS_WRAPPER, str(peak), str(BIN_DIR / "launchbay"), *args]
        code = subprocess.run(command, stdout=stdout, stderr=stderr, env=env, timeout=120).returncode
    return code, out.read_text(), err.read_text(), time.monotonic() - started, int(peak.read_text()) / 1024


def finish_queued(root: redis.Redis) -> int:
    """End every queued job as an agent would (the lifecycle functions an agent uses), its ``loss`` its lr."""
    records, done = Records(root, K), 0
    for job_id in (j.decode() for j in root.zrange(K.queue_jobs("sec"), 0, -1)):
        if records.state(job_id) == State.QUEUED:
            assert records.transition(job_id, State.RUNNING, allowed_from=[State.QUEUED])
            loss = float(records.as_json(job_id)["run_config"]["lr"])
            lifecycle.end(records, job_id, Outcome(State.FINISHED, None, 0, "exited 0"), summary={"loss": loss})
            done += 1
    return done


def test_a_submitter_cannot_add_a_trial_or_job_to_another_users_sweep(roles_redis, two_sweeps):
    alice_id, bob_id = two_sweeps
    alice, root = conn_of(roles_redis, "alice"), root_of(roles_redis)
    # Her own sweep rewritten to name bob's: its id, its submitter, the template every trial starts from.
    template = json.loads(alice.hget(K.sweep(alice_id), "template"))
    template.update(submitter="bob", queue="sec")
    alice.hset(K.sweep(alice_id), mapping={"id": bob_id, "submitter": "bob", "template": json.dumps(template)})
    attempt(alice, "SADD", K.sweeps_active, alice_id)
    attempt(alice, "SADD", K.sweeps_new, alice_id)

    agent_driver(roles_redis).pass_once()

    bobs = jobs_of(root, bob_id)  # bob's one trial (max_parallel 1): his values, his name
    assert list(bobs) == [f"{bob_id}-0"] and bobs[f"{bob_id}-0"] in {("bob", 1), ("bob", 2)}, bobs
    assert sorted(jobs_of(root, alice_id).values()) == [("alice", 5), ("alice", 6), ("alice", 7)]
    storage = sweeps._storage(root, K, bob_id)
    assert [t.params["lr"] for t in sweeps.sweep_study.load_trials(storage, bob_id)] == [bobs[f"{bob_id}-0"][1]]


def test_a_submitter_cannot_stop_stall_or_hide_another_users_sweep(roles_redis, two_sweeps):
    _alice_id, bob_id = two_sweeps
    alice, root = conn_of(roles_redis, "alice"), root_of(roles_redis)
    agent = agent_driver(roles_redis)

    def sabotage() -> None:
        allowed = []
        for command in [
            ("SREM", K.sweeps_new, bob_id), ("SREM", K.sweeps_active, bob_id), ("ZREM", K.sweeps, bob_id),
            ("DEL", K.sweeps_new), ("DEL", K.sweeps_active), ("DEL", K.sweeps),
            ("HSET", K.sweep(bob_id), "state", "stopped"), ("SET", K.sweep_lease(bob_id), "alice-holds-it"),
            ("RPUSH", K.sweep_journal(bob_id), "not json"), ("DEL", K.sweep_journal(bob_id)),
            ("ZADD", K.sweeps, "-inf", bob_id),
        ]:  # fmt: skip
            if attempt(alice, *command):
                allowed.append(command)
        assert allowed == []  # the role refuses each of them now; what follows shows none would matter
        assert cli(url_of(roles_redis, "alice"), "sweep", "stop", bob_id).returncode == 2

    sabotage()  # while bob's sweep waits for its first driver
    for _ in range(10):
        agent.pass_once()
        sabotage()  # and while it is driven
        finish_queued(root)
        if sweeps.show(root, K, bob_id)["state"] == "finished":
            break
    view = sweeps.show(root, K, bob_id)
    assert (view["state"], sorted(t["params"]["lr"] for t in view["trials"])) == ("finished", [1, 2])
    listed = cli(url_of(roles_redis, "bob"), "sweep", "list")
    assert listed.returncode == 0 and bob_id in listed.stdout, listed


def test_what_a_submitter_writes_in_her_own_sweep_breaks_no_one_elses_list_show_or_page(
    roles_redis, two_sweeps, tmp_path
):
    from launchbay.ui.app import create_app

    alice_id, bob_id = two_sweeps
    hostile_id = make_sweep(roles_redis, tmp_path, "alice", [8])
    alice, root = conn_of(roles_redis, "alice"), root_of(roles_redis)
    agent = agent_driver(roles_redis)
    agent.pass_once()
    # A bad entry in her own study (at its key before issue 23 and now) ...
    for key in (K.sweep_journal(alice_id), f"{K.sweep(alice_id)}:journal"):
        attempt(alice, "RPUSH", key, "not json", json.dumps({"op_code": 99}))
    # ... a config and a name no sweep has in another of hers, and junk where sweeps are announced.
    alice.hset(K.sweep(hostile_id), mapping={"config": json.dumps(HOSTILE_GRID), "name": "x" * 100_000})
    for junk in ("x:lease", "*", "carol_0123456789abcdef", alice_id, hostile_id):
        attempt(alice, "SADD", K.sweeps_new, junk)
    agent.pass_once()

    code, stdout, stderr, took_s, peak_mib = measured_cli(
        url_of(roles_redis, "bob"), "sweep", "list", tmp_path=tmp_path
    )
    print(f"bob's sweep list beside alice's hostile sweep: {took_s:.1f} s, peak RSS {peak_mib:.0f} MiB")
    assert code == 0 and "Traceback" not in stderr, stderr
    assert bob_id in stdout and "unreadable" in stdout, stdout
    assert took_s < 5 and peak_mib < 150  # it was 6.3 s and 840 MB
    shown = cli(url_of(roles_redis, "bob"), "sweep", "show", bob_id)
    assert shown.returncode == 0, shown
    ui = create_app(conn_of(roles_redis, "bob"), keys=K).test_client()
    page = ui.get("/sweeps")
    assert page.status_code == 200 and bob_id in page.get_data(as_text=True)
    assert ui.get(f"/sweeps/{bob_id}").status_code == 200
    hers = ui.get(f"/sweeps/{hostile_id}")  # her unreadable sweep's own page says why, no 500
    assert hers.status_code == 400 and "field name (100,000 bytes; at most 1,024)" in hers.get_data(as_text=True)
    ended = sweeps.SweepStore(root, K)
    assert root.hget(K.sweep(hostile_id), "state") == b"stopped"  # the driver refused it, once, with the reason
    assert b"refused by the driver" in root.hget(K.sweep(hostile_id), "message")
    assert ended.get(bob_id)["state"] == "running" and jobs_of(root, bob_id)


def test_a_flood_of_announced_junk_costs_one_pass_and_stalls_no_sweep(roles_redis, two_sweeps):
    """Not a regression test (``sweeps:new`` is new): what a submitter may add there, she may add by the
    ten thousand; one driver pass drops it all, in batches, and drives the real sweeps."""
    alice_id, bob_id = two_sweeps
    alice, root = conn_of(roles_redis, "alice"), root_of(roles_redis)
    junk = [f"alice_{n:016x}" for n in range(20_000)] + ["bob_0123456789abcdef", "a:b", "*"]
    assert attempt(alice, "SADD", K.sweeps_new, *junk)
    started = time.monotonic()
    agent_driver(roles_redis).pass_once()
    took_s = time.monotonic() - started
    assert took_s < 5, f"a pass over 20,000 announced ids took {took_s:.1f} s"
    assert root.scard(K.sweeps_new) == 0
    assert list(jobs_of(root, bob_id)) == [f"{bob_id}-0"] and len(jobs_of(root, alice_id)) == 3
    assert set(sweeps.SweepStore(root, K).ids()) == {alice_id, bob_id}  # no junk listed
    print(f"a pass over 20,003 announced ids: {took_s:.2f} s")


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    made = AgentFleet(redis_url, tmp_path, docker_client)
    yield made
    made.close()


@pytest.mark.docker
def test_an_agent_driving_a_hostile_sweep_config_stays_small_and_ends_it_in_bounded_time(redis_conn, tmp_path, fleet):
    """A grid over 2·10**7 values written into one's own sweep hash (past `sweep create`): a real
    ``launchbay agent`` process refuses it on its first pass, under 150 MiB all along (its RSS sampled
    every 0.2 s), and the sweep ends ``stopped`` with the reason; it was 874 MiB on every pass."""
    make_queue(redis_conn, "sec")
    spec = {"name": "swept", "image": "x:1", "inputs": {"run_config": {"include": ["lr"]}}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    body = {"job": "job.yaml", "method": "grid", "metric": {"name": "loss"}, "parameters": {"lr": {"values": [1]}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(body))
    sweep_id, _notes = sweeps.create(tmp_path / "sweep.yaml", "sec", conn=redis_conn, keys=K)
    redis_conn.hset(K.sweep(sweep_id), "config", json.dumps(HOSTILE_GRID))  # as its owner may
    redis_conn.sadd(K.sweeps_active, sweep_id)  # where drivers looked for it before issue 23

    agent = fleet.start("a1", queues=("sec",))
    rss = PeakRss(agent.proc.pid)
    rss.start()
    started = time.monotonic()
    wait_for(lambda: redis_conn.hget(K.sweep(sweep_id), "state") == b"stopped", timeout_s=60, what=fleet.output())
    took_s = time.monotonic() - started
    time.sleep(3 * LOOK_INTERVAL_S)  # a few more passes: the agent goes on looking at the sweeps
    rss.done.set()
    rss.join(5)
    print(f"hostile sweep: ended after {took_s:.1f} s (agent start included); agent peak RSS {rss.peak_mib:.0f} MiB")

    assert agent.running
    assert rss.peak_mib < 150, f"agent peak RSS {rss.peak_mib:.0f} MiB"
    message = redis_conn.hget(K.sweep(sweep_id), "message").decode()
    assert "the grid has 20,000,001 combinations; at most 10,000" in message, message
    assert not redis_conn.zrange(K.queue_jobs("sec"), 0, -1)  # no trial made
