"""bench/fleet.py in a small, short run: the rows and details it prints (no speeds asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT

BENCH = REPO_ROOT / "bench"


def fleet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "fleet.py"), *args], capture_output=True, text=True, timeout=240, cwd=REPO_ROOT
    )


def test_a_small_fleet_run_prints_each_size_and_the_judged_rows():
    small = ["--quick", "--sizes", "3,6", "--rate", "8", "--idle-s", "3.5", "--load-s", "2", "--depth", "3000"]
    # Idle phases longer than the heartbeat interval (3 s), so each agent beats in them.
    done = fleet(*small, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])

    figures = [row["figure"] for row in result["rows"]]
    assert figures == [
        "fleet 3 agents: Redis commands/job",
        "fleet 6 agents: Redis commands/job",
        "fleet: commands/job 6 vs 3 agents",
        "fleet 6: p99 enqueue-to-claim (ms)",
        "fleet 6: heartbeat Redis CPU (% core)",
        "claim rate (ops/s): depth 3,000",
    ]
    judged = [row for row in result["rows"] if row["target"]]
    assert len(judged) == 4 and all(row["passed"] in (True, False) for row in judged)
    sizes = result["details"]["sizes"]
    assert [s["agents"] for s in sizes] == [3, 6]
    for size in sizes:
        assert size["jobs"] >= 8, "every job of the load phase was enqueued and claimed"
        assert size["p50_ms"] <= size["p99_ms"]
        assert size["commands_per_job_total"] > 0 and size["heartbeat_commands_s"] > 0
        assert size["commands_per_job_by_name"].get("evalsha", 0) >= 1, "each claim runs claim.lua"
    assert result["details"]["settings"]["slots"] == 4
    assert result["details"]["depth"]["round_3000"]["claimed"] == 800


def test_the_table_says_how_the_run_was_sized():
    done = fleet("--quick", "--sizes", "2,4", "--rate", "5", "--idle-s", "1", "--load-s", "1", "--depth", "0")
    assert done.returncode == 0, done.stderr
    assert "Fleet: 2 processes, 5 jobs/s" in done.stdout
    for text in ("fleet 2 agents: Redis commands/job", "claim latency p50", "lost races/claim", "heartbeats"):
        assert text in done.stdout
    assert "claim rate (ops/s)" not in done.stdout, "--depth 0 leaves the deep-queue figure out"
