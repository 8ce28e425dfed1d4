"""``launchbay queue ...`` and QueueStore: queues created, shown, paused and deleted."""

from __future__ import annotations

import json

import pytest
from conftest import REPO_ROOT
from launchbay.queue_config.models import QueueConfig, load_queue_config
from launchbay.queue_config.store import QueueStore
from queue_helpers import CPU_QUEUE, GPU_QUEUE, apply_queues, cli, enqueue_id, job_spec_file, play_agent, write_yaml

from launchbay.errors import NotFoundError, UserError

EXAMPLES = REPO_ROOT / "queue_config" / "examples"


def test_apply_says_created_then_unchanged_then_updated(redis_url, tmp_path):
    path = write_yaml(tmp_path / "q.yaml", GPU_QUEUE)
    assert cli(redis_url, "queue", "apply", str(path)).stdout == "queue 'gpu' created\n"
    assert cli(redis_url, "queue", "apply", str(path)).stdout == "queue 'gpu' unchanged\n"
    write_yaml(path, {**GPU_QUEUE, "description": "now with a description"})
    assert cli(redis_url, "queue", "apply", str(path)).stdout == "queue 'gpu' updated\n"


def test_an_update_keeps_the_paused_flag(redis_conn):
    store = QueueStore(redis_conn)
    store.apply(QueueConfig.model_validate(GPU_QUEUE))
    store.pause("gpu")
    assert store.apply(QueueConfig.model_validate({**GPU_QUEUE, "description": "x"})) == "updated"
    assert store.is_paused("gpu")
    store.resume("gpu")
    assert not store.is_paused("gpu")


def test_a_queue_file_with_a_mistake_is_refused_naming_the_file_and_field(redis_url, tmp_path):
    path = write_yaml(tmp_path / "q.yaml", {"name": "gpu", "limits": {"gpus": "many"}, "sumbitter_may_set": []})
    result = cli(redis_url, "queue", "apply", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {path}: limits.gpus: Input should be a valid integer, unable to parse string as an integer; "
        "sumbitter_may_set: unknown field\n"
    )


@pytest.mark.parametrize("example", ["gpu.yaml", "cpu.yaml", "local.yaml"])
def test_every_example_queue_config_applies(redis_url, example):
    result = cli(redis_url, "queue", "apply", str(EXAMPLES / example))
    assert result.returncode == 0, result.stderr


def test_the_local_example_passes_gpus_through_env_only():
    assert load_queue_config(EXAMPLES / "local.yaml").docker.gpu_mode == "env_only"


def test_queue_list_and_show_report_configs_counts_and_paused(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    QueueStore(redis_conn).pause("cpu")

    listed = json.loads(cli(redis_url, "queue", "list", "--json").stdout)
    assert [(q["name"], q["paused"], q["jobs"]) for q in listed] == [("cpu", True, {}), ("gpu", False, {"queued": 1})]

    shown = json.loads(cli(redis_url, "queue", "show", "gpu", "--json").stdout)
    assert shown["config"]["limits"]["gpus"] == 8
    assert shown["jobs"] == {"queued": 1}

    table = cli(redis_url, "queue", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "PAUSED", "QUEUED", "RUNNING", "LIMITS", "DESCRIPTION"]
    assert table[2].split()[:4] == ["gpu", "no", "1", "0"]
    human = cli(redis_url, "queue", "show", "gpu").stdout
    assert "paused:   no" in human and "jobs:     queued 1" in human


def test_an_unknown_queue_is_an_error_that_lists_the_known_ones(redis_url, redis_conn):
    apply_queues(redis_conn)
    result = cli(redis_url, "queue", "show", "gpy")
    assert result.returncode == 2
    assert result.stderr == "error: unknown queue 'gpy'; known queues: cpu, gpu\n"


def test_with_no_queues_the_error_says_how_to_create_one(redis_conn):
    with pytest.raises(NotFoundError, match=r"no queues exist yet: create one with `launchbay queue apply FILE`"):
        QueueStore(redis_conn).get("gpu")


def test_pause_and_resume_through_the_cli(redis_url, redis_conn):
    apply_queues(redis_conn)
    assert cli(redis_url, "queue", "pause", "gpu").stdout == "queue 'gpu' paused\n"
    assert QueueStore(redis_conn).is_paused("gpu")
    assert cli(redis_url, "queue", "resume", "gpu").stdout == "queue 'gpu' resumed\n"
    assert not QueueStore(redis_conn).is_paused("gpu")


def test_delete_is_refused_while_jobs_wait_and_says_how_many(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    spec = job_spec_file(tmp_path)
    enqueue_id(redis_url, spec, "-q", "gpu")
    enqueue_id(redis_url, spec, "-q", "gpu")
    result = cli(redis_url, "queue", "delete", "gpu")
    assert result.returncode == 2
    assert result.stderr == (
        "error: queue 'gpu' has 2 queued and 0 starting or running jobs; "
        "cancel them first or use --force (which cancels them)\n"
    )
    assert QueueStore(redis_conn).names() == ["cpu", "gpu"]


def test_forced_delete_cancels_the_waiting_jobs_and_removes_the_rq_queue(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu")
    result = cli(redis_url, "queue", "delete", "gpu", "--force")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "queue 'gpu' deleted (canceled 1 queued jobs, asked agents to stop 0)\n"
    assert QueueStore(redis_conn).names() == ["cpu"]
    assert json.loads(cli(redis_url, "status", job_id, "--json").stdout)["state"] == "canceled"
    assert b"rq:queue:gpu" not in redis_conn.smembers("rq:queues")


def test_a_queue_whose_jobs_all_ended_deletes_without_force(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    play_agent(redis_conn, enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu"))
    QueueStore(redis_conn).delete("gpu")
    assert QueueStore(redis_conn).names() == ["cpu"]


def test_store_delete_refuses_with_a_user_error(redis_conn, redis_url, tmp_path):
    apply_queues(redis_conn, CPU_QUEUE)
    enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "cpu")
    with pytest.raises(UserError, match="has 1 queued"):
        QueueStore(redis_conn).delete("cpu")
