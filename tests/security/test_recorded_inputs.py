"""Issue 13, finding 6: a job's own ``inputs.json`` must not poison its job definition for everyone.

The agent stores what a run recorded only if it is what the SDK writes (key paths it can parse, a
schema in the SDK's subset: no ``pattern``, no ``$ref``); a definition written straight into Redis
is checked again when read, so the UI's index, ``launchbay job show`` and enqueue answer in one
line (or ignore it) instead of a traceback, a 500 or a regex that runs for hours.
"""

from __future__ import annotations

import json

import pytest
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.store import QueueStore
from launchbay.ui.app import create_app
from security_helpers import AgentFleet, cli, log_lines, make_queue, run_agent_once, wait_for

pytestmark = [pytest.mark.integration]

SECTION = {"include": ["trainer"], "exclude": [], "types": {"trainer": {"name": "str"}}}
POISONS = {
    "include-unparseable": {**SECTION, "include": ["a..b"]},
    "schema-invalid-regex": {**SECTION, "schema": {"type": "object", "properties": {"x": {"pattern": "("}}}},
    "schema-ref": {**SECTION, "schema": {"$ref": "http://example.invalid/s.json"}},
    # 29 characters of input took this pattern 17.5 s in jsonschema's re.search; 40 take hours
    "schema-catastrophic-regex": {
        **SECTION,
        "schema": {
            "type": "object",
            "properties": {"trainer": {"type": "object", "properties": {"name": {"pattern": "^(a+)+$"}}}},
        },
    },
}


def _plant(conn, inputs) -> None:
    """A job definition written straight into Redis, as before this check or by anyone with write access."""
    keys = Keys()
    record = {"inputs": {"run_config": inputs, "files": {}}, "job_id": "planted", "recorded_at": 1.0}
    conn.set(keys.jobdef("poisoned"), json.dumps(record))
    conn.sadd(keys.jobdefs, "poisoned")


@pytest.mark.parametrize("poison", list(POISONS.values()), ids=list(POISONS))
def test_a_poisoned_definition_is_refused_when_stored_and_harmless_when_read(redis_url, redis_conn, tmp_path, poison):
    with pytest.raises(ValueError, match=r"inputs\.json"):
        QueueStore(redis_conn, Keys()).record_inputs("poisoned", {"run_config": poison, "files": {}}, "job-1")
    assert redis_conn.get(Keys().jobdef("poisoned")) is None

    make_queue(redis_conn, "sec")
    _plant(redis_conn, poison)
    index = create_app(redis_conn, keys=Keys()).test_client().get("/")
    assert index.status_code == 200 and "poisoned" in index.get_data(as_text=True)
    launch_page = create_app(redis_conn, keys=Keys()).test_client().get("/launch/poisoned")
    assert launch_page.status_code == 200
    assert "its recorded inputs are invalid and are ignored" in launch_page.get_data(as_text=True)

    shown = cli(redis_url, "job", "show", "poisoned")
    assert shown.returncode == 2 and shown.stderr.count("\n") == 1, shown.stderr
    assert shown.stderr.startswith("error: job 'poisoned': its recorded inputs are invalid and are ignored (")

    spec = tmp_path / "job.yaml"
    spec.write_text("name: poisoned\nimage: launchbay-base:test\n")
    queued = cli(redis_url, "enqueue", str(spec), "-q", "sec", "--set", "trainer.name=" + "a" * 40 + "!", timeout=60)
    assert queued.returncode == 0, queued.stderr


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client)
    yield fleet
    fleet.close()


@pytest.mark.docker
def test_a_job_writing_a_poisoned_inputs_json_is_told_and_its_definition_stays_usable(
    redis_url, redis_conn, base_image, fleet
):
    make_queue(redis_conn, "sec")
    inputs = json.dumps({"run_config": POISONS["include-unparseable"], "files": {}})
    script = f"printf '%s' '{inputs}' > \"$LAUNCHBAY_OUTPUT_DIR/inputs.json\""
    queued = cli(
        redis_url, "enqueue", "--image", base_image, "--name", "poisoned", "-q", "sec", "--", "sh", "-c", script
    )
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.strip()
    run_agent_once(fleet, "inputs-agent")

    wait_for(lambda: any("were not kept" in line for line in log_lines(redis_conn, job_id)), timeout_s=30)
    assert redis_conn.get(Keys().jobdef("poisoned")) is None
    assert create_app(redis_conn, keys=Keys()).test_client().get("/").status_code == 200
    shown = cli(redis_url, "job", "show", "poisoned")
    assert shown.returncode == 2 and "has not recorded its inputs yet" in shown.stderr
