"""The per-job command budget (issue 24): bench/commands_per_job.py's MONITOR count of one job, enqueue to released.

One agent as ``launchbay agent`` builds it (the fake runtime), one warm job counted command by
command. The budget is what the tree needs today (``BUDGET`` in the script, docs/benchmarks.md's
step table): a change that makes a job cost Redis more commands fails here, and one that makes it
cost fewer lowers the budget with the table.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.integration

BENCH = REPO_ROOT / "bench"


def test_one_job_costs_redis_no_more_commands_than_the_budget():
    done = subprocess.run(
        [sys.executable, str(BENCH / "commands_per_job.py"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    details = json.loads(done.stdout.strip().splitlines()[-1])["details"]
    steps = details["steps"]
    assert all(steps[step] > 0 for step in ("enqueue", "claim", "start", "end", "release")), steps
    assert details["by_command"].get("EVALSHA", 0) >= 4, "the wake-up, the claim, two transitions, the release"
    assert details["total"] == sum(steps.values())
    assert details["total"] <= details["budget"], f"{details['total']} commands per job: {steps}"
