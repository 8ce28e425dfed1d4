"""Job definitions: the inputs a job's last run recorded, as ``launchbay job show|list`` shows them."""

from __future__ import annotations

import json

from conftest import publish_agent_line
from launchbay.queue_config.agents import live_agents
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.store import QueueStore
from queue_helpers import apply_queues, cli, enqueue_id, job_spec_file

INPUTS = {
    "run_config": {
        "include": ["trainer"],
        "exclude": ["trainer.seed"],
        "types": {"trainer": {"learning_rate": "float", "seed": "int"}, "data": {"path": "str"}},
        "schema": {"type": "object", "properties": {"trainer": {"type": "object"}}},
    },
    "files": {"config.yaml": {"include": [], "exclude": [], "types": {"model": {"depth": "int"}}, "schema": None}},
}


def test_job_show_prints_the_recorded_types_in_the_docs_shape(redis_url, redis_conn):
    QueueStore(redis_conn).record_inputs("trainer", INPUTS, job_id="abc123")
    result = cli(redis_url, "job", "show", "trainer", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["run_config"]["types"] == {
        "trainer": {"learning_rate": "float", "seed": "int"},
        "data": {"path": "str"},
    }
    assert shown["files"]["config.yaml"]["types"] == {"model": {"depth": "int"}}
    assert (shown["name"], shown["job_id"]) == ("trainer", "abc123")


def test_job_show_as_a_table_says_which_keys_a_launch_may_override(redis_url, redis_conn):
    QueueStore(redis_conn).record_inputs("trainer", INPUTS, job_id="abc123")
    lines = cli(redis_url, "job", "show", "trainer").stdout.splitlines()
    assert lines[0].startswith("job trainer: inputs recorded by job abc123 at ")
    assert [" ".join(line.split()) for line in lines[2:6]] == [
        "run config trainer.learning_rate float yes",
        "run config trainer.seed int no: excluded by prefix 'trainer.seed'",
        "run config data.path str no: under no include prefix (trainer)",
        "file config.yaml model.depth int yes",
    ]
    assert lines[-1] == 'run config schema: {"properties": {"trainer": {"type": "object"}}, "type": "object"}'


def test_job_show_before_the_first_run_says_the_inputs_are_not_recorded_yet(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    result = cli(redis_url, "job", "show", "trainer")
    assert result.returncode == 2
    assert result.stderr == "error: job 'trainer' has not recorded its inputs yet; an agent records them when it runs\n"
    unknown = cli(redis_url, "job", "show", "nope")
    assert unknown.stderr == "error: unknown job 'nope'; known jobs: trainer\n"


def test_job_list_shows_enqueued_and_recorded_jobs(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    QueueStore(redis_conn).record_inputs("evaluator", INPUTS, job_id="def456")
    listed = json.loads(cli(redis_url, "job", "list", "--json").stdout)
    assert [(e["name"], e["recorded"], e["job_id"]) for e in listed] == [
        ("evaluator", True, "def456"),
        ("trainer", False, None),
    ]
    table = cli(redis_url, "job", "list").stdout
    assert "evaluator  yes" in table and "trainer    not yet" in table


def test_get_inputs_returns_what_record_inputs_stored(redis_conn):
    store = QueueStore(redis_conn)
    assert store.get_inputs("trainer") is None
    store.record_inputs("trainer", INPUTS, job_id="abc123")
    assert store.get_inputs("trainer") == INPUTS


def test_live_agents_leaves_out_agents_whose_heartbeat_expired(redis_conn):
    keys = Keys()
    for agent_id in ("alive-1", "gone-1"):
        redis_conn.sadd(keys.agents, agent_id)
        redis_conn.set(keys.agent_capacity(agent_id), json.dumps({"agent_id": agent_id, "cpus": 4.0}))
    redis_conn.set(keys.agent_alive("alive-1"), "1", ex=30)
    for agent_id in ("alive-1", "gone-1"):  # what each one's heartbeat wrote into the fleet summary
        publish_agent_line(redis_conn, agent_id, alive=agent_id == "alive-1")
    assert live_agents(redis_conn, keys) == [{"agent_id": "alive-1", "cpus": 4.0}]
