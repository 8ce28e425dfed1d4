"""``launchbay status``'s table rows, built from the JobRecord: a row exactly when its field is stored."""

from __future__ import annotations

from launchbay.cli.job_cmds import _status_rows, exit_code_for
from launchbay.queue_config.job import JobRecord


def rows(raw: dict) -> dict:
    encoded = {key.encode(): value.encode() for key, value in raw.items()}
    return dict(_status_rows(JobRecord.from_hash(raw["id"], encoded)))


def test_a_queued_job_shows_its_stored_attempts_and_priority_and_no_run_fields():
    shown = rows({"id": "j1", "state": "queued", "attempts": "0", "priority": "low", "spec": '{"image":"x"}'})
    assert shown["attempts"] == "0" and shown["priority"] == "low"
    assert not {"agent", "host", "exit code", "cancel requested", "reason"} & set(shown)


def test_a_hash_without_a_priority_shows_no_priority_row_though_the_record_reads_normal():
    raw = {"id": "j2", "state": "queued", "spec": '{"image":"x"}'}
    assert JobRecord.from_hash("j2", {k.encode(): v.encode() for k, v in raw.items()}).priority == "normal"
    assert "priority" not in rows(raw) and "attempts" not in rows(raw)


def test_an_ended_job_shows_its_end_overrides_and_summary():
    shown = rows(
        {
            "id": "j3", "state": "failed", "reason": "exit_code", "exit_code": "3", "cancel_requested": "1",
            "spec": '{"image":"x","command":["python","t.py"]}', "run_config": '{"lr":0.1}',
            "gpus": '["0","2"]', "failed_at": "1700000000.0", "summary": '{"loss":0.5}',
        }
    )  # fmt: skip
    assert (shown["exit code"], shown["cancel requested"], shown["command"]) == ("3", "1", "python t.py")
    assert (shown["run config"], shown["gpus"]) == ('{"lr": 0.1}', "0,2") and "failed" in shown


def test_the_wait_exit_code_follows_the_record():
    def code(**raw: str) -> int:
        return exit_code_for(JobRecord.from_hash("j", {k.encode(): v.encode() for k, v in raw.items()}))

    assert (code(state="finished", exit_code="0"), code(state="failed", exit_code="7")) == (0, 7)
    assert (code(state="failed"), code(state="canceled", exit_code="143")) == (1, 130)
