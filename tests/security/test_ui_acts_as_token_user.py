"""Issue 23: the UI acts as its named token's user, even when it logs in to Redis as an ACL user.

The UI's Redis user has the ``ui`` role that ``launchbay acl --ui-user`` prints (docs/security.md),
or, where an older setup gave it the admin role, no ``ACL DRYRUN``: then ownership decides. A
named token's launch is that user's (id prefix, submitter); its cancel, pause and stop reach only
what that user's own Redis role reaches on the CLI: its own jobs and sweeps, an admin's all.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import redis
from launchbay.queue_config import acl
from launchbay.queue_config.keys import Keys
from launchbay.sweeps.store import SweepStore
from launchbay.ui.app import create_app
from test_redis_roles import ROOT_PASSWORD, conn_of, roles_redis  # noqa: F401 (a fixture)

_UI_TESTS = str(Path(__file__).resolve().parent.parent / "ui")
if _UI_TESTS not in sys.path:
    sys.path.append(_UI_TESTS)

from ui_helpers import apply_queues, define_job  # noqa: E402

pytestmark = [pytest.mark.integration]

KEYS = Keys()
ORIGIN = "http://localhost"
TOKENS = {
    "alice-token-0123456789": "alice",
    "bob-token-0123456789ab": "bob",
    "admin-token-0123456789": "launchbay-admin",
}
ALICE, BOB, ADMIN = TOKENS


def _ui_client(server, role: str):
    root = redis.Redis(port=server.port, username="root", password=ROOT_PASSWORD)
    root.execute_command("ACL", "SETUSER", "launchbay-ui", "on", ">ui-Pa55", *shlex.split(acl.rules(role, KEYS)))
    apply_queues(root)
    define_job(root)
    conn = redis.Redis(port=server.port, username="launchbay-ui", password="ui-Pa55")
    return root, create_app(conn, keys=KEYS, bind_host="0.0.0.0", named_tokens=TOKENS).test_client()


def _post(client, path: str, token: str, **data):
    response = client.post(path, data={"token": token, **data}, headers={"Origin": ORIGIN})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"].rsplit("/", 1)[1]


@pytest.mark.parametrize("role", ["ui", "admin"])
def test_a_named_tokens_launch_is_its_users_and_it_cancels_only_what_its_role_may(roles_redis, role):  # noqa: F811
    root, client = _ui_client(roles_redis, role)
    alice_job = _post(client, "/launch/trainer", ALICE, queue="gpu", image="x:1")
    bob_job = _post(client, "/launch/trainer", BOB, queue="gpu", image="x:1")
    assert alice_job.startswith("alice_") and bob_job.startswith("bob_")
    assert root.hget(KEYS.job(alice_job), "submitter") == b"alice"

    _post(client, f"/job/{alice_job}/cancel", BOB)  # the CLI refuses bob this: so does the UI
    assert root.hget(KEYS.job(alice_job), "state") == b"queued"
    assert "bob may not change" in client.get(f"/job/{alice_job}").get_data(as_text=True)
    _post(client, f"/job/{alice_job}/cancel", ALICE)
    assert root.hget(KEYS.job(alice_job), "state") == b"canceled"
    if role == "ui":  # Redis says what launchbay-admin's role allows: every job
        _post(client, f"/job/{bob_job}/cancel", ADMIN)
        assert root.hget(KEYS.job(bob_job), "state") == b"canceled"


@pytest.mark.parametrize("role", ["ui", "admin"])
def test_a_named_token_pauses_only_its_users_sweeps(roles_redis, role):  # noqa: F811
    root, client = _ui_client(roles_redis, role)
    sweep_id = "alice_0123456789abcdef"
    SweepStore(conn_of(roles_redis, "alice"), KEYS).create(
        sweep_id, queue="gpu", config={"method": "grid"}, template={}, submitter="alice", name="s"
    )
    for token in (BOB, ALICE):
        _post(client, f"/sweeps/{sweep_id}/pause", token)
        paused = root.hget(KEYS.sweep(sweep_id), "state")
        assert paused == (b"running" if token == BOB else b"paused"), (TOKENS[token], paused)


def test_docs_security_md_shows_the_ui_role_that_launchbay_acl_prints():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    line = acl.setuser_lines(KEYS, [], admin="a", agent="b", ui="launchbay-ui")[-1][2]
    assert line.startswith("ACL SETUSER launchbay-ui ") and line in docs
