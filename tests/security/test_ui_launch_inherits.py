"""Issue 13, finding 9 (UI part): a launch from the form inherits what the job's newest run ran
(command, workdir, env, docker options, constraints), whoever launched it. The form shows all of
it, and a launch is refused when a newer run changed what it would inherit after the form was shown.
"""

from __future__ import annotations

import re

import pytest
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys
from launchbay.ui.app import create_app
from security_helpers import make_queue

pytestmark = [pytest.mark.integration]

ORIGIN = "http://localhost"


def test_the_form_shows_what_it_inherits_and_refuses_a_launch_after_another_run_changed_it(redis_conn):
    make_queue(redis_conn, "sec", submitter_may_set={"shm_size": "any"})
    first = enqueue(
        {
            "name": "trainer",
            "image": "launchbay-base:test",
            "command": ["python3", "train.py"],
            "workdir": "/work",
            "env": {"MODE": "fast"},
            "constraints": {"zone": "eu"},
            "docker": {"shm_size": "1GiB"},
        },
        "sec",
        conn=redis_conn,
    )
    client = create_app(redis_conn, keys=Keys()).test_client()
    html = client.get("/launch/trainer").get_data(as_text=True)
    inherited = re.search(r'<section class="card" id="inherited">(.*?)</section>', html, re.S)
    assert inherited, "the form does not show what the launch inherits"
    text = re.sub(r"<[^>]+>", " ", inherited.group(1))
    for shown in (first.id, "python3 train.py", "/work", "env MODE", "fast", "constraint zone", "eu", "shm_size_mib"):
        assert shown in text, (shown, text)
    assert f'name="based_on" value="{first.id}"' in html

    newer = enqueue(
        {"name": "trainer", "image": "launchbay-base:test", "env": {"LD_PRELOAD": "/x.so"}}, "sec", conn=redis_conn
    )
    posted = {"queue": "sec", "image": "launchbay-base:test", "based_on": first.id}
    refused = client.post("/launch/trainer", data=posted, headers={"Origin": ORIGIN})
    assert refused.status_code == 422
    assert f"now come from job {newer.id}" in refused.get_data(as_text=True)
    assert f'name="based_on" value="{newer.id}"' in refused.get_data(as_text=True)
    assert "env LD_PRELOAD" in refused.get_data(as_text=True)
