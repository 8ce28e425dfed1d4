"""The typed job record (queue_config/job.py): read from a hash and written back, bad values named, not raised."""

from __future__ import annotations

import pytest
from launchbay.queue_config.job import (
    UNREADABLE_FIELDS,
    JobRecord,
    Outcome,
    Reason,
    State,
    from_hash,
    is_active,
    is_terminal,
    state_of,
    to_hash,
)


def stored(**fields):
    """A hash as HGETALL returns it: bytes names and values."""
    return {k.encode(): v.encode() for k, v in to_hash(fields).items() if v != ""}


def test_a_record_reads_back_what_was_written():
    raw = stored(
        id="j1",
        state=State.FAILED,
        queue="gpu",
        name="train",
        priority="high",
        spec={"image": "python:3.12", "command": ["python", "-c", "1"]},
        request={"cpus": 2.0, "gpus": 1},
        max_runtime_s=600,
        attempts=2,
        agent="host-1",
        rq_execution="ex-1",
        reason=Reason.EXIT_CODE,
        exit_code=3,
        message="exited with code 3",
        queued_at=1700000000.5,
    )
    record = JobRecord.from_hash("j1", raw)
    assert record.state == State.FAILED and record.terminal and not record.active
    assert (record.queue, record.name, record.priority, record.agent) == ("gpu", "train", "high", "host-1")
    assert record.spec["command"] == ["python", "-c", "1"] and record.request == {"cpus": 2.0, "gpus": 1}
    assert (record.max_runtime_s, record.attempts, record.rq_execution) == (600, 2, "ex-1")
    assert record.outcome == Outcome(State.FAILED, Reason.EXIT_CODE, 3, "exited with code 3")
    assert record.fields["queued_at"] == 1700000000.5
    assert record.problems == []
    assert {k.encode(): v.encode() for k, v in record.to_hash().items()} == raw


def test_bad_values_become_none_and_are_listed_not_raised():
    raw = {
        b"state": b"running",
        b"spec": b"{not json",
        b"attempts": b"many",
        b"max_runtime_s": b"1e400x",
        b"queued_at": b"yesterday",
        b"queue": b"cpu",
    }
    record = JobRecord.from_hash("j2", raw)
    assert record.state == State.RUNNING and record.active
    assert record.spec == {} and record.attempts == 0 and record.max_runtime_s is None
    assert sorted(record.problems) == ["attempts", "max_runtime_s", "queued_at", "spec"]
    assert from_hash(raw)[UNREADABLE_FIELDS] == record.fields[UNREADABLE_FIELDS]


@pytest.mark.parametrize("value", [b"exploded", b"", b"QUEUED"])
def test_a_state_that_is_not_ours_is_no_state_and_a_problem(value):
    record = JobRecord.from_hash("j3", {b"state": value})
    assert record.state is None and "state" in record.problems
    assert state_of({"state": value}) is None
    assert not is_active({"state": value}) and not is_terminal({"state": value})


def test_the_key_names_the_job_whatever_its_id_field_says():
    assert JobRecord.from_hash("real", {b"id": b"someone-else", b"state": b"queued"}).id == "real"


def test_cancel_requested_reads_the_flag_as_people_write_it():
    assert JobRecord.from_hash("j", {b"state": b"running", b"cancel_requested": b"1"}).cancel_requested
    assert not JobRecord.from_hash("j", {b"state": b"running", b"cancel_requested": b"0"}).cancel_requested


def documented_fields() -> list:
    """The field names of job.py's docstring table (``id, name, queue`` rows are split)."""
    from launchbay.queue_config import job

    table = job.__doc__.split("Fields (")[1].split("========================  ====")[1]
    names = []
    for line in table.splitlines()[1:]:
        if line.strip() and not line.startswith(" "):
            names += [name.strip() for name in line[:26].split(",")]
    return names


def test_every_documented_job_field_has_a_typed_attribute():
    from dataclasses import fields as dataclass_fields

    attributes = {f.name for f in dataclass_fields(JobRecord)}
    names = documented_fields()
    assert {"run_config", "submitter", "preemptions", "sweep", "trial", "cancel_reason"} <= set(names)
    missing = [name for name in names if name != "<state>_at" and name not in attributes]
    assert not missing, f"job fields without a JobRecord attribute: {missing}"


def test_the_typed_attributes_read_every_field_of_a_stored_record():
    raw = {
        b"state": b"queued", b"queue": b"gpu", b"name": b"train", b"submitter": b"ada",
        b"run_config": b'{"lr":0.1}', b"file_overrides": b'{"c.yaml":{"a":1}}', b"summary": b'{"loss":0.5}',
        b"preemptions": b"2", b"pending_reason": b"no_fit", b"pending_detail": b"needs 2 GPUs",
        b"estimated_start": b"1700000000.5", b"sweep": b"s1", b"trial": b"3", b"cancel_reason": b"pruned",
        b"gpus": b'["0","3"]', b"queued_at": b"1699999999.0", b"reason": b"preempted",
    }  # fmt: skip
    record = JobRecord.from_hash("s1-3", raw)
    assert (record.submitter, record.run_config, record.file_overrides) == ("ada", {"lr": 0.1}, {"c.yaml": {"a": 1}})
    assert (record.summary, record.preemptions, record.pending_reason) == ({"loss": 0.5}, 2, "no_fit")
    assert (record.pending_detail, record.estimated_start) == ("needs 2 GPUs", 1700000000.5)
    assert (record.sweep, record.trial, record.cancel_reason, record.gpus) == ("s1", 3, "pruned", ["0", "3"])
    assert record.times == {"queued": 1699999999.0} and record.reason == "preempted" and record.outcome is None
    assert record.as_json()["run_config"] == {"lr": 0.1} and set(record.as_json()) == {k.decode() for k in raw}


def test_a_field_of_the_wrong_shape_reads_as_empty_not_as_an_error():
    record = JobRecord.from_hash("j", {b"state": b"running", b"summary": b"[1,2]", b"gpus": b'{"a":1}'})
    assert record.summary is None and record.gpus == [] and record.problems == []
