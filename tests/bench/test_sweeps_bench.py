"""bench/sweeps.py in its quick mode, with a real agent and real containers: the rows it prints are sane
(no speeds asserted here: those are the benchmark's to report)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, require

pytestmark = [pytest.mark.integration, pytest.mark.docker]

FIGURES = [
    "sweep turnaround (s): plain chain",
    "sweep turnaround (s): sweep vs chain",
    "sweep turnaround p90 (s): sweep vs chain",
    "agent CPU per plain job (ms)",
    "agent CPU per trial (ms), whole agent",
    "driver thread CPU per trial (ms)",
]


def sweeps_bench(image: str, *args: str) -> subprocess.CompletedProcess:
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    env = {**os.environ, "LAUNCHBAY_BENCH_IMAGE": image}
    command = [sys.executable, str(REPO_ROOT / "bench" / "sweeps.py"), "--quick", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=REPO_ROOT, env=env)


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_the_quick_run_measures_each_trials_turnaround_and_the_drivers_cpu(base_image):
    done = sweeps_bench(base_image, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])

    rows = {row["figure"]: row for row in result["rows"]}
    assert list(rows) == FIGURES
    for figure in FIGURES[:5]:
        assert all(positive(v) for v in rows[figure]["samples"]), rows[figure]
    for figure in FIGURES[1:3] + FIGURES[4:]:  # the others are baselines
        assert positive(rows[figure]["baseline"]) and positive(rows[figure]["ratio"]), rows[figure]
    # The driver's thread CPU is counted in clock ticks (10 ms): a short round may read 0.
    driver = rows["driver thread CPU per trial (ms)"]["samples"]
    assert all(math.isfinite(v) and v >= 0 for v in driver)
    details = result["details"]
    assert details["rounds"] == 1 and details["trials"] == 4
    for kind in ("sweep", "chain"):
        (round_,) = details[kind]
        assert len(round_["turnaround_s"]) == 3, "one turnaround between each two of the 4 jobs"
        assert all(0 < t < 30 for t in round_["turnaround_s"])
        assert all(0 < e <= t for e, t in zip(round_["end_to_enqueue_s"], round_["turnaround_s"]))
    assert details["warm_up_sweep"]["driver_cpu_per_trial_s"] > 0, "the first sweep imports Optuna"


def test_the_table_names_the_sweep_and_its_baseline(base_image):
    done = sweeps_bench(base_image, "--trials", "2")
    assert done.returncode == 0, done.stderr
    assert "Sweep trial turnaround, 2 trials x 1 rounds" in done.stdout
    for figure in FIGURES:
        assert figure in done.stdout
    assert "random sweep, max_parallel 1" in done.stdout and "end to next enqueue" in done.stdout
