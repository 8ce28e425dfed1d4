"""Who asked, through the CLI a user runs: the Redis ACL user, else --user / LAUNCHBAY_USER, else the OS user."""

from __future__ import annotations

import getpass
import json
from urllib.parse import urlsplit

import pytest
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore
from sharing_helpers import cli, status_json

pytestmark = [pytest.mark.integration]


def enqueue(redis_url, *args, env=None):
    result = cli(redis_url, "enqueue", "-q", "team", "--image", "busybox", *args, "--", "true", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_submitter_comes_from_the_flag_the_env_or_the_os_user(redis_conn, redis_url):
    QueueStore(redis_conn).apply(QueueConfig(name="team"))
    assert status_json(redis_url, enqueue(redis_url, "--user", "alice"))["submitter"] == "alice"
    assert status_json(redis_url, enqueue(redis_url, env={"LAUNCHBAY_USER": "bob"}))["submitter"] == "bob"
    flag_wins = enqueue(redis_url, "--user", "carol", env={"LAUNCHBAY_USER": "bob"})
    assert status_json(redis_url, flag_wins)["submitter"] == "carol"
    assert status_json(redis_url, enqueue(redis_url, env={"LAUNCHBAY_USER": ""}))["submitter"] == getpass.getuser()
    listed = json.loads(cli(redis_url, "list", "--user", "bob", "--json").stdout)
    assert [r["submitter"] for r in listed] == ["bob"]
    bad = cli(redis_url, "enqueue", "-q", "team", "--image", "busybox", "--user", "a b", "--", "true")
    assert bad.returncode == 2 and "submitter 'a b'" in bad.stderr


def test_a_redis_acl_user_is_the_submitter_whatever_the_flag_says(redis_conn, redis_url):
    QueueStore(redis_conn).apply(QueueConfig(name="team"))
    redis_conn.execute_command("ACL", "SETUSER", "dana", "on", ">dana-pass-123", "~*", "&*", "+@all")
    try:
        parts = urlsplit(redis_url)
        dana_url = f"redis://dana:dana-pass-123@{parts.hostname}:{parts.port}{parts.path}"
        job_id = enqueue(dana_url, "--user", "alice")
        assert status_json(redis_url, job_id)["submitter"] == "dana"
    finally:
        redis_conn.execute_command("ACL", "DELUSER", "dana")
