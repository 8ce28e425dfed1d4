"""bench/fleet.py in a small, short run: the rows and details it prints (no speeds asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT

BENCH = REPO_ROOT / "bench"


def fleet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "fleet.py"), *args], capture_output=True, text=True, timeout=400, cwd=REPO_ROOT
    )


def test_a_small_fleet_run_prints_each_size_and_the_judged_rows():
    small = ["--quick", "--sizes", "2,3", "--processes", "2", "--rate", "4", "--idle-s", "3.5", "--load-s", "2"]
    # Idle phases longer than the heartbeat interval (3 s), so each agent beats in them.
    done = fleet(*small, "--depth", "3000", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])

    figures = [row["figure"] for row in result["rows"]]
    assert figures == [
        "fleet 2 agents idle: Redis commands/s per agent",
        "fleet 2 agents: Redis commands/job",
        "fleet 3 agents idle: Redis commands/s per agent",
        "fleet 3 agents: Redis commands/job",
        "fleet, one agent: Redis commands/job",
        "fleet idle: commands/s per agent, 3 vs 2 agents",
        "fleet 3 idle: Redis CPU (% core)",
        "fleet: commands/job 3 vs 2 agents",
        "fleet 3: p99 enqueue-to-claim (ms)",
        "claim rate (ops/s): depth 3,000",
    ]
    judged = [row for row in result["rows"] if row["target"]]
    assert len(judged) == 6 and all(row["passed"] in (True, False) for row in judged)
    sizes = result["details"]["sizes"]
    assert [s["agents"] for s in sizes] == [2, 3]
    for size in [*sizes, result["details"]["one"]]:
        assert size["jobs"] >= 4, "every job of the load phase was enqueued and finished"
        assert size["p50_ms"] <= size["p99_ms"]
        assert size["commands_per_job_total"] > 0 and size["idle_commands_s"] > 0
        assert size["commands_per_job_by_name"].get("evalsha", 0) >= 1, "each claim runs claim.lua"
        assert size["idle_by_name_s"].get("time", 0) > 0, "real agents write their fleet summary line"
    assert result["details"]["settings"]["slots"] == 4
    assert result["details"]["depth"]["round_3000"]["claimed"] == 800


def test_the_table_says_how_the_run_was_sized():
    done = fleet(
        "--quick", "--sizes", "2,4", "--rate", "5", "--idle-s", "1", "--load-s", "1", "--depth", "0", "--no-one"
    )
    assert done.returncode == 0, done.stderr
    assert "Fleet: real agents in 4 processes, 5 jobs/s" in done.stdout
    for text in ("fleet 2 agents: Redis commands/job", "claim latency p50", "lost races/claim", "of a core"):
        assert text in done.stdout
    assert "claim rate (ops/s)" not in done.stdout, "--depth 0 leaves the deep-queue figure out"
    assert "one agent" not in done.stdout, "--no-one leaves the one-agent figure out"
