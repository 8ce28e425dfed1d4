"""Redis with a password, with a least-privilege ACL user, and over TLS with a private CA: the CLI and
the agent work end to end with each; wrong credentials and an untrusted certificate are one clear
line and exit code 2, with the password never shown."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import pytest
import redis
from conftest import BIN_DIR, RedisServer
from launchbay.agent.reaper import Reaper
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.store import QueueStore
from security_helpers import LAUNCHBAY_ACL, AgentFleet, cli, run_agent_once, wait_for

pytestmark = [pytest.mark.integration]

PASSWORD = "s3cret-Pa55"
ADMIN_PASSWORD = "admin-Pa55"
QUEUE_YAML = "name: sec\nretry: {on_agent_lost: fail}\n"


@pytest.fixture
def fleet_for(tmp_path, docker_client):
    """``fleet_for(url)``: agent processes against that Redis; killed and cleaned up afterwards."""
    fleets = []

    def make(url: str) -> AgentFleet:
        fleets.append(AgentFleet(url, tmp_path / f"agents-{len(fleets)}", docker_client))
        fleets[-1].workdir.mkdir()
        return fleets[-1]

    yield make
    for fleet in fleets:
        fleet.close()


@pytest.fixture
def password_redis(tmp_path, redis_server):
    server = RedisServer(tmp_path / "pw", password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def acl_redis(tmp_path, redis_server):
    """A Redis whose default user is off: an admin for the test, and ``launchbay`` with exactly LAUNCHBAY_ACL."""
    server = RedisServer(tmp_path / "acl").start()
    admin = redis.Redis(port=server.port)
    admin.execute_command("ACL", "SETUSER", "admin", "on", f">{ADMIN_PASSWORD}", "~*", "&*", "+@all")
    admin.execute_command("ACL", "SETUSER", "launchbay", "on", f">{PASSWORD}", *LAUNCHBAY_ACL.split())
    admin.execute_command("ACL", "SETUSER", "default", "off")
    admin.close()
    yield server
    server.stop()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A private CA and a server certificate for 127.0.0.1 that it signed (ca.pem, server.pem, server.key)."""
    folder = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=launchbay test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=folder)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr", cwd=folder)  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.cnf", "-out", "server.pem", cwd=folder)  # fmt: skip
    return folder


@pytest.fixture
def tls_redis(tmp_path, certificates, redis_server):
    """TLS only (``--port 0``), with a password; clients are not asked for certificates."""
    server = RedisServer(tmp_path / "tls", password=PASSWORD)
    server.extra_args = (
        "--port", "0", "--tls-port", str(server.port),
        "--tls-cert-file", str(certificates / "server.pem"), "--tls-key-file", str(certificates / "server.key"),
        "--tls-ca-cert-file", str(certificates / "ca.pem"), "--tls-auth-clients", "no",
    )  # fmt: skip
    server.start()
    yield server
    server.stop()


def tls_url(server: RedisServer, certificates: Path, password: str = PASSWORD) -> str:
    return f"rediss://:{password}@127.0.0.1:{server.port}/0?ssl_ca_certs={certificates / 'ca.pem'}"


def agent_process(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN_DIR / "launchbay"), "agent", "--redis-url", url, *args], capture_output=True, text=True, timeout=60
    )


def enqueue_and_run(url: str, fleet: AgentFleet, base_image: str, tmp_path: Path, words: str) -> str:
    """Apply a queue, enqueue an ad-hoc job, run an agent until it is done; returns the job id."""
    queue_file = tmp_path / "sec.yaml"
    queue_file.write_text(QUEUE_YAML)
    assert cli(url, "queue", "apply", str(queue_file)).returncode == 0
    enqueued = cli(url, "enqueue", "--image", base_image, "-q", "sec", "--", "echo", words)
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()
    run_agent_once(fleet, f"agent-{job_id[:6]}")
    status = cli(url, "status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "finished"
    assert cli(url, "logs", job_id).stdout == f"{words}\n"
    return job_id


def assert_refused_credentials(result: subprocess.CompletedProcess, shown_url_start: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: Redis at {shown_url_start}")
    assert "refused the credentials" in result.stderr
    assert PASSWORD not in result.stderr and "wrong-pw" not in result.stderr


# -- password -------------------------------------------------------------------------------------


def test_the_cli_and_the_agent_work_with_a_password_protected_redis(password_redis, fleet_for, base_image, tmp_path):
    url = password_redis.url
    enqueue_and_run(url, fleet_for(url), base_image, tmp_path, "behind a password")


def test_a_wrong_password_is_one_clear_line_and_exit_2_for_the_cli_and_the_agent(password_redis):
    wrong = f"redis://:wrong-pw@127.0.0.1:{password_redis.port}/0"
    assert_refused_credentials(cli(wrong, "list"), f"redis://:***@127.0.0.1:{password_redis.port}/0")
    assert_refused_credentials(agent_process(wrong, "-q", "sec"), f"redis://:***@127.0.0.1:{password_redis.port}/0")
    missing = f"redis://127.0.0.1:{password_redis.port}/0"
    assert_refused_credentials(cli(missing, "list"), missing)


# -- a least-privilege ACL user ---------------------------------------------------------------------


def exercise_every_command(url: str, fleet: AgentFleet, base_image: str, tmp_path: Path) -> None:
    """Everything a user and an agent do: queues, enqueue, run, follow, cancel, requeue, reap, delete."""
    enqueue_and_run(url, fleet, base_image, tmp_path, "least privilege")
    for command in (["queue", "list"], ["queue", "show", "sec"], ["queue", "pause", "sec"], ["queue", "resume", "sec"],
                    ["list", "--json"], ["agents", "--all", "--json"], ["job", "list"]):  # fmt: skip
        assert cli(url, *command).returncode == 0, (command, cli(url, *command).stderr)
    queued = cli(url, "enqueue", "--image", base_image, "-q", "sec", "--priority", "high", "--", "true").stdout.strip()
    assert cli(url, "cancel", queued).returncode == 0
    assert cli(url, "requeue", queued).returncode == 0
    sleeper = cli(url, "enqueue", "--image", base_image, "-q", "sec", "--", "sleep", "60").stdout.strip()
    doomed = fleet.start("acl-doomed", queues=("sec",))
    conn = redis.Redis.from_url(url)
    wait_for(lambda: conn.hget(f"launchbay:job:{sleeper}", "state") == b"running", timeout_s=60, what=doomed.output())
    follower = subprocess.Popen([str(BIN_DIR / "launchbay"), "logs", "-f", sleeper, "--redis-url", url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    doomed.kill()  # the reaper of the next agent frees its job: the lost-agent commands run too
    fleet.start("acl-reaper", queues=("sec",))
    wait_for(lambda: conn.hget(f"launchbay:job:{sleeper}", "state") == b"failed", timeout_s=60, what=fleet.output())
    assert follower.wait(60) == 0, follower.stderr.read()
    fleet.start("acl-doomed", queues=("sec",))  # comes back: removes its orphan container
    wait_for(lambda: fleet.containers() == [], timeout_s=60, what="the orphan to be removed")
    canceled = cli(url, "enqueue", "--image", base_image, "-q", "sec", "--", "sleep", "60").stdout.strip()
    wait_for(lambda: conn.hget(f"launchbay:job:{canceled}", "state") == b"running", timeout_s=60, what="it to run")
    assert cli(url, "cancel", canceled).returncode == 0
    wait_for(lambda: conn.hget(f"launchbay:job:{canceled}", "state") == b"canceled", timeout_s=60, what="cancel")
    assert cli(url, "queue", "delete", "sec", "--force").returncode == 0
    conn.close()


def test_the_cli_and_the_agent_need_no_more_than_the_documented_acl(acl_redis, fleet_for, base_image, tmp_path):
    url = f"redis://launchbay:{PASSWORD}@127.0.0.1:{acl_redis.port}/0"
    fleet = fleet_for(url)
    exercise_every_command(url, fleet, base_image, tmp_path)
    for agent in fleet.agents.values():
        agent.terminate()

    admin = redis.Redis(port=acl_redis.port, username="admin", password=ADMIN_PASSWORD)
    denied = [(e["reason"], e["object"]) for e in admin.acl_log()]
    assert denied == [], f"the ACL refused launchbay: {denied}"
    user = redis.Redis(port=acl_redis.port, username="launchbay", password=PASSWORD)
    for forbidden in (lambda: user.flushall(), lambda: user.config_get("*"), lambda: user.keys("*"),
                      lambda: user.get("another-app:secret"), lambda: user.publish("another-channel", "x")):  # fmt: skip
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()


def test_with_an_older_acl_that_lacks_pttl_the_reaper_still_frees_lost_agents_and_says_why_once(acl_redis, caplog):
    admin = redis.Redis(port=acl_redis.port, username="admin", password=ADMIN_PASSWORD)
    admin.execute_command("ACL", "SETUSER", "launchbay", "-pttl")
    user = redis.Redis(port=acl_redis.port, username="launchbay", password=PASSWORD)
    user.sadd(Keys().agents, "gone", "beating")
    user.set(Keys().agent_alive("beating"), "1", ex=30)
    reaper = Reaper(user, Keys(), agent_id="live", queue_config_for=QueueStore(user, Keys()).get)

    with caplog.at_level(logging.WARNING, logger="launchbay.agent.reaper"):
        first = reaper.run_once()
        user.sadd(Keys().agents, "gone")  # lost again: the second pass must not warn again
        second = reaper.run_once()

    assert first == second == {"gone": {}}
    assert reaper.next_expiry_s is None
    assert user.sismember(Keys().agents, "beating")
    warnings = [r.getMessage() for r in caplog.records if "PTTL" in r.getMessage()]
    assert warnings == [
        "the Redis user may not run PTTL: lost agents are found up to reaper_interval_s later than TTL + grace; "
        "add +pttl to its ACL (docs/security.md)"
    ]


def test_the_acl_in_docs_security_md_is_the_one_tested():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    documented = re.search(r"ACL SETUSER launchbay on >\S+ (.+)", docs)
    assert documented and documented.group(1).strip() == LAUNCHBAY_ACL


def test_a_wrong_acl_password_is_refused_in_one_line(acl_redis):
    url = f"redis://launchbay:wrong-pw@127.0.0.1:{acl_redis.port}/0"
    assert_refused_credentials(cli(url, "queue", "list"), f"redis://launchbay:***@127.0.0.1:{acl_redis.port}/0")


# -- TLS ------------------------------------------------------------------------------------------


def test_the_cli_and_the_agent_work_over_tls_with_a_private_ca(
    tls_redis, certificates, fleet_for, base_image, tmp_path
):
    url = tls_url(tls_redis, certificates)
    enqueue_and_run(url, fleet_for(url), base_image, tmp_path, "over TLS")
    check = agent_process(url, "--check")
    assert check.returncode == 0 and "redis: ok" in check.stdout


def test_an_untrusted_certificate_is_one_clear_line_and_exit_2(tls_redis, certificates):
    url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_redis.port}/0"
    for result in (cli(url, "list"), agent_process(url, "-q", "sec")):
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and PASSWORD not in result.stderr
        assert "TLS refused the server's certificate" in result.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in result.stderr and "?ssl_ca_certs=" in result.stderr


def test_a_missing_ca_file_or_a_misspelt_tls_option_is_named(tls_redis, certificates):
    missing = cli(f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_certs=/nonexistent/ca.pem", "list")
    assert missing.returncode == 2
    assert missing.stderr.endswith("ssl_ca_certs file '/nonexistent/ca.pem' does not exist\n")
    misspelt = cli(f"rediss://127.0.0.1:{tls_redis.port}/0?ssl_ca_cert={certificates / 'ca.pem'}", "list")
    assert misspelt.returncode == 2 and "Traceback" not in misspelt.stderr
    assert "unknown option 'ssl_ca_cert'" in misspelt.stderr


def test_a_wrong_password_over_tls_is_refused_credentials(tls_redis, certificates):
    result = cli(tls_url(tls_redis, certificates, password="wrong-pw"), "list")
    assert_refused_credentials(result, f"rediss://:***@127.0.0.1:{tls_redis.port}/0")


def test_plain_redis_against_a_tls_port_says_it_cannot_reach_it(tls_redis):
    result = cli(f"redis://127.0.0.1:{tls_redis.port}/0", "list")
    assert result.returncode == 3 and result.stderr.count("\n") == 1
