"""docs/multi-host.md's Redis ACL user, taken from the doc itself: the CLI and an agent work as
that user, and Redis denies them nothing."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import pytest
import redis
from conftest import BIN_DIR, REPO_ROOT, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.docker]

DOC = REPO_ROOT / "docs" / "multi-host.md"


def acl_command() -> list:
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("ACL SETUSER launchbay ")]
    assert len(lines) == 1, "docs/multi-host.md should show one `ACL SETUSER launchbay ...` line"
    return shlex.split(lines[0].replace(">PASSWORD", ">acl-test-pw"))


@pytest.fixture
def acl_url(redis_url, redis_conn):
    redis_conn.execute_command(*acl_command())
    redis_conn.execute_command("ACL", "LOG", "RESET")
    host = redis_url.split("//", 1)[1]
    yield f"redis://launchbay:acl-test-pw@{host}"
    redis_conn.execute_command("ACL", "DELUSER", "launchbay")


def denied(redis_conn) -> list:
    return [
        {entry[i].decode(): entry[i + 1] for i in range(0, len(entry), 2)}
        for entry in redis_conn.execute_command("ACL", "LOG")
    ]


def test_the_cli_and_an_agent_need_nothing_the_documented_acl_user_lacks(
    acl_url, redis_conn, base_image, docker_client, tmp_path
):
    env = {"LAUNCHBAY_REDIS_URL": acl_url}

    def ok(*args: str) -> str:
        result = run_cli(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    ok("queue", "apply", str(REPO_ROOT / "queue_config" / "examples" / "local.yaml"))
    job = ok("enqueue", "--image", base_image, "-q", "local", "--name", "acl", "--", "python3", "-c", "print('acl ok')")
    job = job.strip()
    state = str(tmp_path / "state")
    agent = subprocess.run(
        [str(BIN_DIR / "launchbay"), "agent", "-q", "local", "--once", "--agent-id", "acl-agent", "--state-dir", state],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert agent.returncode == 0, agent.stderr
        assert re.search(r"state\s+finished", ok("status", job))
        assert "acl ok" in ok("logs", job)
        for args in (("list",), ("job", "list"), ("agents", "--all"), ("queue", "list"), ("queue", "show", "local")):
            ok(*args)
        ok("requeue", job)
        ok("cancel", job)
        ok("queue", "delete", "local", "--force")
        assert denied(redis_conn) == []
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": "launchbay.agent_id=acl-agent"}, ignore_removed=True
        ):
            container.remove(force=True)


def test_the_documented_acl_user_cannot_flush_the_server(acl_url):
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis.Redis.from_url(acl_url).flushall()
