"""``launchbay metrics JOB`` and the summary in ``launchbay status``, with the test playing the agent
(steps written to the metrics stream as the agent writes them, the summary into the record)."""

from __future__ import annotations

import json

from launchbay.queue_config.job import State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from queue_helpers import apply_queues, cli, cli_popen, enqueue_id, job_spec_file, play_agent

STEPS = [
    {"_step": 0, "_timestamp": 1.5, "_runtime": 0.1, "loss": 2.302585, "lr": 0.1},
    {"_step": 1, "_timestamp": 2.5, "_runtime": 1.1, "loss": 1.0, "lr": 0.1, "val/acc": 0.5},
    {"_step": 2, "_timestamp": 3.5, "_runtime": 2.1, "loss": "NaN", "phase": "eval", "done": True},
]


def add_steps(conn, job_id, steps):
    for step in steps:
        conn.xadd(Keys().job_metrics(job_id), {"m": json.dumps(step)})


def ended_job(redis_url, redis_conn, tmp_path, steps=STEPS, summary=None):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    add_steps(redis_conn, job_id, steps)
    play_agent(redis_conn, job_id, summary=summary)
    return job_id


def test_metrics_prints_a_table_of_step_and_keys(redis_url, redis_conn, tmp_path):
    job_id = ended_job(redis_url, redis_conn, tmp_path)

    result = cli(redis_url, "metrics", job_id)

    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["STEP", "loss", "lr", "val/acc", "phase", "done"]
    assert rows[1] == ["0", "2.30259", "0.1"]
    assert rows[2] == ["1", "1", "0.1", "0.5"]
    assert rows[3] == ["2", "NaN", "eval", "true"]
    assert result.stderr == ""


def test_metrics_json_is_one_object_per_step_with_the_reserved_keys(redis_url, redis_conn, tmp_path):
    job_id = ended_job(redis_url, redis_conn, tmp_path)

    result = cli(redis_url, "metrics", job_id, "--json")

    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == STEPS


def test_a_capped_stream_says_so_on_stderr(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    add_steps(redis_conn, job_id, STEPS[:1])
    redis_conn.xadd(Keys().job_metrics(job_id), {"truncated": "the job logged more than 1 steps"})
    play_agent(redis_conn, job_id)

    result = cli(redis_url, "metrics", job_id, "--json")

    assert [json.loads(line) for line in result.stdout.splitlines()] == STEPS[:1]
    assert "kept no more steps: the job logged more than 1 steps" in result.stderr


def test_metrics_follow_prints_steps_as_they_come_until_the_job_ends(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    follower = cli_popen(redis_url, "metrics", job_id, "-f", "--json")
    add_steps(redis_conn, job_id, STEPS[:1])
    assert json.loads(follower.stdout.readline()) == STEPS[0]  # printed while the job still runs
    add_steps(redis_conn, job_id, STEPS[1:])
    play_agent(redis_conn, job_id)
    out, err = follower.communicate(timeout=30)

    assert follower.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == STEPS[1:]


def test_metrics_follow_as_a_table_prints_a_new_header_when_a_key_appears(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    follower = cli_popen(redis_url, "metrics", job_id, "-f")
    add_steps(redis_conn, job_id, STEPS)
    play_agent(redis_conn, job_id)
    out, err = follower.communicate(timeout=30)

    assert follower.returncode == 0, err
    lines = [line.split() for line in out.splitlines()]
    assert lines == [
        ["STEP", "loss", "lr"],
        ["0", "2.30259", "0.1"],
        ["STEP", "loss", "lr", "val/acc"],
        ["1", "1", "0.1", "0.5"],
        ["STEP", "loss", "lr", "val/acc", "phase", "done"],
        ["2", "NaN", "eval", "true"],
    ]


def test_a_job_without_metrics_says_so_on_stderr(redis_url, redis_conn, tmp_path):
    job_id = ended_job(redis_url, redis_conn, tmp_path, steps=[])
    result = cli(redis_url, "metrics", job_id)
    assert result.returncode == 0
    assert result.stdout == ""
    assert f"no metrics from job {job_id} (it is finished" in result.stderr


def test_metrics_of_an_unknown_job_is_a_one_line_error(redis_url, redis_conn):
    result = cli(redis_url, "metrics", "0123456789abcdef")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "unknown job" in result.stderr


def test_status_shows_the_summary_and_json_includes_it(redis_url, redis_conn, tmp_path):
    job_id = ended_job(redis_url, redis_conn, tmp_path, summary={"loss": 0.25, "best/acc": 0.875, "_step": 2})
    assert Records(redis_conn, Keys()).state(job_id) == State.FINISHED

    table = cli(redis_url, "status", job_id)
    as_json = cli(redis_url, "status", job_id, "--json")

    rows = [line.split(None, 2) for line in table.stdout.splitlines()]
    assert ["summary", "best/acc", "0.875"] in rows and ["summary", "loss", "0.25"] in rows
    assert not any(row[:2] == ["summary", "_step"] for row in rows)
    assert json.loads(as_json.stdout)["summary"] == {"loss": 0.25, "best/acc": 0.875, "_step": 2}


HOSTILE_STEPS = [{"_step": 0, "\x1b]0;owned\x07loss": 1.0, "\x1b[2Jwiped": "\x1b[31mred", "[bold]x[/bold]": 2.0}]


def test_metric_names_and_values_with_terminal_escapes_are_shown_not_obeyed(redis_url, redis_conn, tmp_path):
    """Issue 23: a job names its own metrics, and the table printed a name's escape sequence raw."""
    job_id = ended_job(redis_url, redis_conn, tmp_path, steps=HOSTILE_STEPS)
    follower = cli_popen(redis_url, "metrics", job_id, "-f")
    followed, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    for out in (cli(redis_url, "metrics", job_id).stdout, followed):
        assert "\x1b" not in out and "\x07" not in out, repr(out)
        assert "\\x1b]0;owned\\x07loss" in out and "\\x1b[2Jwiped" in out and "\\x1b[31mred" in out
        assert "[bold]x[/bold]" in out  # shown as written, not taken for markup
