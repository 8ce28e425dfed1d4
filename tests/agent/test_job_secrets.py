"""Reading a queue's secrets on the agent's host, and what the agent keeps of them (agent/job_secrets.py)."""

from __future__ import annotations

import pytest
from launchbay.agent.job_secrets import (
    SECRET_FILE_LIMIT_BYTES,
    JobSecrets,
    SecretMissingError,
    resolve,
    scrub_effective_config,
)
from launchbay.queue_config.job import JobRecord, Reason
from launchbay.queue_config.models import QueueConfig


def queue(**secrets) -> QueueConfig:
    return QueueConfig(name="q", secrets=secrets)


def test_env_and_file_secrets_are_read_and_references_replaced(tmp_path):
    token = tmp_path / "token"
    token.write_text("from-file\n")
    record = {
        "run_config": {"t": {"key": "${secret:A}", "other": "${secret:A}x"}},
        "file_overrides": {"c.yaml": {"k": "${secret:B}"}},
    }
    secrets = resolve(
        JobRecord.from_fields("j", record), queue(A={"env": "SRC"}, B={"file": str(token)}), {"SRC": "from-env"}
    )
    assert secrets.env == {"A": "from-env", "B": "from-file"}
    assert secrets.run_config == {"t": {"key": "from-env", "other": "${secret:A}x"}}  # only a whole value refers
    assert secrets.file_overrides == {"c.yaml": {"k": "from-file"}}


@pytest.mark.parametrize(
    ("source", "environ", "file_text", "message"),
    [
        ("env", {}, None, "secret A is missing: env SRC on the agent's host is not set or empty"),
        ("env", {"SRC": ""}, None, "secret A is missing: env SRC on the agent's host is not set or empty"),
        ("file", {}, None, "secret A is missing: cannot read file {path} on the agent's host: No such file or directory"),
        ("file", {}, "\n", "secret A is missing: file {path} on the agent's host is empty"),
        ("file", {}, "x" * (SECRET_FILE_LIMIT_BYTES + 1), "secret A: file {path} on the agent's host is larger than 65536 bytes"),
    ],
)  # fmt: skip
def test_a_missing_secret_says_which_and_where_with_reason_secret_missing(
    tmp_path, source, environ, file_text, message
):
    path = tmp_path / "token"
    if file_text is not None:
        path.write_text(file_text)
    config = queue(A={"env": "SRC"} if source == "env" else {"file": str(path)})
    with pytest.raises(SecretMissingError) as caught:
        resolve(JobRecord("j", None), config, environ)
    assert str(caught.value) == message.format(path=path)
    assert Reason(caught.value.reason) is Reason.SECRET_MISSING


def test_a_reference_to_a_secret_the_queue_lacks_fails_the_job():
    with pytest.raises(SecretMissingError, match="refer to secrets queue 'q' does not have: GONE"):
        resolve(JobRecord.from_fields("j", {"run_config": {"k": "${secret:GONE}"}}), queue(), {})


def test_log_lines_lose_secret_values_but_not_short_ones():
    secrets = JobSecrets(env={"A": "s3cr3t-value", "B": "abc", "C": "s3cr3t-value-longer"})
    assert secrets.redact("token=s3cr3t-value-longer and s3cr3t-value, abc") == "token=*** and ***, abc"


def test_the_recorded_effective_config_loses_secret_fields_and_secret_values():
    schema = {
        "type": "object",
        "properties": {"api": {"type": "object", "properties": {"key": {"type": "string", "format": "secret"}}}},
    }
    record = JobRecord.from_fields("j", {"spec": {"inputs": {"run_config": {"schema": schema}, "files": {}}}})
    secrets = JobSecrets(env={"A": "s3cr3t-value"})
    config = {"api": {"key": "typed-in-secret"}, "log": ["used s3cr3t-value"], "lr": 0.1}
    assert scrub_effective_config(record, config, secrets) == {"api": {"key": "***"}, "log": ["used ***"], "lr": 0.1}
    assert scrub_effective_config(record, None, secrets) is None


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"LAUNCHBAY_JOB_ID": {"env": "X"}}, "would replace one of launchbay's or W&B Launch's variables"),
        ({"WANDB_CONFIG_0": {"env": "X"}}, "would replace one of launchbay's or W&B Launch's variables"),
        ({"A": {"env": "X", "file": "/f"}}, "exactly one source"),
        ({"A": {"file": "relative"}}, "must be an absolute path"),
        ({"A": {"env": "1X"}}, "is not a valid variable name"),
    ],
)
def test_a_queue_config_names_each_secret_and_one_source(secrets, message):
    with pytest.raises(ValueError, match=message):
        queue(**secrets)


def test_values_of_secret_fields_are_hidden_from_the_log_too():
    schema = {"type": "object", "properties": {"key": {"type": "string", "format": "secret"}}}
    record = {
        "spec": {"inputs": {"run_config": {"schema": schema}, "files": {}}},
        "run_config": {"key": "typed-in-1234", "lr": "0.1234"},
    }
    secrets = resolve(JobRecord.from_fields("j", record), queue(), {})
    assert secrets.redact("key typed-in-1234 lr 0.1234") == "key *** lr 0.1234"
