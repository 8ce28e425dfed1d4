"""The docs' trainer (examples/trainer) through the whole stack: ``launchbay enqueue`` with ``--set``
and ``--file-set``, a real ``launchbay agent`` process, a real container built from the example's
Dockerfile. What a user sees: the patched values in the job's log, filtered keys left alone, and,
once the job has recorded its inputs, an enqueue that names the excluded key and refuses it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, run_cli
from test_control_support import make_queue
from test_e2e_agent import agents, log_lines  # noqa: F401  (agents is a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

EXAMPLE = REPO_ROOT / "examples" / "trainer"


@pytest.fixture(scope="module")
def trainer_image(docker_client, base_image, tmp_path_factory) -> str:
    """The example's image, built FROM the local base with wheels fetched on the host (no registry)."""
    context = tmp_path_factory.mktemp("trainer-image")
    shutil.copytree(EXAMPLE, context, dirs_exist_ok=True)
    wheels = subprocess.run(
        [
            "bash",
            "-c",
            'source scripts/lib.sh && lb_wheels "$1" "$2" pydantic pyyaml',
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
    tag = "launchbay-example-trainer:e2e"
    docker_client.images.build(path=str(context), tag=tag, buildargs={"BASE_IMAGE": base_image}, rm=True)
    return tag


@pytest.fixture
def trainer_spec(tmp_path, trainer_image) -> Path:
    spec = yaml.safe_load((EXAMPLE / "job.yaml").read_text())
    spec["image"] = trainer_image
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def enqueue(redis_url: str, spec: Path, *args: str, timeout: float = 240):
    return run_cli("enqueue", str(spec), "-q", "e2e", *args, env={"LAUNCHBAY_REDIS_URL": redis_url}, timeout=timeout)


def test_the_trainer_runs_with_set_and_file_set_overrides_and_filtered_keys_are_not_applied(
    redis_url,
    redis_conn,
    trainer_spec,
    agents,  # noqa: F811
):
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"})
    agent = agents("trainer-agent")

    result = enqueue(
        redis_url,
        trainer_spec,
        "--set",
        "trainer.learning_rate=0.05",
        "--set",
        "trainer.private.key=leaked",
        "--file-set",
        "config.yaml:epochs=4",
        "--file-set",
        "config.yaml:optimizer.name=adam",
        "--wait",
    )
    job_id = result.stdout.strip().splitlines()[0]
    lines = log_lines(redis_conn, job_id)
    assert result.returncode == 0, (result.stdout, result.stderr, lines, agent.output())
    log = "\n".join(lines)

    # The allowed overrides are applied and marked; the run really used them.
    assert any(line.split()[:3] == ["trainer.learning_rate", "0.05", "<-"] for line in lines), log
    assert any(line.split()[:3] == ["epochs", "4", "<-"] for line in lines), log
    assert "epoch 4/4:" in log and "epoch 5/" not in log
    # trainer.private and config.yaml's optimizer.name are not launch inputs: not applied, and said so.
    assert any(line.split()[:2] == ["trainer.private.key", "'value'"] for line in lines), log
    assert any(line.split()[:2] == ["optimizer.name", "'sgd'"] for line in lines), log
    assert "leaked" not in log and "adam" not in log
    assert any("ignored" in line and line.endswith(": trainer.private.key") for line in lines), log
    assert any("ignored" in line and "config.yaml" in line and line.endswith(": optimizer.name") for line in lines), log

    status = json.loads(run_cli("status", job_id, "--json", env={"LAUNCHBAY_REDIS_URL": redis_url}).stdout)
    assert status["state"] == "finished"
    assert status["effective_config"]["trainer"]["learning_rate"] == 0.05
    assert status["effective_config"]["trainer"]["private"] == {"key": "value"}

    # The run recorded its inputs, in the docs' shape, without the excluded section...
    shown = run_cli("job", "show", "trainer", "--json", env={"LAUNCHBAY_REDIS_URL": redis_url})
    inputs = json.loads(shown.stdout)
    types = inputs["run_config"]["types"]
    assert types["trainer"] == {"learning_rate": "float", "batch_size": "int", "model": "str", "dataset": "str"}

    # ...so the next enqueue of an excluded key is refused with the prefix that excludes it.
    depth_before = redis_conn.llen("rq:queue:e2e")
    refused = enqueue(redis_url, trainer_spec, "--set", "trainer.private.key=leaked")
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert refused.stderr.count("\n") == 1 and "trainer.private.key" in refused.stderr
    assert "trainer.private" in refused.stderr.replace("trainer.private.key", "")
    assert redis_conn.llen("rq:queue:e2e") == depth_before
    assert os.path.exists(trainer_spec)
