"""The five W&B jobs of tests/compat/jobs/ with one launch each and what that launch must produce.

Shared by the local run (test_compat_jobs.py: ``python job.py`` here) and the end-to-end run
(test_compat_e2e_jobs.py: a real agent and Docker), so both check the same things: the overrides
the job used, the keys it did not take (and the warning naming them), the patched config file,
and the metrics lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from compat_helpers import rewrite_imports

JOBS = Path(__file__).resolve().parent / "jobs"


@dataclass
class JobCase:
    script: str
    run_config: dict[str, Any]
    #: The line the job prints with the values it used.
    used: str
    #: Warning lines (without the ``launchbay: `` prefix) naming the overrides not taken.
    ignored: list[str]
    #: Called with the list of metrics.jsonl lines; asserts what they hold.
    check_metrics: Callable[[list[dict]], None]
    files: tuple[str, ...] = ()
    file_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Text that must be in each patched config file afterwards.
    patched: dict[str, list[str]] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)

    def expected_warnings(self) -> list[tuple[str, list[str]]]:
        return ignored_warnings([f"launchbay: {line}" for line in self.ignored])

    def source(self) -> str:
        """The job's code with only its import lines changed."""
        return rewrite_imports((JOBS / self.script).read_text())


def ignored_warnings(lines: list[str]) -> list[tuple[str, list[str]]]:
    """The SDK's "ignored overrides" lines as (where, sorted keys): payload key order may differ."""
    found = []
    for line in lines:
        if line.startswith("launchbay: ignored overrides"):
            where, _, keys = line.removeprefix("launchbay: ").rpartition(": ")
            found.append((where, sorted(keys.split(", "))))
    return found


def _values(lines: list[dict], key: str) -> list:
    return [line[key] for line in lines if key in line]


def _fashion(lines):
    assert _values(lines, "epoch") == [1, 2, 3]
    assert _values(lines, "loss") == [math.exp(-0.01 * 10 * epoch) for epoch in (1, 2, 3)]
    assert [line["_step"] for line in lines] == [0, 1, 2]


def _docs_trainer(lines):
    assert _values(lines, "train/loss") == [1.0 / (1 + step * 0.1 * 64) for step in range(3)]


def _config_experiment(lines):
    assert _values(lines, "epoch") == [1, 2, 3]
    assert all({"train_acc", "train_loss"} <= set(line) for line in lines)


def _torchtune(lines):
    assert [line["_step"] for line in lines] == [0, 1, 2, 3]
    assert _values(lines, "loss") == [2.0, 1.0, 2.0 / 3, 0.5]
    assert _values(lines, "lr")[0] == 0.001


def _axolotl(lines):
    assert _values(lines, "train/loss") == [1.5, 0.75]
    assert _values(lines, "lora_r") == [16, 16]


CASES = {
    "fashion_mnist_train": JobCase(
        script="fashion_mnist_train.py",
        args=("--project", "fashion"),
        run_config={"epochs": 3, "learning_rate": 0.01, "steps_per_epoch": 99},
        used="used epochs=3 learning_rate=0.01 steps_per_epoch=10",
        ignored=["ignored overrides outside the job's inputs: steps_per_epoch"],
        check_metrics=_fashion,
        summary={"epoch": 3},
    ),
    "docs_trainer": JobCase(
        script="docs_trainer.py",
        run_config={
            "seed": 7,
            "trainer": {"learning_rate": 0.1, "batch_size": 64, "dataset": "cifar100", "private": {"key": "leaked"}},
        },
        used="used seed=7 learning_rate=0.1 batch_size=64 dataset=cifar100 private=value",
        ignored=["ignored overrides outside the job's inputs: trainer.private.key"],
        check_metrics=_docs_trainer,
        summary={"dataset": "cifar100"},
    ),
    "config_experiment": JobCase(
        script="config_experiment.py",
        args=("-e", "4"),
        run_config={"batch_size": 8, "learning_rate": 0.05},
        used="used learning_rate=0.05 batch_size=8 epochs=4",
        ignored=[],
        check_metrics=_config_experiment,
        summary={"epoch": 3},
    ),
    "torchtune_lora": JobCase(
        script="torchtune_lora.py",
        files=("recipe.yaml",),
        run_config={"model": "mistral-7b", "dataset": "alpaca:v1", "recipe": {"epochs": 99}},
        file_overrides={
            "recipe.yaml": {
                "epochs": 2,
                "optimizer": {"lr": 0.001, "_component_": "evil.Optimizer"},
                "checkpointer": {"checkpoint_dir": "/etc"},
            }
        },
        used=(
            "used model=mistral-7b dataset=alpaca:v1 epochs=2 lr=0.001 optimizer=torch.optim.AdamW "
            "checkpoint_dir=/models/original"
        ),
        ignored=[
            "ignored overrides outside the job's inputs in recipe.yaml: optimizer._component_, checkpointer.checkpoint_dir",
            "ignored overrides outside the job's inputs: recipe.epochs",
        ],
        patched={
            "recipe.yaml": [
                "# LoRA single-device recipe",
                "epochs: 2\n",
                "lr: 0.001\n",
                "_component_: torch.optim.AdamW",
            ]
        },
        check_metrics=_torchtune,
    ),
    "axolotl_qlora": JobCase(
        script="axolotl_qlora.py",
        files=("qlora.yaml",),
        run_config={"run_name": "qlora-r16", "target_modules": ["q_proj", "k_proj", "o_proj"]},
        file_overrides={"qlora.yaml": {"lora_r": 16, "micro_batch_size": 4, "base_model": "evil/model"}},
        used=(
            "used base_model=meta-llama/Meta-Llama-3-70B lora_r=16 micro_batch_size=4 run_name=qlora-r16 "
            "target_modules=q_proj,k_proj,o_proj"
        ),
        ignored=["ignored overrides outside the job's inputs in qlora.yaml: base_model"],
        patched={"qlora.yaml": ["lora_r: 16\n", "micro_batch_size: 4\n", "base_model: meta-llama/Meta-Llama-3-70B\n"]},
        check_metrics=_axolotl,
        summary={"lora_r": 16},
    ),
}
