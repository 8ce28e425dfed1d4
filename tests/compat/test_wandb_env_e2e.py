"""Unchanged W&B Launch jobs on launchbay: the REAL ``wandb`` package in the image, ``WANDB_MODE=offline``,
a real ``launchbay agent`` and Docker. The job gets launchbay's overrides through W&B's own
``wandb.init(config=...)``, ``launch.manage_wandb_config`` and ``launch.manage_config_file``, from the
env contract the agent hands every container (``agent/wandb_env.py``); keys outside the job spec's
declared ``inputs:`` are refused at enqueue and, should a record carry them anyway, kept out of that
env by the agent, since ``wandb`` itself applies every key it is given.

The test runs once per :class:`WandbJobCase`; more real jobs are added by appending cases to
``CASES`` (every file under tests/compat is in the image, at /app; packages beyond wandb, jsonschema
and PyYAML go in ``wandb_env_helpers.WANDB_IMAGE_PACKAGES``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))

from conftest import run_cli
from test_control_support import make_queue
from test_e2e_agent import TERMINAL, agents, log_lines, state_of, wait_for  # noqa: F401  (agents is a fixture)
from wandb_env_helpers import result_of, wandb_image, write_job  # noqa: F401  (wandb_image is a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

Check = Callable[[Dict[str, Any], List[str]], None]


@dataclass(frozen=True)
class WandbJobCase:
    """One unchanged W&B job: its script in tests/compat, its declared inputs, a launch and what it must see."""

    id: str
    script: str
    inputs: Dict[str, Any]
    #: ``launchbay enqueue`` arguments after the spec (``--set``, ``--file-set``, ``--config``...).
    launch_args: Callable[[Path], List[str]]
    #: Given the job's RESULT (or None) and its log lines; raises AssertionError.
    check: Check
    #: A launch the declaration refuses at enqueue (exit 2, nothing queued), with the key it must name.
    refused: Optional[List[str]] = None
    refused_key: str = ""
    env: Dict[str, str] = field(default_factory=dict)
    #: tests/compat is /app in the image: a job in tests/compat/jobs/x/ runs with workdir /app/jobs/x.
    workdir: str = "/app"


def _own_job_args(tmp_path: Path) -> List[str]:
    # 40,000 characters: WANDB_CONFIG goes as WANDB_CONFIG_0 and _1, which wandb joins back.
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump({"trainer": {"notes": "n" * 40_000}}))
    return [
        "--config", str(big),
        "--set", "trainer.learning_rate=0.05",
        "--file-set", "wandb_env_job.yaml:epochs=5",
        "--file-set", "wandb_env_job.yaml:optimizer.momentum=0.5",
    ]  # fmt: skip


def _own_job_check(result: Dict[str, Any], lines: List[str]) -> None:
    assert result is not None, lines
    assert result["mode"] == "offline"
    assert result["config"]["trainer"] == {
        "learning_rate": 0.05,
        "batch_size": 32,
        "notes": "<40000 characters>",
        "private": {"key": "original"},
    }
    assert result["config"]["seed"] == 1
    assert result["file"] == {"epochs": 5, "optimizer": {"name": "sgd", "momentum": 0.5}}
    assert result["wandb_env"] == ["WANDB_CONFIG_0", "WANDB_CONFIG_1", "WANDB_LAUNCH", "WANDB_LAUNCH_FILE_OVERRIDES"]


OWN_JOB = WandbJobCase(
    id="wandb_env_job",
    script="wandb_env_job.py",
    inputs={
        "run_config": {
            "include": ["trainer"],
            "exclude": ["trainer.private"],
            "schema": {
                "type": "object",
                "properties": {
                    "trainer": {
                        "type": "object",
                        "properties": {"learning_rate": {"type": "number", "minimum": 0, "maximum": 1}},
                    }
                },
            },
        },
        "files": {"wandb_env_job.yaml": {"include": ["epochs", "optimizer.momentum"]}},
    },
    launch_args=_own_job_args,
    check=_own_job_check,
    refused=["--set", "trainer.private.key=leaked"],
    refused_key="trainer.private.key",
)

CASES = [OWN_JOB]


def job_spec(tmp_path: Path, case: WandbJobCase, image: str) -> Path:
    spec = {
        "name": f"compat-{case.id}".replace("_", "-"),
        "image": image,
        "command": ["python3", case.script],
        "workdir": case.workdir,
        "env": case.env,
        "inputs": case.inputs,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def enqueue(redis_url: str, *args: str, timeout: float = 240):
    return run_cli("enqueue", *args, "-q", "e2e", env={"LAUNCHBAY_REDIS_URL": redis_url}, timeout=timeout)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_an_unchanged_wandb_job_gets_its_overrides_through_wandb_itself(
    case,
    tmp_path,
    redis_url,
    redis_conn,
    wandb_image,  # noqa: F811
    agents,  # noqa: F811
):
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"})
    agent = agents("wandb-agent")
    spec = job_spec(tmp_path, case, wandb_image)

    result = enqueue(redis_url, str(spec), *case.launch_args(tmp_path), "--wait")
    job_id = result.stdout.strip().splitlines()[0]
    lines = log_lines(redis_conn, job_id)
    assert result.returncode == 0, (result.stdout, result.stderr, lines, agent.output())
    case.check(result_of(lines), lines)

    if case.refused:
        depth_before = redis_conn.llen("rq:queue:e2e")
        refused = enqueue(redis_url, str(spec), *case.refused)
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        assert refused.stderr.count("\n") == 1 and case.refused_key in refused.stderr, refused.stderr
        assert redis_conn.llen("rq:queue:e2e") == depth_before


def test_the_agent_keeps_keys_outside_the_inputs_out_of_wandb_config(
    tmp_path,
    redis_conn,
    wandb_image,  # noqa: F811
    agents,  # noqa: F811
):
    """A record the client did not check (an older or foreign client): wandb would apply every key,
    so the agent leaves out those the record's inputs exclude, and says so in the job's log."""
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"})
    agents("wandb-filter-agent")
    job_id = write_job(
        redis_conn,
        "e2e",
        name="compat-filter",
        image=wandb_image,
        command=["python3", "wandb_env_job.py"],
        workdir="/app",
        run_config={"trainer": {"learning_rate": 0.2, "private": {"key": "leaked"}}, "seed": 7},
        file_overrides={"wandb_env_job.yaml": {"epochs": 4, "optimizer": {"name": "adam"}}},
        inputs={
            "run_config": OWN_JOB.inputs["run_config"],
            "files": OWN_JOB.inputs["files"],
        },
    )
    wait_for(lambda: state_of(redis_conn, job_id) in TERMINAL, timeout_s=180, what=f"job {job_id} to end")
    lines = log_lines(redis_conn, job_id)
    assert state_of(redis_conn, job_id) == "finished", lines
    result = result_of(lines)
    assert result is not None, lines
    assert result["config"]["trainer"]["learning_rate"] == 0.2
    assert result["config"]["trainer"]["private"] == {"key": "original"}
    assert result["config"]["seed"] == 1
    assert result["file"] == {"epochs": 4, "optimizer": {"name": "sgd", "momentum": 0.9}}
    assert result["wandb_env"] == ["WANDB_CONFIG", "WANDB_LAUNCH", "WANDB_LAUNCH_FILE_OVERRIDES"]
    note = [line for line in lines if "W&B env: left out" in line]
    assert note and note[0].endswith("seed, trainer.private.key, wandb_env_job.yaml:optimizer.name"), lines
    assert "leaked" not in json.dumps(lines) and "adam" not in json.dumps(lines)


def test_a_queue_with_wandb_env_off_hands_the_job_none_of_it(
    tmp_path,
    redis_conn,
    wandb_image,  # noqa: F811
    agents,  # noqa: F811
):
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"}, wandb_env=False)
    agents("wandb-off-agent")
    job_id = write_job(
        redis_conn,
        "e2e",
        name="compat-off",
        image=wandb_image,
        command=["python3", "wandb_env_job.py"],
        workdir="/app",
        run_config={"trainer": {"learning_rate": 0.2}},
        file_overrides={},
        inputs=None,
    )
    wait_for(lambda: state_of(redis_conn, job_id) in TERMINAL, timeout_s=180, what=f"job {job_id} to end")
    lines = log_lines(redis_conn, job_id)
    result = result_of(lines)
    assert result is not None, lines
    assert result["wandb_env"] == []
    assert result["config"]["trainer"]["learning_rate"] == 0.1
