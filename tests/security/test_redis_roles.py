"""Issue 13, finding 9 and "Roles in Redis": the admin, agent and submitter users that ``launchbay
acl`` prints, on a real redis-server 7, each doing what its role allows and refused the rest.

A submitter enqueues, cancels and requeues its own jobs and reads everything; it cannot change a
queue config (so it cannot open a queue to host mounts), another user's job, a ledger or an
agent's keys. An agent runs jobs but cannot change the queue configs it enforces. A user whose
role does not allow a command gets one line and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import redis
from conftest import RedisServer
from launchbay.queue_config.keys import Keys
from security_helpers import AgentFleet, cli, run_agent_once, wait_for

pytestmark = [pytest.mark.integration]

ROOT_PASSWORD = "root-Pa55"
PASSWORDS = {"launchbay-admin": "admin-Pa55", "launchbay-agent": "agent-Pa55", "alice": "alice-Pa55", "bob": "bob-Pa55"}
QUEUE_YAML = "name: sec\n"
OPEN_QUEUE_YAML = "name: sec\nsubmitter_may_set: {mounts: [/etc]}\n"


@pytest.fixture
def roles_redis(tmp_path, redis_server, redis_url):
    """A Redis 7 with a root user for the test and the users ``launchbay acl`` prints, default off."""
    server = RedisServer(tmp_path / "roles").start()
    root = redis.Redis(port=server.port)
    root.execute_command("ACL", "SETUSER", "root", "on", f">{ROOT_PASSWORD}", "~*", "&*", "+@all")
    printed = cli(redis_url, "acl", "--submitter", "alice", "--submitter", "bob")
    assert printed.returncode == 0, printed.stderr
    for line in printed.stdout.splitlines():
        words = shlex.split(line)
        assert words[:2] == ["ACL", "SETUSER"], line
        user = words[2]
        args = [f">{PASSWORDS[user]}" if word == ">PASSWORD" else word for word in words[3:]]
        root.execute_command("ACL", "SETUSER", user, *args)
    root.close()
    yield server
    server.stop()


def url_of(server: RedisServer, user: str) -> str:
    return f"redis://{user}:{PASSWORDS[user]}@127.0.0.1:{server.port}/0"


def conn_of(server: RedisServer, user: str) -> redis.Redis:
    return redis.Redis(port=server.port, username=user, password=PASSWORDS[user])


def _refused(result) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: Redis at ") and "refused this to its user" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def _apply(server, user: str, tmp_path, text: str = QUEUE_YAML):
    path = tmp_path / "q.yaml"
    path.write_text(text)
    return cli(url_of(server, user), "queue", "apply", str(path))


def test_a_submitter_enqueues_and_cancels_its_own_jobs_and_nothing_else(roles_redis, tmp_path):
    assert _apply(roles_redis, "launchbay-admin", tmp_path).returncode == 0
    alice, bob = url_of(roles_redis, "alice"), url_of(roles_redis, "bob")
    own = cli(alice, "enqueue", "--image", "x:1", "-q", "sec", "--", "true")
    assert own.returncode == 0, own.stderr
    own_id = own.stdout.strip()
    assert own_id.startswith("alice_")
    other_id = cli(bob, "enqueue", "--image", "x:1", "-q", "sec", "--", "true").stdout.strip()
    for reading in (["status", other_id], ["list"], ["queue", "list"], ["queue", "show", "sec"], ["job", "list"]):
        assert cli(alice, *reading).returncode == 0, (reading, cli(alice, *reading).stderr)
    assert cli(alice, "cancel", own_id).returncode == 0
    assert cli(alice, "requeue", own_id).returncode == 0

    _refused(cli(alice, "cancel", other_id))
    _refused(_apply(roles_redis, "alice", tmp_path, OPEN_QUEUE_YAML))  # would let it mount /etc/shadow
    _refused(cli(alice, "queue", "pause", "sec"))
    root = redis.Redis(port=roles_redis.port, username="root", password=ROOT_PASSWORD)
    assert root.hget(Keys().job(other_id), "state") == b"queued"
    assert json.loads(root.hget(Keys().queue("sec"), "config"))["submitter_may_set"] == {}

    direct = conn_of(roles_redis, "alice")
    for forbidden in (
        lambda: direct.hset(Keys().job(other_id), "state", "canceled"),
        lambda: direct.hset(Keys().queue("sec"), "config", json.dumps({"name": "sec", "submitter_may_set": {}})),
        lambda: direct.hset(Keys().agent_ledger("gpu-1"), "x", "{}"),
        lambda: direct.set(Keys().agent_alive("gpu-1"), "1"),
        lambda: direct.set(Keys().agent_capacity("gpu-1"), "{}"),
        lambda: direct.set(Keys().jobdef("trainer"), "{}"),
        lambda: direct.hset(f"rq:job:{other_id}", "status", "canceled"),
        # a multi-node job's member table and assembling key, even of her own job: the agents' alone
        lambda: direct.hset(Keys().gang(own_id), "rank:0", json.dumps({"rank": 0, "agent": "gpu-1", "round": 1})),
        lambda: direct.set(Keys().gang_assembling("sec"), f"{own_id}:1"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()


def test_a_user_without_write_rights_gets_one_line_from_enqueue(roles_redis, tmp_path):
    assert _apply(roles_redis, "launchbay-admin", tmp_path).returncode == 0
    root = redis.Redis(port=roles_redis.port, username="root", password=ROOT_PASSWORD)
    root.execute_command("ACL", "SETUSER", "reader", "on", ">reader-Pa55", "%R~*", "&*", "-@all", "+@read", "+ping")
    result = cli(f"redis://reader:reader-Pa55@127.0.0.1:{roles_redis.port}/0", "enqueue", "--image", "x:1", "-q", "sec")
    _refused(result)


def test_the_admin_changes_queues_and_any_job_and_an_agent_cannot_change_queues(roles_redis, tmp_path):
    admin = url_of(roles_redis, "launchbay-admin")
    assert _apply(roles_redis, "launchbay-admin", tmp_path).returncode == 0
    alice_id = cli(url_of(roles_redis, "alice"), "enqueue", "--image", "x:1", "-q", "sec", "--", "true").stdout.strip()
    assert cli(admin, "cancel", alice_id).returncode == 0
    assert cli(admin, "queue", "pause", "sec").returncode == 0
    _refused(_apply(roles_redis, "launchbay-agent", tmp_path, OPEN_QUEUE_YAML))
    agent = conn_of(roles_redis, "launchbay-agent")
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.hset(Keys().queue("sec"), "paused", "0")
    assert agent.hget(Keys().queue("sec"), "paused") == b"1"  # but it reads them


@pytest.fixture
def fleet(tmp_path, docker_client):
    fleets = []

    def make(url: str) -> AgentFleet:
        fleets.append(AgentFleet(url, tmp_path / "agents", docker_client))
        fleets[-1].workdir.mkdir()
        return fleets[-1]

    yield make
    for made in fleets:
        made.close()


@pytest.mark.docker
def test_an_agent_runs_a_submitters_job_and_the_submitter_follows_it_with_no_refusal(
    roles_redis, tmp_path, base_image, fleet
):
    assert _apply(roles_redis, "launchbay-admin", tmp_path).returncode == 0
    alice = url_of(roles_redis, "alice")
    queued = cli(alice, "enqueue", "--image", base_image, "-q", "sec", "--", "echo", "hello from alice")
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.strip()
    run_agent_once(fleet(url_of(roles_redis, "launchbay-agent")), "role-agent")

    wait_for(lambda: cli(alice, "status", job_id, "--json").stdout.count('"finished"') > 0, timeout_s=60)
    logs = cli(alice, "logs", job_id)
    assert logs.returncode == 0 and "hello from alice" in logs.stdout
    root = redis.Redis(port=roles_redis.port, username="root", password=ROOT_PASSWORD)
    denied = [(entry["username"], entry["reason"], entry["object"]) for entry in root.acl_log()]
    assert denied == [], f"a role was refused something it needs: {denied}"


def test_the_role_lines_in_docs_security_md_are_what_launchbay_acl_prints(redis_url):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    printed = cli(redis_url, "acl", "--submitter", "alice").stdout.splitlines()
    assert printed and all(line in docs for line in printed), "docs/security.md shows other ACL lines"


def test_a_submitter_creates_and_stops_its_own_sweeps_and_an_agent_makes_their_trials(roles_redis, tmp_path):
    import threading

    import yaml
    from launchbay.sweeps.driver import SweepDriver

    assert _apply(roles_redis, "launchbay-admin", tmp_path).returncode == 0
    spec = {"name": "swept", "image": "x:1", "inputs": {"run_config": {"include": ["lr"]}}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    body = {"job": "job.yaml", "method": "grid", "metric": {"name": "loss"}, "parameters": {"lr": {"values": [1, 2]}}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(body))
    alice, bob = url_of(roles_redis, "alice"), url_of(roles_redis, "bob")
    made = cli(alice, "sweep", "create", str(tmp_path / "sweep.yaml"), "-q", "sec")
    assert made.returncode == 0, made.stderr
    sweep_id = made.stdout.strip()
    assert sweep_id.startswith("alice_")

    driver = SweepDriver(conn_of(roles_redis, "launchbay-agent"), Keys(), "agent-1", ["sec"], threading.Event())
    assert driver.pass_once() is True
    root = redis.Redis(port=roles_redis.port, username="root", password=ROOT_PASSWORD)
    trial_jobs = sorted(j.decode() for j in root.zrange(Keys().queue_jobs("sec"), 0, -1))
    assert trial_jobs == [f"{sweep_id}-0", f"{sweep_id}-1"]
    assert {root.hget(Keys().job(j), "submitter") for j in trial_jobs} == {b"alice"}

    _refused(cli(bob, "sweep", "stop", sweep_id))
    assert cli(alice, "sweep", "stop", sweep_id).returncode == 0
    assert cli(bob, "sweep", "show", sweep_id).returncode == 0  # everyone reads
