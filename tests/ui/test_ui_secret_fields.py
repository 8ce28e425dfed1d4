"""The UI's job page shows a ``format: secret`` field masked, in the overrides and the effective config."""

from __future__ import annotations

import pytest
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.ui.app import create_app
from ui_helpers import apply_queues

VALUE = "correct-horse-battery-staple"
SPEC = {
    "name": "secretive",
    "image": "python:3.12-slim",
    "inputs": {
        "run_config": {
            "schema": {
                "type": "object",
                "properties": {"api_key": {"type": "string", "format": "secret"}, "lr": {"type": "number"}},
            }
        }
    },
}


@pytest.fixture
def client(redis_conn):
    return create_app(redis_conn, keys=Keys()).test_client()


def test_the_job_page_masks_secret_fields(client, redis_conn):
    apply_queues(redis_conn)
    handle = enqueue(SPEC, "gpu", overrides={"api_key": VALUE, "lr": 0.5}, conn=redis_conn, keys=Keys())
    # What an agent records from the job's config.json, before the agent's own masking, to prove the page masks too.
    Records(redis_conn, Keys()).update(handle.id, effective_config={"api_key": VALUE, "lr": 0.5})
    html = client.get(f"/job/{handle.id}").get_data(as_text=True)
    assert VALUE not in html
    assert html.count("***") >= 2 and "0.5" in html
