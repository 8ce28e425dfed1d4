"""Enqueue and inspect jobs through the ``launchbay`` command, on a real redis-server."""

from __future__ import annotations

import json

from launchbay.queue_config.store import QueueStore
from queue_helpers import (
    apply_queues,
    cli,
    enqueue_id,
    job_spec_file,
    record,
    register_agent,
    rq_info,
    rq_job_ids,
)


def test_enqueue_prints_only_the_job_id_and_status_shows_the_queued_job(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    result = cli(redis_url, "enqueue", job_spec_file(tmp_path), "-q", "gpu")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert len(job_id) == 16 and "\n" not in job_id

    status = cli(redis_url, "status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["state"] == "queued"
    assert shown["queue"] == "gpu"
    assert shown["name"] == "trainer"
    assert shown["spec"]["image"] == "python:3.12-slim"
    assert shown["request"] == {"cpus": 4.0, "memory_mib": 16384, "gpus": 0, "gpu_model": "", "gpu_memory_mib": 0}
    assert shown["max_runtime_s"] == 24 * 3600  # the queue's limit applies when nothing else is asked
    assert shown["run_config"] == {"trainer": {"learning_rate": 0.01}}

    table = cli(redis_url, "status", job_id)
    assert table.returncode == 0
    assert "queued" in table.stdout and job_id in table.stdout


def test_rq_info_counts_the_enqueued_jobs_in_their_queue(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    spec = job_spec_file(tmp_path)
    for _ in range(3):
        enqueue_id(redis_url, spec, "-q", "gpu")
    info = rq_info(redis_url)
    gpu_line = next(line for line in info.splitlines() if line.startswith("gpu"))
    assert gpu_line.rstrip().endswith("3, 0 executing, 0 finished, 0 failed")
    assert "3 jobs total" in info


def test_set_values_are_typed_like_yaml_scalars(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(
        redis_url, job_spec_file(tmp_path), "-q", "gpu",
        "--set", "trainer.learning_rate=0.1",
        "--set", "trainer.epochs=32",
        "--set", "trainer.use_amp=true",
        "--set", "trainer.layers=[1, 2]",
        "--set", "trainer.tag='32'",
        "--set", "trainer.note=",
        "--set", r"paths.data\.dir=/data",
    )  # fmt: skip
    assert record(redis_conn, job_id)["run_config"] == {
        "trainer": {
            "learning_rate": 0.1,
            "epochs": 32,
            "use_amp": True,
            "layers": [1, 2],
            "tag": "32",
            "note": None,
        },
        "paths": {"data.dir": "/data"},
    }


def test_config_file_and_file_overrides_reach_the_record(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    (tmp_path / "over.yaml").write_text("trainer:\n  learning_rate: 0.5\n  epochs: 3\n")
    (tmp_path / "model.json").write_text('{"model": {"depth": 12}}')
    job_id = enqueue_id(
        redis_url, job_spec_file(tmp_path), "-q", "gpu",
        "--config", str(tmp_path / "over.yaml"),
        "--set", "trainer.epochs=5",
        "--file-config", f"config.yaml={tmp_path / 'model.json'}",
        "--file-set", "config.yaml:model.width=256",
    )  # fmt: skip
    shown = record(redis_conn, job_id)
    assert shown["run_config"] == {"trainer": {"learning_rate": 0.5, "epochs": 5}}
    assert shown["file_overrides"] == {"config.yaml": {"model": {"depth": 12, "width": 256}}}


def test_gpus_take_skypilots_model_and_count_shorthand(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu", "--gpus", "A100:2", "--gpu-memory", "40GiB")
    request = record(redis_conn, job_id)["request"]
    assert request["gpus"] == 2
    assert request["gpu_model"] == "A100"
    assert request["gpu_memory_mib"] == 40 * 1024


def test_a_gpu_count_alone_is_narrowed_to_the_models_the_queue_allows(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu", "--gpus", "2", "--cpus", "8", "--memory", "8g")
    assert record(redis_conn, job_id)["request"] == {
        "cpus": 8.0, "memory_mib": 8192, "gpus": 2, "gpu_model": "A100|H100", "gpu_memory_mib": 0,
    }  # fmt: skip


def test_an_adhoc_job_runs_an_image_with_the_command_after_the_double_dash(redis_url, redis_conn):
    apply_queues(redis_conn)
    job_id = enqueue_id(
        redis_url, "--image", "ghcr.io/acme/train:1.2", "-q", "cpu", "--env", "SEED=7", "--", "python", "-c", "print(1)"
    )
    shown = record(redis_conn, job_id)
    assert shown["name"] == "train-1.2"
    assert shown["spec"]["command"] == ["python", "-c", "print(1)"]
    assert shown["spec"]["env"] == {"SEED": "7"}


def test_high_priority_jobs_go_to_the_front_of_the_rq_queue(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    spec = job_spec_file(tmp_path)
    first = enqueue_id(redis_url, spec, "-q", "gpu")
    urgent = enqueue_id(redis_url, spec, "-q", "gpu", "--priority", "high")
    assert rq_job_ids(redis_conn, "gpu") == [urgent, first]
    assert record(redis_conn, urgent)["priority"] == "high"


def test_enqueue_json_output_parses_and_carries_the_notes(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    result = cli(redis_url, "enqueue", job_spec_file(tmp_path), "-q", "gpu", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["status"]["state"] == "queued"
    assert shown["notes"] == ["note: no agent is registered; the job waits in queue 'gpu' until one serving it starts"]


def test_a_paused_queue_accepts_the_job_and_says_so_on_stderr(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    QueueStore(redis_conn).pause("gpu")
    result = cli(redis_url, "enqueue", job_spec_file(tmp_path), "-q", "gpu")
    assert result.returncode == 0
    assert "note: queue 'gpu' is paused; the job waits until `launchbay queue resume gpu`" in result.stderr
    assert rq_job_ids(redis_conn, "gpu") == [result.stdout.strip()]


def test_a_request_no_live_agent_could_ever_fit_is_enqueued_with_a_warning_naming_the_largest(
    redis_url, redis_conn, tmp_path
):
    apply_queues(redis_conn)
    register_agent(redis_conn, "small", gpus=["NVIDIA A100-SXM4-80GB"])
    register_agent(redis_conn, "big", gpus=["NVIDIA A100-SXM4-80GB"] * 2)
    result = cli(redis_url, "enqueue", job_spec_file(tmp_path), "-q", "gpu", "--gpus", "A100:4")
    assert result.returncode == 0
    assert result.stderr.strip() == (
        "warning: no live agent serving queue 'gpu' could ever run this request (4 CPUs, 16GiB, 4 GPUs A100); "
        "the largest is big (16 CPUs, 64GiB, 2x NVIDIA A100-SXM4-80GB): "
        "needs 4 GPU(s) matching 'A100' of one model, the agent has 2 such of 2"
    )
    assert rq_job_ids(redis_conn, "gpu") == [result.stdout.strip()]


def test_a_request_that_fits_a_live_agent_gets_no_warning(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    register_agent(redis_conn, "big", gpus=["NVIDIA H100 80GB HBM3"] * 4)
    result = cli(redis_url, "enqueue", job_spec_file(tmp_path), "-q", "gpu", "--gpus", "H100:4")
    assert result.returncode == 0
    assert result.stderr == ""


def test_list_shows_the_newest_jobs_first_and_filters_by_queue_and_state(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    spec = job_spec_file(tmp_path)
    older = enqueue_id(redis_url, spec, "-q", "gpu")
    newer = enqueue_id(redis_url, spec, "-q", "cpu")
    everything = json.loads(cli(redis_url, "list", "--json").stdout)
    assert [job["id"] for job in everything] == [newer, older]
    only_gpu = json.loads(cli(redis_url, "list", "-q", "gpu", "--json").stdout)
    assert [job["id"] for job in only_gpu] == [older]
    assert json.loads(cli(redis_url, "list", "--state", "running", "--json").stdout) == []
    assert [job["id"] for job in json.loads(cli(redis_url, "list", "--limit", "1", "--json").stdout)] == [newer]
    table = cli(redis_url, "list")
    assert table.returncode == 0
    assert older in table.stdout and newer in table.stdout
