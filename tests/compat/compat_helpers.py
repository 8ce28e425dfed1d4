"""Helpers for the W&B compatibility tests: the one-import rewrite and a job-script runner.

``rewrite_imports`` is the only edit a W&B job gets in these tests (and in the end-to-end test
of tests/compat/jobs/): ``import wandb`` -> ``import launchbay.wandb as wandb`` and
``from wandb.sdk import launch`` -> ``from launchbay.wandb.sdk import launch``. Any other line
that mentions wandb is left alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))

from launchbay.sdk import payload
from sdk_helpers import PAYLOAD_ENV, JobResult

from launchbay.wandb._forward import ENV_FORWARD

#: W&B's payload variables (WANDB_CONFIG, WANDB_CONFIG_0, WANDB_LAUNCH_FILE_OVERRIDES...) are not inherited.
WANDB_ENV = (payload.WANDB_ENV_RUN_CONFIG, payload.WANDB_ENV_FILE_OVERRIDES)

_IMPORTS = (
    (re.compile(r"^([ \t]*)import wandb[ \t]*$", re.MULTILINE), r"\1import launchbay.wandb as wandb"),
    (
        re.compile(r"^([ \t]*)from wandb\.sdk import launch[ \t]*$", re.MULTILINE),
        r"\1from launchbay.wandb.sdk import launch",
    ),
)


def rewrite_imports(source: str) -> str:
    """Change only the two W&B import lines; raise if the source has neither (nothing to test)."""
    changed = source
    for pattern, replacement in _IMPORTS:
        changed = pattern.sub(replacement, changed)
    if changed == source and "wandb" in source:
        raise AssertionError("no W&B import line to rewrite")
    return changed


def launchbay_job(source: str) -> str:
    """A W&B job script (dedented) with its imports rewritten for launchbay."""
    return rewrite_imports(textwrap.dedent(source))


class JobRunner:
    """Runs job scripts as ``python train.py`` in a fresh folder, payload in the environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def __call__(
        self,
        script: str,
        *,
        run_config: Optional[dict] = None,
        file_overrides: Optional[dict] = None,
        files: Optional[dict[str, str]] = None,
        raw_env: Optional[dict[str, str]] = None,
        args: tuple[str, ...] = (),
        python_path: tuple[Path, ...] = (),
    ) -> JobResult:
        workdir, outdir = self.tmp_path / "job", self.tmp_path / "output"
        workdir.mkdir(exist_ok=True)
        for name, text in (files or {}).items():
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            (workdir / name).write_text(text)
        (workdir / "train.py").write_text(script)
        env = {
            key: value for key, value in os.environ.items() if key not in PAYLOAD_ENV and not key.startswith(WANDB_ENV)
        }
        env[payload.ENV_OUTPUT_DIR] = str(outdir)
        # As in an image without wandb: the host's (launchbay[wandb], for the agent) is not forwarded to.
        env[ENV_FORWARD] = "0"
        if run_config is not None:
            env[payload.ENV_RUN_CONFIG] = json.dumps(run_config)
        if file_overrides is not None:
            env[payload.ENV_FILE_OVERRIDES] = json.dumps(file_overrides)
        env.update(raw_env or {})
        if python_path:
            env["PYTHONPATH"] = os.pathsep.join(str(path) for path in python_path)
        proc = subprocess.run(
            [sys.executable, "train.py", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
        )
        return JobResult(proc, workdir, outdir)

    def metrics(self) -> list[dict]:
        """The lines of metrics.jsonl the last job wrote."""
        path = self.tmp_path / "output" / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def summary(self) -> dict:
        return json.loads((self.tmp_path / "output" / "summary.json").read_text())
