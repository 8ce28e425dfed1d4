"""The five W&B jobs of tests/compat/jobs/ UNCHANGED: the real ``wandb`` in the image (WANDB_MODE=offline),
no launchbay in it, a real ``launchbay agent`` and Docker.

The launches are those of ``jobs_cases.CASES`` (the same overrides as the one-import run of
test_compat_e2e_jobs.py), written into Redis as a client that skips enqueue's checks would write
them, so keys outside each job's declared ``inputs:`` reach the agent. The agent must keep them out
of W&B's env contract (the real ``wandb`` applies every key it is given) and name them in the
job's log; the job's own "used ..." line shows what ``wandb.config`` and the patched file held.

Metrics are not asserted here: metrics.jsonl is written by launchbay's SDK only, and an offline
wandb run keeps its history in its own binary ``.wandb`` file. test_compat_e2e_jobs.py checks the
metrics of the same jobs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))

from jobs_cases import CASES
from test_control_support import make_queue
from test_e2e_agent import TERMINAL, agents, log_lines, state_of, wait_for  # noqa: F401  (agents is a fixture)
from wandb_env_helpers import wandb_image, write_job  # noqa: F401  (wandb_image is a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

#: Each job's inputs as its own manage_* calls declare them (W&B's SDK records none for launchbay).
DECLARED: Dict[str, Optional[Dict[str, Any]]] = {
    "fashion_mnist_train": {"run_config": {"include": ["epochs", "learning_rate"]}},
    "docs_trainer": {"run_config": {"include": ["seed", "trainer"], "exclude": ["trainer.private"]}},
    "config_experiment": None,  # no manage_wandb_config call: every key is an input
    "torchtune_lora": {
        "run_config": {"include": ["model", "dataset"]},
        "files": {
            "recipe.yaml": {"include": ["epochs", "batch_size", "optimizer"], "exclude": ["optimizer._component_"]}
        },
    },
    "axolotl_qlora": {
        "run_config": {"include": ["run_name", "target_modules"]},
        "files": {"qlora.yaml": {"exclude": ["base_model"]}},
    },
}


def dropped_keys(ignored: List[str]) -> List[str]:
    """The keys the one-import run's warnings name, as the agent's note writes them (``file:key``)."""
    keys = []
    for line in ignored:
        where, _, names = line.rpartition(": ")
        prefix = where.rsplit(" in ", 1)[1] + ":" if " in " in where else ""
        keys += [prefix + name for name in names.split(", ")]
    return sorted(keys)


def shell(script: str, files: tuple, args: tuple) -> List[str]:
    """Run the job unchanged, then print the config files it manages; the exit code stays the job's."""
    show = "".join(f'echo "== {name}"; cat {name}; ' for name in files)
    return ["sh", "-c", f'python3 "$0" "$@"; rc=$?; {show}exit $rc', script, *args]


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_unchanged_wandb_job_runs_with_only_its_inputs_applied(name, redis_conn, wandb_image, agents):  # noqa: F811
    case = CASES[name]
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"})
    agent = agents(f"wandb-{name}".replace("_", "-"))
    job_id = write_job(
        redis_conn,
        "e2e",
        name=f"unchanged-{name}".replace("_", "-"),
        image=wandb_image,
        command=shell(case.script, case.files, case.args),
        workdir="/app/jobs",
        run_config=case.run_config,
        file_overrides=case.file_overrides,
        inputs=DECLARED[name],
    )
    wait_for(lambda: state_of(redis_conn, job_id) in TERMINAL, timeout_s=240, what=f"job {job_id} to end")
    lines = log_lines(redis_conn, job_id)
    assert state_of(redis_conn, job_id) == "finished", (lines, agent.output())
    assert case.used in lines, lines
    notes = [line for line in lines if "W&B env: left out overrides outside the job's inputs: " in line]
    dropped = sorted(notes[0].rpartition(": ")[2].split(", ")) if notes else []
    assert dropped == dropped_keys(case.ignored), lines
    text = "\n".join(lines)
    for file, fragments in case.patched.items():
        shown = text.split(f"== {file}\n", 1)[1]
        # wandb rewrites the file with yaml.dump, so its comments go; the values must be there.
        assert all(f.rstrip("\n") in shown for f in fragments if not f.startswith("#")), (name, shown)
