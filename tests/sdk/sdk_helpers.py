"""Helpers for the SDK tests: a clean SDK state per test and a runner for job scripts.

Job scripts run as a user would run them: ``sys.executable script.py`` in a fresh working
folder, with the override payload in the environment and ``LAUNCHBAY_OUTPUT_DIR`` set.

(Plain helpers rather than a conftest.py: a second module named ``conftest`` would shadow the
root one that other test files import from.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator, Optional

from launchbay.sdk import _reset_for_tests, payload

PAYLOAD_ENV = (
    payload.ENV_RUN_CONFIG,
    payload.ENV_FILE_OVERRIDES,
    payload.ENV_INPUTS_DIR,
    payload.ENV_OUTPUT_DIR,
)


def fresh_sdk(monkeypatch) -> Iterator[None]:
    """For an autouse fixture: no payload in the environment, no SDK state from another test."""
    for name in PAYLOAD_ENV:
        monkeypatch.delenv(name, raising=False)
    _reset_for_tests()
    yield
    _reset_for_tests()


class JobResult:
    """What a job run left behind: exit code, output, records and files."""

    def __init__(self, proc: subprocess.CompletedProcess, workdir: Path, outdir: Path) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.workdir = workdir
        self.outdir = outdir

    @property
    def printed(self) -> Any:
        """The JSON document the script printed last."""
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout.strip().splitlines()[-1])

    @property
    def inputs(self) -> dict:
        return json.loads((self.outdir / payload.INPUTS_RECORD_FILE).read_text())

    @property
    def config(self) -> dict:
        return json.loads((self.outdir / payload.EFFECTIVE_CONFIG_FILE).read_text())

    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("launchbay: ")]

    def read(self, name: str) -> str:
        return (self.workdir / name).read_text()


class JobRunner:
    """Runs job scripts in a subprocess, in folders under one test's ``tmp_path``."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def __call__(
        self,
        script: str,
        *,
        run_config: Optional[dict] = None,
        file_overrides: Optional[dict] = None,
        files: Optional[dict[str, str]] = None,
        args: tuple[str, ...] = (),
        script_name: str = "train.py",
    ) -> JobResult:
        workdir = self.tmp_path / "job"
        outdir = self.tmp_path / "output"
        workdir.mkdir(exist_ok=True)
        for name, text in (files or {}).items():
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            (workdir / name).write_text(textwrap.dedent(text))
        (workdir / script_name).write_text(textwrap.dedent(script))
        env = {key: value for key, value in os.environ.items() if key not in PAYLOAD_ENV}
        env[payload.ENV_OUTPUT_DIR] = str(outdir)
        # As in an image without wandb: the host's (launchbay[wandb], for the agent) is not forwarded to.
        env["LAUNCHBAY_WANDB_FORWARD"] = "0"
        if run_config is not None:
            env[payload.ENV_RUN_CONFIG] = json.dumps(run_config)
        if file_overrides is not None:
            env[payload.ENV_FILE_OVERRIDES] = json.dumps(file_overrides)
        proc = subprocess.run(
            [sys.executable, script_name, *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return JobResult(proc, workdir, outdir)
