"""After enqueue: cancel, requeue, logs, --wait and --follow, with the test playing the agent."""

from __future__ import annotations

import json

from launchbay.queue_config import lifecycle, rq_bridge
from launchbay.queue_config.job import Outcome, Reason, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from queue_helpers import (
    apply_queues,
    cli,
    cli_popen,
    enqueue_id,
    job_spec_file,
    play_agent,
    record,
    rq_info,
    rq_job_ids,
    subscribe_events,
    wait_for,
)


def _gpu_line(info: str) -> str:
    return next(line for line in info.splitlines() if line.startswith("gpu")).rstrip()


def test_canceling_a_queued_job_takes_it_out_of_the_queue_at_once(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    spec = job_spec_file(tmp_path)
    job_id = enqueue_id(redis_url, spec, "-q", "gpu")
    keep = enqueue_id(redis_url, spec, "-q", "gpu")

    result = cli(redis_url, "cancel", job_id)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"job {job_id} canceled\n"
    shown = record(redis_conn, job_id)
    assert (shown["state"], shown["reason"]) == ("canceled", "canceled_by_user")
    assert rq_job_ids(redis_conn, "gpu") == [keep]
    assert _gpu_line(rq_info(redis_url)).endswith("1, 0 executing, 0 finished, 0 failed")


def test_canceling_a_running_job_asks_its_agent_to_stop_it(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    records = Records(redis_conn, Keys())
    records.transition(job_id, State.STARTING, allowed_from=[State.QUEUED], agent="agent-1")
    records.transition(job_id, State.RUNNING, allowed_from=[State.STARTING])
    events = subscribe_events(redis_conn)

    result = cli(redis_url, "cancel", job_id)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"job {job_id}: cancel requested; the agent stops it\n"
    message = wait_for(lambda: events.get_message(timeout=0.1), what="the cancel event")
    assert json.loads(message["data"]) == {"type": "cancel", "job_id": job_id}
    shown = record(redis_conn, job_id)
    assert (shown["state"], shown["cancel_requested"]) == ("running", "1")
    events.close()


def test_canceling_a_job_that_already_ended_is_a_one_line_error(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    play_agent(redis_conn, job_id)
    result = cli(redis_url, "cancel", job_id)
    assert result.returncode == 2
    assert result.stderr == f"error: job {job_id} already ended (finished); nothing to cancel\n"


def test_an_unknown_job_id_is_a_one_line_error(redis_url, redis_conn):
    result = cli(redis_url, "status", "doesnotexist")
    assert result.returncode == 2
    assert result.stderr == "error: unknown job 'doesnotexist' (never enqueued here, or its record expired)\n"


def test_requeue_puts_a_failed_job_back_without_its_last_run(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu", "--set", "trainer.learning_rate=0.5")
    play_agent(redis_conn, job_id, end=State.FAILED, exit_code=3, reason=Reason.EXIT_CODE)
    assert "0, 0 executing, 0 finished, 1 failed" in _gpu_line(rq_info(redis_url))
    events = subscribe_events(redis_conn)

    result = cli(redis_url, "requeue", job_id)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"job {job_id} queued again on 'gpu'\n"
    shown = record(redis_conn, job_id)
    assert shown["state"] == "queued"
    for cleared in ("reason", "exit_code", "agent", "gpus", "container", "failed_at", "running_at"):
        assert cleared not in shown
    assert shown["run_config"] == {"trainer": {"learning_rate": 0.5}}
    assert rq_job_ids(redis_conn, "gpu") == [job_id]
    assert _gpu_line(rq_info(redis_url)).endswith("1, 0 executing, 0 finished, 0 failed")
    message = wait_for(lambda: events.get_message(timeout=0.1), what="the enqueued event")
    assert json.loads(message["data"]) == {"type": "enqueued", "queue": "gpu"}
    events.close()


def test_requeue_of_a_queued_job_is_refused(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    result = cli(redis_url, "requeue", job_id)
    assert result.returncode == 2
    assert result.stderr == (
        f"error: job {job_id} is queued; only a finished, failed or canceled job can be requeued\n"
    )


def test_logs_print_the_jobs_output_lines(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    play_agent(redis_conn, job_id, lines=["epoch 1", "epoch 2 ✓"])
    result = cli(redis_url, "logs", job_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "epoch 1\nepoch 2 ✓\n"


def test_logs_follow_streams_new_lines_until_the_job_ends(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    follower = cli_popen(redis_url, "logs", job_id, "-f")
    redis_conn.xadd(Keys().job_log(job_id), {"line": "starting"})
    assert follower.stdout.readline() == "starting\n"  # printed while the job still runs
    play_agent(redis_conn, job_id, lines=["done"])
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert out == "done\n"


def test_wait_exits_with_the_jobs_exit_code(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    waiter = cli_popen(redis_url, "enqueue", job_spec_file(tmp_path), "-q", "gpu", "--wait")
    job_id = waiter.stdout.readline().strip()
    play_agent(redis_conn, job_id, end=State.FAILED, exit_code=3, reason=Reason.EXIT_CODE)
    _, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 3
    assert err.splitlines()[-1] == f"job {job_id} failed, exit_code (exit code 3)"


def test_wait_exits_130_when_the_job_is_canceled(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    waiter = cli_popen(redis_url, "enqueue", job_spec_file(tmp_path), "-q", "gpu", "--wait")
    job_id = waiter.stdout.readline().strip()
    assert cli(redis_url, "cancel", job_id).returncode == 0
    waiter.communicate(timeout=30)
    assert waiter.returncode == 130


def test_follow_prints_the_log_then_exits_like_wait(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    waiter = cli_popen(redis_url, "enqueue", job_spec_file(tmp_path), "-q", "gpu", "--follow")
    job_id = waiter.stdout.readline().strip()
    play_agent(redis_conn, job_id, lines=["hello", "bye"])
    out, _ = waiter.communicate(timeout=30)
    assert waiter.returncode == 0
    assert out == "hello\nbye\n"


def test_logs_json_is_a_list_of_lines(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    play_agent(redis_conn, job_id, lines=["one", "two"])
    assert json.loads(cli(redis_url, "logs", job_id, "--json").stdout) == ["one", "two"]


def test_a_job_ends_once_with_one_eof_its_expiry_and_rqs_copy_however_often_the_end_runs(
    redis_url, redis_conn, tmp_path
):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    records = Records(redis_conn, Keys())
    rq_bridge.rq_queue(redis_conn, "gpu").remove(job_id)  # what the claim script does
    assert records.transition(job_id, State.STARTING, allowed_from=[State.QUEUED], agent="agent-1")
    lifecycle.record_rq_start(records, job_id, queue="gpu", worker_name="agent-1")
    assert lifecycle.mark_running(records, job_id, container="c0ffee")
    execution = record(redis_conn, job_id)["rq_execution"]

    failed = Outcome(State.FAILED, Reason.EXIT_CODE, 3, "exited with code 3")
    assert lifecycle.end(records, job_id, failed, rq_execution=execution)
    assert not lifecycle.end(records, job_id, Outcome(State.FINISHED, None, 0), rq_execution=execution)
    lifecycle.complete_end(records, job_id, State.FAILED, rq_execution=execution)  # an agent redoing it after a restart

    shown = record(redis_conn, job_id)
    assert (shown["state"], shown["reason"], shown["exit_code"]) == ("failed", "exit_code", 3)
    assert shown["message"] == "exited with code 3" and shown["container"] == "c0ffee"
    entries = redis_conn.xrange(Keys().job_log(job_id))
    assert [fields for _entry_id, fields in entries] == [{b"eof": b"failed"}]
    assert 0 < redis_conn.ttl(Keys().job(job_id)) <= rq_bridge.RESULT_TTL_S
    assert rq_bridge.fetch(redis_conn, job_id).get_status() == "failed"
