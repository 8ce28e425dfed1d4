"""The start-up benchmark runs and reports its figures as JSON (the figures themselves are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sdk_startup.py"


def test_startup_bench_prints_median_min_max_and_a_verdict_as_json():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--runs", "1", "--json"], capture_output=True, text=True, timeout=120
    )

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["runs"] == 1
    assert result["payload_keys"] == 1000
    assert result["added_min_ms"] <= result["added_median_ms"] <= result["added_max_ms"]
    assert result["baseline_median_ms"] > 0
    assert result["verdict"] == ("PASS" if result["added_median_ms"] <= result["target_ms"] else "MISS")
