"""Every refused enqueue: one line on stderr, exit code 2, and Redis exactly as it was."""

from __future__ import annotations

import pytest
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.store import QueueStore
from queue_helpers import JOB_SPEC, apply_queues, cli, enqueue_id, job_spec_file, redis_snapshot, write_yaml

RECORDED_INPUTS = {
    "run_config": {
        "include": ["trainer"],
        "exclude": ["trainer.seed"],
        "types": {
            "trainer": {
                "learning_rate": "float",
                "epochs": "int",
                "use_amp": "bool",
                "optimizer": "str",
                "seed": "int",
                "layers": "list",
                "extra": "dict",
            },
            "data": {"path": "str"},
        },
        "schema": {
            "type": "object",
            "properties": {
                "trainer": {
                    "type": "object",
                    "properties": {
                        "learning_rate": {"type": "number", "maximum": 1},
                        "epochs": {"type": "integer", "minimum": 1},
                        "optimizer": {"type": "string", "enum": ["adam", "sgd"]},
                    },
                    "required": ["optimizer"],
                }
            },
        },
    },
    "files": {
        "config.yaml": {
            "include": [],
            "exclude": ["secrets"],
            "types": {"model": {"depth": "int"}, "secrets": {"token": "str"}},
            "schema": None,
        }
    },
}

CASES = [
    pytest.param(["-q", "nope"], "unknown queue 'nope'; known queues: cpu, gpu", id="unknown-queue"),
    pytest.param(["--gpus", "16"], "gpus: requested 16, queue 'gpu' allows at most 8", id="gpus-over-limit"),
    pytest.param(
        ["--memory", "1TiB", "--cpus", "64"],
        "cpus: requested 64, queue 'gpu' allows at most 32; memory: requested 1024GiB, queue 'gpu' allows at most 256GiB",
        id="two-limits-at-once",
    ),
    pytest.param(
        ["--max-runtime", "48h"], "max_runtime: requested 48h, queue 'gpu' allows at most 24h", id="runtime-over-limit"
    ),
    pytest.param(
        ["--gpus", "V100:1"], "gpu_model: requested 'V100', queue 'gpu' allows only 'A100|H100'", id="gpu-model"
    ),
    pytest.param(["-q", "cpu", "--gpus", "1"], "gpus: requested 1, queue 'cpu' allows at most 0", id="cpu-queue-gpu"),
    pytest.param(
        ["--memory", "16gigs"],
        "resource request: memory '16gigs' has an unknown unit 'gigs'; use KiB, MiB, GiB, TiB or k, m, g, t",
        id="malformed-size",
    ),
    pytest.param(
        ["--memory", "512"], "resource request: memory '512' has no unit; write e.g. 512MiB or 512m", id="size-no-unit"
    ),
    pytest.param(
        ["--gpus", "A100:two"],
        "gpus 'A100:two' must be a count (2), a model (A100) or MODEL:COUNT (A100:2)",
        id="malformed-gpu-count",
    ),
    pytest.param(
        ["--max-runtime", "soon"],
        "max_runtime 'soon' is not a duration such as 90s, 30m, 2h or 1h30m",
        id="bad-duration",
    ),
    pytest.param(
        ["--set", "novalue"],
        "--set 'novalue' must look like KEY=VALUE, e.g. trainer.learning_rate=0.1",
        id="set-syntax",
    ),
    pytest.param(
        ["--set", "a..b=1"], "--set 'a..b=1': invalid key path 'a..b': empty key between dots", id="set-bad-path"
    ),
    pytest.param(
        ["--set", "trainer.seed=1"],
        "invalid overrides for job 'trainer': key 'trainer.seed' is excluded by prefix 'trainer.seed'",
        id="excluded-key",
    ),
    pytest.param(
        ["--set", "data.path=/x"],
        "invalid overrides for job 'trainer': key 'data.path' is under no include prefix (trainer)",
        id="outside-include",
    ),
    pytest.param(
        ["--set", "trainer.lr=0.1"],
        "invalid overrides for job 'trainer': key 'trainer.lr' is unknown to the job "
        "(known under trainer: epochs, extra, layers, learning_rate, optimizer, seed, use_amp)",
        id="unknown-key",
    ),
    pytest.param(
        ["--set", "trainer.epochs=3.5", "--set", "trainer.use_amp=1", "--set", "trainer.layers=4"],
        "invalid overrides for job 'trainer': trainer.epochs: expected int, got float 3.5; "
        "trainer.use_amp: expected bool, got int 1; trainer.layers: expected list, got int 4",
        id="type-mismatches",
    ),
    pytest.param(
        ["--set", "trainer.epochs=true"],
        "invalid overrides for job 'trainer': trainer.epochs: expected int, got bool true",
        id="bool-is-not-int",
    ),
    pytest.param(
        ["--set", "trainer.learning_rate=2", "--set", "trainer.optimizer=rmsprop", "--set", "trainer.epochs=0"],
        "invalid overrides for job 'trainer': trainer.epochs: 0 is less than the minimum of 1; "
        "trainer.learning_rate: 2 is greater than the maximum of 1; "
        "trainer.optimizer: 'rmsprop' is not one of ['adam', 'sgd']",
        id="schema-violations-all-listed",
    ),
    pytest.param(
        ["--file-set", "config.yaml:model.depth=deep", "--file-set", "config.yaml:secrets.token=x"],
        "invalid overrides for job 'trainer': config.yaml: model.depth: expected int, got str \"deep\"; "
        "config.yaml: key 'secrets.token' is excluded by prefix 'secrets'",
        id="file-override-problems",
    ),
    pytest.param(
        ["--file-set", "other.yaml:a=1"],
        "invalid overrides for job 'trainer': config file 'other.yaml' is not one the job manages "
        "(its last run managed: config.yaml)",
        id="unmanaged-file",
    ),
    pytest.param(
        ["--file-set", "/etc/passwd:a=1"],
        "--file-set: config file path '/etc/passwd' must be relative to the job, without '..'",
        id="absolute-file-path",
    ),
]


@pytest.mark.parametrize(("args", "message"), CASES)
def test_a_refused_enqueue_prints_one_line_exits_2_and_writes_nothing(redis_url, redis_conn, tmp_path, args, message):
    apply_queues(redis_conn)
    QueueStore(redis_conn).record_inputs("trainer", RECORDED_INPUTS, job_id="earlier-run")
    if "-q" not in args:
        args = [*args, "-q", "gpu"]
    before = redis_snapshot(redis_conn)

    result = cli(redis_url, "enqueue", job_spec_file(tmp_path), *args)

    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""
    assert redis_snapshot(redis_conn) == before


def test_a_docker_option_the_queue_does_not_allow_is_refused_naming_the_allowlist(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    before = redis_snapshot(redis_conn)
    spec = job_spec_file(tmp_path, docker={"privileged": True, "shm_size": "8GiB", "network": "host"})
    result = cli(redis_url, "enqueue", spec, "-q", "gpu")
    assert result.returncode == 2
    assert result.stderr == (
        "error: docker option 'network' may not be set by submitters on queue 'gpu' (submitter_may_set: shm_size_mib); "
        "docker option 'privileged' may not be set by submitters on queue 'gpu' (submitter_may_set: shm_size_mib)\n"
    )
    assert redis_snapshot(redis_conn) == before


def test_a_docker_option_the_queue_allows_is_recorded(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path, docker={"shm_size": "8GiB"}), "-q", "gpu")
    job = redis_conn.hget(Keys().job(job_id), "spec")
    assert b'"docker":{"shm_size_mib":8192}' in job


def test_a_job_spec_with_a_bad_field_is_refused_naming_the_file_and_the_field(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    spec = write_yaml(tmp_path / "bad.yaml", {**JOB_SPEC, "resources": {"memory": "lots"}, "colour": "red"})
    result = cli(redis_url, "enqueue", str(spec), "-q", "gpu")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {spec}: resources: memory 'lots' is not a size such as 512MiB, 16GiB or 8g; colour: unknown field\n"
    )


def test_an_int_is_accepted_where_the_job_recorded_a_float(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    QueueStore(redis_conn).record_inputs("trainer", RECORDED_INPUTS, job_id="earlier-run")
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu", "--set", "trainer.learning_rate=1")
    assert job_id


def test_before_a_job_has_run_once_any_override_is_accepted(redis_url, redis_conn, tmp_path):
    apply_queues(redis_conn)
    job_id = enqueue_id(redis_url, job_spec_file(tmp_path), "-q", "gpu", "--set", "anything.at.all=1")
    assert job_id
