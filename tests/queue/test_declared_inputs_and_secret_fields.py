"""A job spec's ``inputs:`` declaration, ``format: secret`` fields and ``${secret:NAME}`` references,
at enqueue and wherever a record is shown (through the CLI, as a user sees them)."""

from __future__ import annotations

import json

import pytest
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.store import QueueStore
from queue_helpers import apply_queues, cli, enqueue_id, job_spec_file, record, redis_snapshot

SECRET_QUEUE = {"name": "gpu", "secrets": {"WANDB_API_KEY": {"env": "WANDB_API_KEY"}}}
DECLARED = {
    "run_config": {
        "include": ["trainer"],
        "exclude": ["trainer.private"],
        "schema": {
            "type": "object",
            "properties": {
                "trainer": {
                    "type": "object",
                    "properties": {
                        "learning_rate": {"type": "number", "maximum": 1},
                        "api_key": {
                            "type": "string",
                            "format": "secret",
                            "minLength": 20,
                            "label": "API key",
                            "placeholder": "paste it here",
                            "required": True,
                        },
                        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True},
                    },
                }
            },
        },
    },
    "files": {"config.yaml": {"include": ["epochs"]}},
}


@pytest.fixture
def spec(tmp_path, redis_conn):
    apply_queues(redis_conn, SECRET_QUEUE)
    return job_spec_file(tmp_path, config={}, inputs=DECLARED)


def refused(redis_url, redis_conn, *args):
    before = redis_snapshot(redis_conn)
    result = cli(redis_url, "enqueue", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    assert redis_snapshot(redis_conn) == before
    return result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "trainer.private.key=x"], "key 'trainer.private.key' is excluded by prefix 'trainer.private'"),
        (["--set", "seed=3"], "key 'seed' is under no include prefix (trainer)"),
        (["--set", "trainer.learning_rate=5"], "trainer.learning_rate: 5 is greater than the maximum of 1"),
        (["--file-set", "config.yaml:optimizer=adam"], "config.yaml: key 'optimizer' is under no include prefix"),
        (["--file-set", "other.yaml:a=1"], "config file 'other.yaml' is not one the job manages"),
    ],
)
def test_with_nothing_recorded_enqueue_checks_the_declared_inputs(redis_url, redis_conn, spec, args, message):
    assert message in refused(redis_url, redis_conn, spec, "-q", "gpu", *args)


def test_an_accepted_launch_keeps_the_inputs_it_was_checked_against(redis_url, redis_conn, spec):
    job_id = enqueue_id(redis_url, spec, "-q", "gpu", "--set", "trainer.learning_rate=0.5")
    rec = record(redis_conn, job_id)
    assert rec["spec"]["inputs_source"] == "declared"
    assert rec["spec"]["inputs"]["run_config"]["exclude"] == ["trainer.private"]
    assert rec["spec"]["inputs"]["files"]["config.yaml"]["include"] == ["epochs"]


def test_recorded_inputs_win_over_the_declaration(redis_url, redis_conn, spec):
    recorded = {
        "run_config": {"include": ["seed"], "exclude": [], "types": {"seed": "int"}, "schema": None},
        "files": {},
    }
    QueueStore(redis_conn, Keys()).record_inputs("trainer", recorded, "job-0")
    job_id = enqueue_id(redis_url, spec, "-q", "gpu", "--set", "seed=3")
    assert record(redis_conn, job_id)["spec"]["inputs_source"] == "recorded"
    assert "key 'trainer.learning_rate' is under no include prefix (seed)" in refused(
        redis_url, redis_conn, spec, "-q", "gpu", "--set", "trainer.learning_rate=0.5"
    )


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"run_config": {"include": ["a..b"]}},
            "inputs.run_config.include: invalid key path 'a..b': empty key between dots",
        ),
        ({"run_config": {"schema": {"type": "object", "properties": 3}}}, "schema is not a valid JSON schema"),
        ({"run_config": {"schema": {"type": "string"}}}, "the top level must have type 'object'"),
        ({"files": {"../etc/passwd": {}}}, "must be relative to the job, without '..'"),
        ({"run_config": {"includes": ["a"]}}, "inputs.run_config.includes: unknown field"),
    ],
)
def test_a_bad_declaration_is_one_line_naming_the_field(redis_url, redis_conn, tmp_path, inputs, message):
    apply_queues(redis_conn, SECRET_QUEUE)
    assert message in refused(redis_url, redis_conn, job_spec_file(tmp_path, config={}, inputs=inputs), "-q", "gpu")


def test_a_secret_field_is_masked_by_enqueue_status_and_list(redis_url, redis_conn, spec):
    value = "hunter2-hunter2-hunter2"
    shown = cli(redis_url, "enqueue", spec, "-q", "gpu", "--set", f"trainer.api_key={value}", "--json")
    assert shown.returncode == 0, shown.stderr
    job_id = json.loads(shown.stdout)["id"]
    assert record(redis_conn, job_id)["run_config"]["trainer"]["api_key"] == value  # the agent needs it
    outputs = [
        shown.stdout,
        cli(redis_url, "status", job_id).stdout,
        cli(redis_url, "status", job_id, "--json").stdout,
        cli(redis_url, "list", "--json").stdout,
    ]
    for output in outputs:
        assert value not in output and "***" in output, output
    assert json.loads(outputs[2])["run_config"]["trainer"]["api_key"] == "***"


def test_a_refusal_that_would_quote_a_secret_value_masks_it(redis_url, redis_conn, spec):
    message = refused(redis_url, redis_conn, spec, "-q", "gpu", "--set", "trainer.api_key=short-pass")
    assert "short-pass" not in message and "'***' is too short" in message


def test_a_reference_to_a_queue_secret_is_kept_as_a_reference(redis_url, redis_conn, spec):
    job_id = enqueue_id(redis_url, spec, "-q", "gpu", "--set", "trainer.api_key=${secret:WANDB_API_KEY}")
    assert record(redis_conn, job_id)["run_config"]["trainer"]["api_key"] == "${secret:WANDB_API_KEY}"
    status = json.loads(cli(redis_url, "status", job_id, "--json").stdout)
    assert status["run_config"]["trainer"]["api_key"] == "${secret:WANDB_API_KEY}"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("trainer.api_key=${secret:NOPE}", "names no secret of queue 'gpu' (its secrets: WANDB_API_KEY)"),
        ("trainer.learning_rate=${secret:WANDB_API_KEY}", "allowed only in a field whose schema says format: secret"),
    ],
)
def test_a_reference_is_refused_outside_secret_fields_or_to_an_unknown_secret(
    redis_url, redis_conn, spec, assignment, message
):
    problem = refused(redis_url, redis_conn, spec, "-q", "gpu", "--set", assignment)
    assert message in problem
