"""The five W&B jobs of tests/compat/jobs/, imports changed and nothing else, run here as
``python job.py`` with one launch each (the same launches run through Docker in
test_compat_e2e_jobs.py)."""

from __future__ import annotations

import json

import pytest
from compat_helpers import JobRunner
from jobs_cases import CASES, JOBS, ignored_warnings


@pytest.mark.parametrize("name", sorted(CASES))
def test_job_runs_with_only_its_imports_changed(tmp_path, name):
    case = CASES[name]
    runner = JobRunner(tmp_path)
    files = {file: (JOBS / file).read_text() for file in case.files}

    job = runner(
        case.source(),
        run_config=case.run_config,
        file_overrides=case.file_overrides,
        files=files,
        args=case.args,
    )

    assert job.returncode == 0, job.stderr
    assert case.used in job.stdout.splitlines()
    assert ignored_warnings(job.warnings()) == case.expected_warnings()
    assert len(job.warnings()) == len(case.ignored)
    for file, fragments in case.patched.items():
        text = job.read(file)
        assert all(fragment in text for fragment in fragments), text
    case.check_metrics(runner.metrics())
    summary = runner.summary()
    assert summary.items() >= case.summary.items()
    assert json.loads((job.outdir / "inputs.json").read_text())["run_config"] is not None


def test_the_rewrite_touches_only_import_lines():
    for case in CASES.values():
        original = (JOBS / case.script).read_text().splitlines()
        rewritten = case.source().splitlines()
        changed = [(a, b) for a, b in zip(original, rewritten) if a != b]
        assert len(original) == len(rewritten)
        assert changed and all(a in ("import wandb", "from wandb.sdk import launch") for a, _ in changed)
