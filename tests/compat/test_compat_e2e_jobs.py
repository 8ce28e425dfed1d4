"""The five W&B jobs of tests/compat/jobs/ through the whole stack, imports changed and nothing else.

One image holds the five jobs (their import lines rewritten by this test), launchbay's wheel and
PyYAML, built FROM the local base with the wheels fetched on the host like examples/trainer's, and
no ``wandb``. Each job is enqueued with ``launchbay enqueue --config/--file-config`` and run by a
real ``launchbay agent``. The job spec's command runs the job and then prints the output folder's
metrics.jsonl and summary.json, so the test reads what the job wrote there from the job's log.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))

from conftest import REPO_ROOT, run_cli
from jobs_cases import CASES, JOBS, ignored_warnings
from test_control_support import make_queue
from test_e2e_agent import agents, log_lines  # noqa: F401  (agents is a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

METRICS_MARK = "== metrics.jsonl"
SUMMARY_MARK = "== summary.json"


def run_and_show(files: tuple[str, ...]) -> str:
    """Shell text: run the job, then print its output folder's metrics and summary and the config files
    it manages (after the patch); the job's exit code stays the container's. The job's stderr (the
    SDK's warnings) goes to the same pipe as its stdout: Docker copies the two streams into the log
    separately, so on a loaded machine a stderr line could land after the marks printed later."""
    show = [f'echo "{METRICS_MARK}"; cat "$LAUNCHBAY_OUTPUT_DIR/metrics.jsonl"']
    show.append(f'echo "{SUMMARY_MARK}"; cat "$LAUNCHBAY_OUTPUT_DIR/summary.json"')
    show += [f'echo "== {name}"; cat {name}' for name in files]
    return 'python3 "$0" "$@" 2>&1; rc=$?; ' + "; ".join(show) + "; exit $rc"


DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY wheels/ /tmp/wheels/
RUN python3 -m pip install --no-cache-dir --break-system-packages --no-index --find-links /tmp/wheels pyyaml \\
 && python3 -m pip install --no-cache-dir --break-system-packages --no-index --find-links /tmp/wheels --no-deps launchbay \\
 && rm -rf /tmp/wheels
WORKDIR /app
COPY app/ ./
"""


@pytest.fixture(scope="module")
def jobs_image(docker_client, base_image, tmp_path_factory) -> str:
    context = tmp_path_factory.mktemp("wandb-jobs-image")
    app = context / "app"
    app.mkdir()
    for case in CASES.values():
        (app / case.script).write_text(case.source())
        for name in case.files:
            shutil.copy(JOBS / name, app / name)
    (context / "Dockerfile").write_text(DOCKERFILE)
    wheels = subprocess.run(
        [
            "bash",
            "-c",
            'source scripts/lib.sh && lb_wheels "$1" "$2" pyyaml',
            "lb_wheels",
            base_image,
            str(context / "wheels"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert wheels.returncode == 0, wheels.stdout + wheels.stderr
    tag = "launchbay-wandb-jobs:e2e"
    docker_client.images.build(path=str(context), tag=tag, buildargs={"BASE_IMAGE": base_image}, rm=True)
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('wandb') is not None)"
    docker_client.containers.run(tag, ["python3", "-c", probe], remove=True)  # raises if wandb is importable
    return tag


def write_spec(folder: Path, name: str, image: str) -> Path:
    case = CASES[name]
    spec = {
        "name": f"wandb-{name}".replace("_", "-"),
        "image": image,
        "command": ["sh", "-c", run_and_show(case.files), case.script, *case.args],
        "workdir": "/app",
        "env": {"PYTHONUNBUFFERED": "1"},
        "resources": {"cpus": 0.5, "memory": "256MiB"},
        "max_runtime": "5m",
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def enqueue_args(folder: Path, name: str) -> list[str]:
    case = CASES[name]
    run_config = folder / f"{name}-run-config.json"
    run_config.write_text(json.dumps(case.run_config))
    args = ["--config", str(run_config)]
    for path, overrides in case.file_overrides.items():
        file = folder / f"{name}-{path}.json"
        file.write_text(json.dumps(overrides))
        args += ["--file-config", f"{path}={file}"]
    return args


def split_log(lines: list[str]) -> tuple[list[str], list[dict], dict, str]:
    """(the job's own lines, the metrics.jsonl lines, summary.json, the rest) from the job's log."""
    metrics_at, summary_at = lines.index(METRICS_MARK), lines.index(SUMMARY_MARK)
    metrics = [json.loads(line) for line in lines[metrics_at + 1 : summary_at]]
    return lines[:metrics_at], metrics, json.loads(lines[summary_at + 1]), "\n".join(lines[summary_at + 2 :])


def test_five_wandb_jobs_run_with_one_import_changed(redis_url, redis_conn, jobs_image, agents, tmp_path):  # noqa: F811
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"})
    agent = agents("wandb-jobs-agent")
    env = {"LAUNCHBAY_REDIS_URL": redis_url}

    for name in sorted(CASES):
        case = CASES[name]
        spec = write_spec(tmp_path, name, jobs_image)
        result = run_cli(
            "enqueue", str(spec), "-q", "e2e", *enqueue_args(tmp_path, name), "--wait", env=env, timeout=240
        )
        job_id = result.stdout.strip().splitlines()[0]
        lines = log_lines(redis_conn, job_id)
        assert result.returncode == 0, (name, result.stdout, result.stderr, lines, agent.output())

        own, metrics, summary, files = split_log(lines)
        assert case.used in own, (name, own)
        assert ignored_warnings(own) == case.expected_warnings()
        assert [line for line in own if line.startswith("launchbay: ")] == [line for line in own if "ignored" in line]
        case.check_metrics(metrics)
        assert summary.items() >= case.summary.items()
        for file, fragments in case.patched.items():
            shown = files.split(f"== {file}\n", 1)[1]
            assert all(fragment.rstrip("\n") in shown for fragment in fragments), (name, shown)

        status = json.loads(run_cli("status", job_id, "--json", env=env).stdout)
        assert status["state"] == "finished", status
        # The run recorded its inputs, so the next enqueue is checked against them.
        recorded = json.loads(
            run_cli("job", "show", yaml.safe_load(spec.read_text())["name"], "--json", env=env).stdout
        )
        assert sorted(recorded["files"]) == sorted(case.file_overrides)
