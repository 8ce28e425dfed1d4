"""Who launches from the UI: a named token's user, or opt-in a trusted proxy header; never a form field."""

from __future__ import annotations

import pytest
from launchbay.queue_config.keys import Keys
from launchbay.ui.app import create_app
from launchbay.ui.security import load_token_file
from ui_helpers import apply_queues, define_job, record

from launchbay.errors import UserError

ORIGIN = "http://localhost"
ALICE, BOB = "alice-token-0123456789", "bob-token-9876543210ab"


def launch(client, token=None, **extra):
    data = {"queue": "gpu", "image": "x:1", **extra}
    headers = {"Origin": ORIGIN}
    if token:
        data["token"] = token
    response = client.post("/launch/trainer", data=data, headers=headers)
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"].rsplit("/", 1)[1]


def test_a_named_token_launches_as_its_user_and_a_form_field_cannot_say_otherwise(redis_conn, tmp_path):
    apply_queues(redis_conn)
    define_job(redis_conn)
    path = tmp_path / "tokens"
    path.write_text(f"# team\nalice: {ALICE}\nbob: {BOB}\n")
    client = create_app(redis_conn, keys=Keys(), bind_host="0.0.0.0", named_tokens=load_token_file(str(path)))
    client = client.test_client()
    assert client.get("/").status_code == 401
    assert client.get(f"/launch/trainer?token={BOB}").status_code == 303
    assert f'value="{BOB}"' in client.get("/launch/trainer").get_data(as_text=True)  # the form carries bob's own
    job_id = launch(client, BOB, submitter="alice", user="alice")
    assert record(redis_conn, job_id)["submitter"] == "bob"
    assert record(redis_conn, launch(client, ALICE))["submitter"] == "alice"
    refused = client.post(
        "/launch/trainer", data={"queue": "gpu", "image": "x:1", "token": "alice"}, headers={"Origin": ORIGIN}
    )
    assert refused.status_code == 403
    html = client.get(f"/job/{job_id}").get_data(as_text=True)
    assert 'id="job-submitter">bob<' in html


def test_the_proxy_header_is_trusted_only_when_asked_for(redis_conn, monkeypatch):
    apply_queues(redis_conn)
    define_job(redis_conn)
    monkeypatch.setenv("LAUNCHBAY_USER", "ui-host")
    plain = create_app(redis_conn, keys=Keys()).test_client()
    job_id = plain.post(
        "/launch/trainer",
        data={"queue": "gpu", "image": "x:1"},
        headers={"Origin": ORIGIN, "X-Forwarded-User": "mallory"},
    )
    assert record(redis_conn, job_id.headers["Location"].rsplit("/", 1)[1])["submitter"] == "ui-host"
    proxied = create_app(redis_conn, keys=Keys(), user_header="X-Forwarded-User").test_client()
    job_id = proxied.post(
        "/launch/trainer",
        data={"queue": "gpu", "image": "x:1"},
        headers={"Origin": ORIGIN, "X-Forwarded-User": "carol"},
    )
    assert record(redis_conn, job_id.headers["Location"].rsplit("/", 1)[1])["submitter"] == "carol"


@pytest.mark.parametrize(
    "text, message",
    [
        ("alice short\n", "expected 'name: token'"),
        ("alice: short\n", "shorter than 16"),
        (f"alice: {ALICE}\nbob: {ALICE}\n", "same token as alice"),
        (f"alice: {ALICE}\nalice: {BOB}\n", "appears twice"),
        ("# nobody\n", "no 'name: token' line"),
    ],
)
def test_a_bad_token_file_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_token_file(str(path))
