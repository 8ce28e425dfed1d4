"""Helpers for the unchanged-W&B-job tests (no tests here): the image with the real ``wandb``, jobs
written as a client other than ours would write them, and the ``RESULT`` line of a job's log.

The agent helpers live in ``tests/agent``; this module puts that folder on ``sys.path``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import pytest

_TESTS = Path(__file__).resolve().parent.parent
if str(_TESTS / "agent") not in sys.path:
    sys.path.append(str(_TESTS / "agent"))

from conftest import REPO_ROOT  # noqa: E402
from launchbay.queue_config import lifecycle  # noqa: E402
from launchbay.queue_config.keys import Keys  # noqa: E402

COMPAT = Path(__file__).resolve().parent
#: What the image's pip installs; lb_wheels caches the download per Python and package list.
WANDB_IMAGE_PACKAGES = ("wandb", "jsonschema", "pyyaml")
WANDB_IMAGE_TAG = "launchbay-compat-wandb:test"


def build_wandb_image(docker_client, base_image: str, workdir: Path) -> str:
    """tests/compat (job scripts and their files) in an image with the real wandb, from host-downloaded wheels."""
    context = workdir / "context"
    shutil.copytree(
        COMPAT, context / "app", ignore=shutil.ignore_patterns("__pycache__", "test_*.py", "*_helpers.py", "*_cases.py")
    )
    script = 'source scripts/lib.sh && lb_wheels "$@"'
    wheels = subprocess.run(
        ["bash", "-c", script, "lb_wheels", base_image, str(context / "wheels"), *WANDB_IMAGE_PACKAGES],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert wheels.returncode == 0, wheels.stdout + wheels.stderr
    for wheel in (context / "wheels").glob("launchbay-*.whl"):
        wheel.unlink()  # an unchanged W&B job has no launchbay in its image
    docker_client.images.build(
        path=str(context),
        dockerfile=str(COMPAT / "Dockerfile.wandb"),
        tag=WANDB_IMAGE_TAG,
        buildargs={"BASE_IMAGE": base_image},
        rm=True,
    )
    return WANDB_IMAGE_TAG


_BUILT: Dict[str, str] = {}


@pytest.fixture(scope="session")
def wandb_image(docker_client, base_image, tmp_path_factory) -> str:
    """The real-wandb image, built once per test session however many test modules import this fixture."""
    if base_image not in _BUILT:
        _BUILT[base_image] = build_wandb_image(docker_client, base_image, tmp_path_factory.mktemp("wandb-image"))
    return _BUILT[base_image]


def result_of(lines: List[str]) -> Optional[Dict[str, Any]]:
    """The JSON after ``RESULT `` on the job's last such line, or None."""
    found = [line[len("RESULT ") :] for line in lines if line.startswith("RESULT ")]
    return json.loads(found[-1]) if found else None


def write_job(
    conn,
    queue: str,
    *,
    name: str,
    image: str,
    command: List[str],
    workdir: str,
    run_config: Mapping[str, Any],
    file_overrides: Mapping[str, Any],
    inputs: Optional[Mapping[str, Any]],
) -> str:
    """A queued job written straight into Redis, skipping the client's checks (an older or foreign client)."""
    job_id = uuid.uuid4().hex[:16]
    request = {"cpus": 0.0, "memory_mib": 0, "gpus": 0, "gpu_model": "", "gpu_memory_mib": 0}
    spec: Dict[str, Any] = {"image": image, "command": command, "workdir": workdir, "env": {}, "docker": {}}
    if inputs is not None:
        spec.update(inputs=dict(inputs), inputs_source="declared")
    fields = {
        "name": name,
        "queue": queue,
        "priority": "normal",
        "spec": spec,
        "request": request,
        "constraints": {},
        "max_runtime_s": None,
        "run_config": dict(run_config),
        "file_overrides": dict(file_overrides),
    }
    lifecycle.enqueue(conn, Keys(), job_id, fields, meta={"launchbay": {"name": name}}, description="test")
    return job_id
